//! The simulated LightRAG's document storage and pipeline, without HTTP.
//!
//! Every rule of LightRAG 1.5.7's document routes that the connector meets
//! lives here (see `docs/lightrag-behaviour.md`): name identity by basename,
//! `doc-` + md5(basename) ids, 409 for a stored name, `dup-` records for
//! repeated text and for a name accepted twice before its first copy was
//! enqueued ([`enqueue`]), asynchronous processing one document at a time,
//! and asynchronous deletion that blocks inserts while it runs.
//!
//! Time moves lazily: each call passes `now` and [`Store::advance`] applies
//! whatever finished since the last call (documents processed, deletions
//! done), so there is no background task and a delay of zero means "done by
//! the next request".

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

mod enqueue;
use enqueue::Incoming;

/// A document's status, as LightRAG names it (lowercase on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SimDocStatus {
    Pending,
    Parsing,
    Analyzing,
    Processing,
    Processed,
    Failed,
}

impl SimDocStatus {
    pub const ALL: [SimDocStatus; 6] = [
        SimDocStatus::Pending,
        SimDocStatus::Parsing,
        SimDocStatus::Analyzing,
        SimDocStatus::Processing,
        SimDocStatus::Processed,
        SimDocStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SimDocStatus::Pending => "pending",
            SimDocStatus::Parsing => "parsing",
            SimDocStatus::Analyzing => "analyzing",
            SimDocStatus::Processing => "processing",
            SimDocStatus::Processed => "processed",
            SimDocStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// How `track_status`'s `status_summary` names it (Python's `str(enum)`).
    fn summary_key(self) -> String {
        format!("DocStatus.{}", self.as_str().to_ascii_uppercase())
    }
}

/// One stored record, `dup-` records included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimDocument {
    pub id: String,
    /// The stored basename.
    pub file_path: String,
    pub status: SimDocStatus,
    /// The text as stored (LightRAG strips surrounding whitespace).
    pub text: String,
    pub track_id: Option<String>,
    pub error_msg: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub chunks_count: Option<u64>,
    pub metadata: Option<Value>,
}

/// A refused request: status, JSON body and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn detail(status: u16, detail: impl Into<String>) -> Self {
        Self { status, body: json!({ "detail": detail.into() }), headers: Vec::new() }
    }

    /// FastAPI's 422 shape for a failed request-model validation.
    pub fn validation(kind: &str, loc: &[&str], msg: impl Into<String>, input: Value) -> Self {
        Self {
            status: 422,
            body: json!({ "detail": [{ "type": kind, "loc": loc, "msg": msg.into(), "input": input }] }),
            headers: Vec::new(),
        }
    }
}

/// The rules that vary between simulated servers.
#[derive(Debug, Clone)]
pub struct StoreRules {
    pub process_delay: Duration,
    pub delete_delay: Duration,
    /// Real LightRAG answers deletes with `busy` while it processes documents.
    pub busy_while_processing: bool,
    pub max_pending_documents: Option<usize>,
}

#[derive(Debug)]
struct Record {
    doc: SimDocument,
    /// Matches the queue entry that schedules this record (ids can come back).
    seq: u64,
    starts_at: Instant,
    ready_at: Instant,
    /// md5 of the text, when this record owns it in the content index.
    content_key: Option<String>,
}

#[derive(Debug)]
struct Deletion {
    ids: Vec<String>,
    ends_at: Instant,
}

/// One text to insert, as the request gave it.
#[derive(Debug, Clone)]
pub struct NewText {
    pub text: String,
    pub file_source: String,
}

#[derive(Debug)]
pub struct Store {
    rules: StoreRules,
    /// Wall-clock time of `epoch`, so record times follow the simulated schedule.
    epoch: (Instant, DateTime<Utc>),
    records: HashMap<String, Record>,
    by_name: HashMap<String, String>,
    by_content: HashMap<String, String>,
    queue: VecDeque<(String, u64)>,
    next_seq: u64,
    last_ready: Option<Instant>,
    deletion: Option<Deletion>,
    manual_busy: bool,
    fail_markers: Vec<String>,
    job_name: String,
    job_start: Option<DateTime<Utc>>,
    latest_message: String,
    history: VecDeque<String>,
    /// Accepted requests not enqueued yet (see [`enqueue`]).
    incoming: Vec<Incoming>,
    /// Names containing a marker are enqueued this long after their 200.
    slow_enqueue: Vec<(String, Duration)>,
}

const HISTORY_LIMIT: usize = 200;

