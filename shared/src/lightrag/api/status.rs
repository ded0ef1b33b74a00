//! Following documents through LightRAG's pipeline: one insert's
//! `track_status`, or pages of the document list when many are asked for;
//! the pipeline's own state; the `dup-` records among the failed documents.

use super::transport::BusyConflict;
use super::{ApiSink, MAX_FAILED_PAGES, PAGE_SIZE, PAGINATED_PATH, PIPELINE_PATH, TRACK_STATUS_PATH};
use crate::ids::{DocId, TrackId};
use crate::lightrag::{DuplicateRecord, PipelineState, RemoteStatus, SinkError, TrackedDoc};
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;

impl ApiSink {
    /// `GET /documents/track_status/{id}`: the documents of one insert.
    pub(super) async fn track_status(
        &self,
        track_id: &TrackId,
        into: &mut HashMap<DocId, RemoteStatus>,
    ) -> Result<(), SinkError> {
        let path = format!(
            "{TRACK_STATUS_PATH}{}",
            percent_encoding::utf8_percent_encode(track_id.as_str(), percent_encoding::NON_ALPHANUMERIC)
        );
        let answer = self.call(Method::GET, &path, None, BusyConflict::Retry).await?;
        let body = answer.json().unwrap_or(Value::Null);
        for doc in body.get("documents").and_then(Value::as_array).into_iter().flatten() {
            if let Some((id, status)) = read_doc_status(doc, &self.secrets()) {
                into.insert(id, status);
            }
        }
        Ok(())
    }

    /// Pages through `POST /documents/paginated` (newest update first) until
    /// every wanted document was seen or the pages are older than the oldest
    /// submission.
    pub(super) async fn page_statuses(
        &self,
        docs: &[TrackedDoc],
        into: &mut HashMap<DocId, RemoteStatus>,
    ) -> Result<(), SinkError> {
        let wanted: std::collections::HashSet<&DocId> = docs.iter().map(|d| &d.doc_id).collect();
        let oldest = docs.iter().filter_map(|d| d.submitted_at).min();
        let mut found = 0usize;
        for page in 1.. {
            let body = json!({
                "status_filters": null, "page": page, "page_size": PAGE_SIZE,
                "sort_field": "updated_at", "sort_direction": "desc",
            });
            let answer = self.call(Method::POST, PAGINATED_PATH, Some(&body), BusyConflict::Retry).await?;
            let body = answer.json().unwrap_or(Value::Null);
            let documents = body.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut page_oldest: Option<chrono::DateTime<chrono::Utc>> = None;
            for doc in &documents {
                if let Some(updated) = doc
                    .get("updated_at")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    let updated = updated.with_timezone(&chrono::Utc);
                    page_oldest = Some(page_oldest.map_or(updated, |o| o.min(updated)));
                }
                if let Some((id, status)) = read_doc_status(doc, &self.secrets())
                    && wanted.contains(&id)
                    && into.insert(id, status).is_none()
                {
                    found += 1;
                }
            }
            let has_next = body.pointer("/pagination/has_next").and_then(Value::as_bool).unwrap_or(false);
            let older_than_wanted = match (page_oldest, oldest) {
                (Some(page), Some(oldest)) => page < oldest - chrono::Duration::minutes(5),
                _ => false,
            };
            if found >= wanted.len() || !has_next || documents.is_empty() || older_than_wanted {
                break;
            }
        }
        Ok(())
    }
}

impl ApiSink {
    /// `GET /documents/pipeline_status`: whether accepted requests are still
    /// being enqueued (`pending_enqueues`) and whether the pipeline is busy.
    pub(super) async fn pipeline_state(&self) -> Result<PipelineState, SinkError> {
        let answer = self.call(Method::GET, PIPELINE_PATH, None, BusyConflict::Retry).await?;
        let body = self.json_of(&answer, PIPELINE_PATH, "LightRAG's pipeline status")?;
        Ok(PipelineState {
            pending_enqueues: body.get("pending_enqueues").and_then(Value::as_u64),
            busy: body.get("busy").and_then(Value::as_bool),
        })
    }

    /// The `dup-` records LightRAG made for a name it already held
    /// (`metadata.duplicate_kind` "filename"), from the failed documents,
    /// newest first, at most [`MAX_FAILED_PAGES`] pages. Records of repeated
    /// text under another name are not among them: there the name itself
    /// holds no document.
    pub(super) async fn duplicate_records(&self) -> Result<Vec<DuplicateRecord>, SinkError> {
        let mut found = Vec::new();
        for page in 1..=MAX_FAILED_PAGES {
            let body = json!({
                "status_filters": ["failed"], "page": page, "page_size": PAGE_SIZE,
                "sort_field": "created_at", "sort_direction": "desc",
            });
            let answer = self.call(Method::POST, PAGINATED_PATH, Some(&body), BusyConflict::Retry).await?;
            let body = answer.json().unwrap_or(Value::Null);
            let documents = body.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
            found.extend(documents.iter().filter_map(read_duplicate));
            let has_next = body.pointer("/pagination/has_next").and_then(Value::as_bool).unwrap_or(false);
            if !has_next || documents.is_empty() {
                break;
            }
        }
        Ok(found)
    }
}

/// One document of the list, when it is a `dup-` record of a name.
pub(super) fn read_duplicate(doc: &Value) -> Option<DuplicateRecord> {
    let id = doc.get("id").and_then(Value::as_str).filter(|id| id.starts_with("dup-"))?;
    let metadata = doc.get("metadata");
    let kind = metadata.and_then(|m| m.get("duplicate_kind")).and_then(Value::as_str);
    let by_name = match kind {
        Some(kind) => kind == "filename",
        None => doc.get("error_msg").and_then(Value::as_str).is_some_and(|m| m.starts_with("File name already exists")),
    };
    let file_path = doc.get("file_path").and_then(Value::as_str).filter(|_| by_name)?;
    Some(DuplicateRecord {
        id: DocId::new(id),
        file_path: file_path.to_owned(),
        original: metadata.and_then(|m| m.get("original_doc_id")).and_then(Value::as_str).map(DocId::new),
    })
}

/// Reads one document of LightRAG's lists: its id and status. LightRAG's
/// `error_msg` is quoted like any answer's body (bounded, scrubbed): it goes
/// into the ledger, the report and the API.
pub(super) fn read_doc_status(doc: &Value, secrets: &[&Secret]) -> Option<(DocId, RemoteStatus)> {
    let id = doc.get("id").and_then(Value::as_str)?;
    let status = doc.get("status").and_then(Value::as_str)?.to_ascii_lowercase();
    let status = status.strip_prefix("docstatus.").unwrap_or(&status).to_owned();
    let remote = match status.as_str() {
        "processed" => RemoteStatus::Processed,
        "failed" => RemoteStatus::Failed {
            error: match doc.get("error_msg").and_then(Value::as_str) {
                Some(message) => crate::http::excerpt(message.as_bytes(), secrets),
                None => "failed in LightRAG (no message)".to_owned(),
            },
        },
        _ => RemoteStatus::Queued { status },
    };
    Some((DocId::new(id), remote))
}