impl Store {
    pub fn new(rules: StoreRules, now: Instant) -> Self {
        Self {
            rules,
            epoch: (now, Utc::now()),
            records: HashMap::new(),
            by_name: HashMap::new(),
            by_content: HashMap::new(),
            queue: VecDeque::new(),
            next_seq: 0,
            last_ready: None,
            deletion: None,
            manual_busy: false,
            fail_markers: Vec::new(),
            job_name: "Default Job".into(),
            job_start: None,
            latest_message: String::new(),
            history: VecDeque::new(),
            incoming: Vec::new(),
            slow_enqueue: Vec::new(),
        }
    }

    fn wall(&self, at: Instant) -> DateTime<Utc> {
        let (base, wall) = self.epoch;
        match chrono::Duration::from_std(at.saturating_duration_since(base)) {
            Ok(elapsed) => wall + elapsed,
            Err(_) => wall,
        }
    }

    fn log(&mut self, message: String) {
        self.latest_message = message.clone();
        self.history.push_back(message);
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
    }

    pub fn set_busy(&mut self, busy: bool) {
        self.manual_busy = busy;
    }

    pub fn fail_texts_containing(&mut self, marker: &str) {
        self.fail_markers.push(marker.to_owned());
    }

    /// Applies everything that finished by `now`, in time order.
    pub fn advance(&mut self, now: Instant) {
        while let Some(incoming) = self.take_due(now) {
            self.advance_queue(incoming.at);
            self.enqueue(incoming.texts, &incoming.track_id, incoming.at);
        }
        self.advance_queue(now);
    }

    /// Processing and deletion up to `now`.
    fn advance_queue(&mut self, now: Instant) {
        while let Some((id, seq)) = self.queue.front().cloned() {
            let Some(record) = self.records.get_mut(&id).filter(|r| r.seq == seq) else {
                self.queue.pop_front();
                continue;
            };
            if record.ready_at <= now {
                let ready_at = record.ready_at;
                let failing = self.fail_markers.iter().find(|m| record.doc.text.contains(m.as_str())).cloned();
                let updated = {
                    let (base, wall) = self.epoch;
                    chrono::Duration::from_std(ready_at.saturating_duration_since(base))
                        .map(|d| wall + d)
                        .unwrap_or(wall)
                };
                let record = self.records.get_mut(&id).expect("checked above");
                record.doc.updated_at = updated;
                let message = match failing {
                    Some(marker) => {
                        record.doc.status = SimDocStatus::Failed;
                        record.doc.error_msg = Some(format!(
                            "LLM func: Error in entity extraction after retries (simulated failure for text containing {marker:?})"
                        ));
                        format!("Failed to extract document {id}")
                    }
                    None => {
                        record.doc.status = SimDocStatus::Processed;
                        record.doc.chunks_count = Some((record.doc.text.chars().count() as u64).div_ceil(1200).max(1));
                        format!("Completed processing file: {}", record.doc.file_path)
                    }
                };
                self.queue.pop_front();
                self.log(message);
                continue;
            }
            if record.starts_at <= now && record.doc.status == SimDocStatus::Pending {
                let starts_at = record.starts_at;
                let started = self.wall(starts_at);
                let record = self.records.get_mut(&id).expect("checked above");
                record.doc.status = SimDocStatus::Processing;
                record.doc.updated_at = started;
            }
            break;
        }
        if self.queue.is_empty() && self.deletion.is_none() {
            self.last_ready = None;
        }

        if self.deletion.as_ref().is_some_and(|d| d.ends_at <= now) {
            let deletion = self.deletion.take().expect("checked above");
            for id in deletion.ids {
                match self.records.remove(&id) {
                    Some(record) => {
                        if self.by_name.get(&record.doc.file_path) == Some(&id) {
                            self.by_name.remove(&record.doc.file_path);
                        }
                        if let Some(key) = record.content_key
                            && self.by_content.get(&key) == Some(&id)
                        {
                            self.by_content.remove(&key);
                        }
                        self.log(format!("Successfully deleted document {id}"));
                    }
                    None => self.log(format!("Document {id} not found")),
                }
            }
            self.job_name = "Default Job".into();
        }
    }

    fn processing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// LightRAG's `pipeline_status.busy`.
    pub fn busy(&self) -> bool {
        self.manual_busy || self.deletion.is_some() || self.processing()
    }

    fn pending_count(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r.doc.status, SimDocStatus::Pending | SimDocStatus::Processing))
            .count()
    }

    /// Checks and normalises a `file_source` the way 1.5.x does: required,
    /// no control characters, only the basename kept, `.[engine]` hints removed.
    pub fn stored_name(file_source: Option<&Value>, loc: &[&str]) -> Result<String, Refusal> {
        let required = || Refusal::detail(400, "A valid file_source is required for text insertion");
        let raw = match file_source {
            None | Some(Value::Null) => return Err(required()),
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(Refusal::validation("string_type", loc, "Input should be a valid string", other.clone()));
            }
        };
        if raw.chars().any(char::is_control) {
            return Err(Refusal::validation(
                "value_error",
                loc,
                "Value error, file_source must not contain control characters",
                Value::String(raw.to_owned()),
            ));
        }
        let name = strip_engine_hint(connector_core::lightrag::stored_basename(raw.trim()));
        if name.trim().is_empty() {
            return Err(required());
        }
        Ok(name)
    }

    /// `POST /documents/text` and `/documents/texts` after the request
    /// model was read: one track id for all; all or nothing.
    pub fn insert(&mut self, texts: Vec<NewText>, now: Instant) -> Result<String, Refusal> {
        self.advance(now);
        if let Some(limit) = self.rules.max_pending_documents
            && self.pending_count() + self.incoming_count() + texts.len() > limit
        {
            let mut refusal = Refusal::detail(
                429,
                format!("Too many pending documents ({limit} allowed). Retry after the queue drains."),
            );
            refusal.headers.push(("retry-after", "30".into()));
            return Err(refusal);
        }
        if self.deletion.is_some() {
            return Err(Refusal::detail(
                409,
                "Pipeline is clearing or deleting documents. Wait for the running job to finish before submitting new work.",
            ));
        }
        for new in &texts {
            if let Some(id) = self.by_name.get(&new.file_source) {
                let status = self.records.get(id).map(|r| r.doc.status.as_str()).unwrap_or("processed");
                return Err(Refusal::detail(
                    409,
                    format!(
                        "Document storage already contains '{}' (Status: {status}). Delete the existing record before re-inserting.",
                        new.file_source
                    ),
                ));
            }
        }

        let track_id = format!("insert_{}_{:08x}", self.wall(now).format("%Y%m%d_%H%M%S"), fastrand::u32(..));
        let created = self.wall(now);
        let delay = self.enqueue_delay(&texts);
        if delay.is_zero() {
            self.enqueue(texts, &track_id, now);
        } else {
            self.incoming.push(Incoming { texts, track_id: track_id.clone(), at: now + delay });
        }
        if self.job_start.is_none() || !self.busy() {
            self.job_start = Some(created);
        }
        Ok(track_id)
    }

    /// `DELETE /documents/delete_document` after validation.
    pub fn delete(&mut self, ids: Vec<String>, now: Instant) -> Value {
        self.advance(now);
        let joined = ids.join(", ");
        // LightRAG refuses while any accepted request is still enqueuing.
        let busy = self.manual_busy
            || self.deletion.is_some()
            || !self.incoming.is_empty()
            || (self.rules.busy_while_processing && self.processing());
        if busy {
            return json!({
                "status": "busy",
                "message": "Cannot delete documents while pipeline is busy",
                "doc_id": joined,
            });
        }
        let count = ids.len();
        self.job_name = format!("Deleting {count} Documents");
        self.job_start = Some(self.wall(now));
        self.deletion = Some(Deletion { ids, ends_at: now + self.rules.delete_delay });
        self.log(format!("Starting deletion of {count} documents"));
        json!({
            "status": "deletion_started",
            "message": format!("Document deletion for {count} documents has been initiated. Processing will continue in background."),
            "doc_id": joined,
        })
    }

    /// `DELETE /documents`: drops everything at once.
    pub fn clear(&mut self, now: Instant) -> Value {
        self.advance(now);
        if self.busy() {
            return json!({ "status": "busy", "message": "Cannot clear documents while pipeline is busy" });
        }
        let count = self.records.len();
        self.records.clear();
        self.by_name.clear();
        self.by_content.clear();
        self.queue.clear();
        self.incoming.clear();
        self.last_ready = None;
        json!({ "status": "success", "message": format!("All documents cleared successfully. Deleted {count} files.") })
    }

    /// Every record, oldest first.
    pub fn documents(&mut self, now: Instant) -> Vec<SimDocument> {
        self.advance(now);
        let mut docs: Vec<SimDocument> = self.records.values().map(|r| r.doc.clone()).collect();
        docs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        docs
    }

    pub fn track_status(&mut self, track_id: &str, now: Instant) -> Value {
        self.advance(now);
        let mut docs: Vec<&SimDocument> =
            self.records.values().map(|r| &r.doc).filter(|d| d.track_id.as_deref() == Some(track_id)).collect();
        docs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        let mut summary: HashMap<String, u64> = HashMap::new();
        for doc in &docs {
            *summary.entry(doc.status.summary_key()).or_default() += 1;
        }
        json!({
            "track_id": track_id,
            "documents": docs.iter().map(|d| doc_json(d)).collect::<Vec<_>>(),
            "total_count": docs.len(),
            "status_summary": summary,
        })
    }

    pub fn status_counts(&mut self, now: Instant) -> Value {
        self.advance(now);
        let mut counts = serde_json::Map::new();
        for status in SimDocStatus::ALL {
            counts.insert(status.as_str().into(), json!(0));
        }
        for record in self.records.values() {
            let key = record.doc.status.as_str();
            let n = counts.get(key).and_then(Value::as_u64).unwrap_or(0);
            counts.insert(key.into(), json!(n + 1));
        }
        counts.insert("all".into(), json!(self.records.len()));
        Value::Object(counts)
    }

    pub fn paginated(&mut self, query: &PageQuery, now: Instant) -> Value {
        let status_counts = self.status_counts(now);
        let mut docs: Vec<&SimDocument> = self
            .records
            .values()
            .map(|r| &r.doc)
            .filter(|d| query.statuses.is_empty() || query.statuses.contains(&d.status))
            .collect();
        docs.sort_by(|a, b| {
            let order = match query.sort_field {
                SortField::CreatedAt => a.created_at.cmp(&b.created_at),
                SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
                SortField::Id => a.id.cmp(&b.id),
                SortField::FilePath => a.file_path.cmp(&b.file_path),
            }
            .then_with(|| a.id.cmp(&b.id));
            if query.descending { order.reverse() } else { order }
        });
        let total = docs.len();
        let total_pages = total.div_ceil(query.page_size);
        let start = (query.page - 1).saturating_mul(query.page_size).min(total);
        let end = (start + query.page_size).min(total);
        json!({
            "documents": docs[start..end].iter().map(|d| doc_json(d)).collect::<Vec<_>>(),
            "pagination": {
                "page": query.page,
                "page_size": query.page_size,
                "total_count": total,
                "total_pages": total_pages,
                "has_next": query.page < total_pages,
                "has_prev": query.page > 1,
            },
            "status_counts": status_counts,
        })
    }

    pub fn pipeline_status(&mut self, now: Instant) -> Value {
        self.advance(now);
        let pending = self.pending_count();
        json!({
            "autoscanned": false,
            "busy": self.busy(),
            "job_name": self.job_name,
            "job_start": self.job_start.map(iso),
            "docs": pending,
            "batchs": usize::from(pending > 0),
            "cur_batch": usize::from(pending > 0),
            "request_pending": false,
            "pending_enqueues": self.pending_enqueues(),
            "destructive_busy": self.deletion.is_some(),
            "scanning": false,
            "cancellation_requested": false,
            "latest_message": self.latest_message,
            "history_messages": self.history.iter().collect::<Vec<_>>(),
            "update_status": {},
        })
    }
}

/// A validated `POST /documents/paginated` request.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub statuses: Vec<SimDocStatus>,
    pub page: usize,
    pub page_size: usize,
    pub sort_field: SortField,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    Id,
    FilePath,
}

/// Python's `datetime.isoformat()` of an aware UTC time.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// LightRAG's `DocStatusResponse`.
pub fn doc_json(doc: &SimDocument) -> Value {
    let duplicate = doc.metadata.as_ref().and_then(|m| m.get("duplicate_kind")).and_then(Value::as_str);
    let original = doc.metadata.as_ref().and_then(|m| m.get("original_doc_id")).and_then(Value::as_str);
    let summary: String = if let Some(kind) = duplicate {
        format!("[DUPLICATE:{kind}] Original document: {}", original.unwrap_or_default())
    } else if doc.text.chars().count() > 250 {
        format!("{}...", doc.text.chars().take(250).collect::<String>())
    } else {
        doc.text.clone()
    };
    json!({
        "id": doc.id,
        "content_summary": summary,
        "content_length": doc.text.chars().count(),
        "status": doc.status.as_str(),
        "created_at": iso(doc.created_at),
        "updated_at": iso(doc.updated_at),
        "track_id": doc.track_id,
        "chunks_count": doc.chunks_count,
        "error_msg": doc.error_msg,
        "metadata": doc.metadata,
        "file_path": doc.file_path,
    })
}

/// Removes a `.[engine]` parser hint (`report.[docling].pdf` -> `report.pdf`).
fn strip_engine_hint(name: &str) -> String {
    if let Some(open) = name.find(".[")
        && let Some(close_rel) = name[open..].find(']')
    {
        let close = open + close_rel;
        let engine = &name[open + 2..close];
        if !engine.is_empty() && engine.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return format!("{}{}", &name[..open], &name[close + 1..]);
        }
    }
    name.to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(process_ms: u64, delete_ms: u64) -> StoreRules {
        StoreRules {
            process_delay: Duration::from_millis(process_ms),
            delete_delay: Duration::from_millis(delete_ms),
            busy_while_processing: true,
            max_pending_documents: None,
        }
    }

    fn text(text: &str, name: &str) -> NewText {
        NewText { text: text.into(), file_source: name.into() }
    }

    #[test]
    fn names_are_basenames_without_engine_hints() {
        let name = |s: &str| Store::stored_name(Some(&json!(s)), &["body", "file_source"]);
        assert_eq!(name("memories/2024/m1.txt").unwrap(), "m1.txt");
        assert_eq!(name("a/b/").unwrap(), "b");
        assert_eq!(name("memory:CTX1:42").unwrap(), "memory:CTX1:42");
        assert_eq!(name("report.[docling].pdf").unwrap(), "report.pdf");
        assert_eq!(name("").unwrap_err().status, 400);
        assert_eq!(name("a\nb").unwrap_err().status, 422);
        assert_eq!(Store::stored_name(None, &[]).unwrap_err().status, 400);
    }

    #[test]
    fn processing_is_sequential_and_lazy() {
        let t0 = Instant::now();
        let mut store = Store::new(rules(100, 0), t0);
        store.insert(vec![text("a", "a.txt"), text("b", "b.txt")], t0).unwrap();
        let status = |store: &mut Store, at| {
            store.documents(at).into_iter().map(|d| (d.file_path, d.status)).collect::<Vec<_>>()
        };
        assert_eq!(
            status(&mut store, t0),
            vec![("a.txt".into(), SimDocStatus::Processing), ("b.txt".into(), SimDocStatus::Pending)]
        );
        assert!(store.busy());
        let at = t0 + Duration::from_millis(150);
        assert_eq!(
            status(&mut store, at),
            vec![("a.txt".into(), SimDocStatus::Processed), ("b.txt".into(), SimDocStatus::Processing)]
        );
        assert_eq!(store.delete(vec!["doc-x".into()], at)["status"], "busy");
        let at = t0 + Duration::from_millis(200);
        assert!(status(&mut store, at).iter().all(|(_, s)| *s == SimDocStatus::Processed));
        assert!(!store.busy());
    }

    #[test]
    fn deletion_blocks_inserts_until_done_and_frees_the_name() {
        let t0 = Instant::now();
        let mut store = Store::new(rules(0, 50), t0);
        store.insert(vec![text("a", "a.txt")], t0).unwrap();
        let id = connector_core::lightrag::doc_id("a.txt").as_str().to_owned();
        assert_eq!(store.delete(vec![id.clone()], t0)["status"], "deletion_started");
        let refused = store.insert(vec![text("a2", "a.txt")], t0 + Duration::from_millis(10)).unwrap_err();
        assert_eq!(refused.status, 409);
        assert!(refused.body["detail"].as_str().unwrap().starts_with("Pipeline is clearing or deleting documents"));
        store.insert(vec![text("a2", "a.txt")], t0 + Duration::from_millis(60)).unwrap();
        let docs = store.documents(t0 + Duration::from_millis(60));
        assert_eq!(docs.len(), 1);
        assert_eq!((docs[0].id.as_str(), docs[0].text.as_str()), (id.as_str(), "a2"));
    }

    #[test]
    fn a_reused_id_is_scheduled_by_its_new_entry() {
        let t0 = Instant::now();
        let mut store = Store::new(rules(10, 0), t0);
        store.insert(vec![text("a", "a.txt")], t0).unwrap();
        let id = connector_core::lightrag::doc_id("a.txt").as_str().to_owned();
        let t1 = t0 + Duration::from_millis(20);
        store.delete(vec![id], t1);
        store.insert(vec![text("a2", "a.txt")], t1 + Duration::from_millis(1)).unwrap();
        store.insert(vec![text("b", "b.txt")], t1 + Duration::from_millis(1)).unwrap();
        let docs = store.documents(t1 + Duration::from_millis(40));
        assert!(docs.iter().all(|d| d.status == SimDocStatus::Processed), "{docs:?}");
    }
}
