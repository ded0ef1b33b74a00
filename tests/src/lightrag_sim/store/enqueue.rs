//! Enqueueing what an insert accepted. LightRAG 1.5.7 answers an insert
//! (200, track id) once a background task holds the texts; that task writes
//! the records later (`apipeline_enqueue_documents`). Until then the names
//! are not listed, not in `track_status`, not seen by the 409 check, and the
//! request counts in the pipeline status's `pending_enqueues`. When the task
//! runs, a name that has a record by then (the same name accepted twice in
//! that window) gets a failed `dup-` record instead, "File name already
//! exists". On an idle server the window is milliseconds; a test widens it
//! per name with [`Store::slow_enqueue`], like the real servers' hook in
//! `tests/lightrag/serve.py`.

use super::{NewText, Record, SimDocStatus, SimDocument, Store};
use md5::{Digest, Md5};
use serde_json::json;
use std::time::{Duration, Instant};

/// An accepted request whose records are not written yet.
#[derive(Debug)]
pub(super) struct Incoming {
    pub texts: Vec<NewText>,
    pub track_id: String,
    /// When its records are written.
    pub at: Instant,
}

impl Store {
    /// Requests with a name containing `marker` are enqueued `delay` after
    /// their 200 (zero: at once again).
    pub fn slow_enqueue(&mut self, marker: &str, delay: Duration) {
        self.slow_enqueue.retain(|(m, _)| m != marker);
        if !delay.is_zero() {
            self.slow_enqueue.push((marker.to_owned(), delay));
        }
    }

    pub(super) fn enqueue_delay(&self, texts: &[NewText]) -> Duration {
        self.slow_enqueue
            .iter()
            .filter(|(marker, _)| texts.iter().any(|t| t.file_source.contains(marker.as_str())))
            .map(|(_, delay)| *delay)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// LightRAG's `pending_enqueues`: accepted requests not enqueued yet,
    /// and the request whose task drives processing until the queue is empty.
    pub fn pending_enqueues(&self) -> usize {
        self.incoming.len() + usize::from(!self.queue.is_empty())
    }

    pub(super) fn incoming_count(&self) -> usize {
        self.incoming.iter().map(|i| i.texts.len()).sum()
    }

    /// The earliest accepted request due by `now`, taken out.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Incoming> {
        let (index, _) = self.incoming.iter().enumerate().filter(|(_, i)| i.at <= now).min_by_key(|(_, i)| i.at)?;
        Some(self.incoming.remove(index))
    }

    /// Writes the records of one accepted request at `now`.
    pub(super) fn enqueue(&mut self, texts: Vec<NewText>, track_id: &str, now: Instant) {
        let created = self.wall(now);
        for (index, new) in texts.into_iter().enumerate() {
            let content_key = hex::encode(Md5::digest(new.text.as_bytes()));
            let seq = self.next_seq;
            self.next_seq += 1;
            let id = connector_core::lightrag::doc_id(&new.file_source).as_str().to_owned();
            if let Some(original_id) = self.by_name.get(&new.file_source).cloned() {
                let original_status = self.records.get(&original_id).map_or(SimDocStatus::Processed, |r| r.doc.status);
                let dup_id = format!(
                    "dup-{}",
                    hex::encode(Md5::digest(format!("{id}-{track_id}-{index}-{}", new.file_source).as_bytes()))
                );
                let doc = SimDocument {
                    id: dup_id.clone(),
                    file_path: new.file_source,
                    status: SimDocStatus::Failed,
                    error_msg: Some(format!(
                        "File name already exists. Original doc_id: {original_id}, Status: DocStatus.{}",
                        original_status.as_str().to_ascii_uppercase()
                    )),
                    text: new.text,
                    track_id: Some(track_id.to_owned()),
                    created_at: created,
                    updated_at: created,
                    chunks_count: Some(0),
                    metadata: Some(json!({
                        "is_duplicate": true,
                        "duplicate_kind": "filename",
                        "original_doc_id": original_id,
                        "original_track_id": self.records.get(&original_id).and_then(|r| r.doc.track_id.clone()),
                    })),
                };
                self.log(format!("Duplicate document detected (filename): {dup_id}"));
                self.records.insert(dup_id, Record { doc, seq, starts_at: now, ready_at: now, content_key: None });
                continue;
            }
            if let Some(original_id) = self.by_content.get(&content_key).cloned() {
                let (original_status, original_track) = self
                    .records
                    .get(&original_id)
                    .map(|r| (r.doc.status.as_str(), r.doc.track_id.clone()))
                    .unwrap_or(("processed", None));
                let id = format!("dup-{content_key}");
                if let Some(old) = self.records.remove(&id)
                    && self.by_name.get(&old.doc.file_path) == Some(&id)
                {
                    self.by_name.remove(&old.doc.file_path);
                }
                let doc = SimDocument {
                    id: id.clone(),
                    file_path: new.file_source.clone(),
                    status: SimDocStatus::Failed,
                    error_msg: Some(format!(
                        "Identical content already exists under another filename. Original doc_id: {original_id}, Status: {original_status}"
                    )),
                    text: new.text,
                    track_id: Some(track_id.to_owned()),
                    created_at: created,
                    updated_at: created,
                    chunks_count: None,
                    metadata: Some(json!({
                        "is_duplicate": true,
                        "duplicate_kind": "content_hash",
                        "original_doc_id": original_id,
                        "original_track_id": original_track,
                    })),
                };
                self.by_name.insert(new.file_source, id.clone());
                self.records.insert(id, Record { doc, seq, starts_at: now, ready_at: now, content_key: None });
                continue;
            }

            let starts_at = self.last_ready.map_or(now, |last| last.max(now));
            let ready_at = starts_at + self.rules.process_delay;
            self.last_ready = Some(ready_at);
            let doc = SimDocument {
                id: id.clone(),
                file_path: new.file_source.clone(),
                status: SimDocStatus::Pending,
                text: new.text,
                track_id: Some(track_id.to_owned()),
                error_msg: None,
                created_at: created,
                updated_at: created,
                chunks_count: None,
                metadata: Some(json!({})),
            };
            self.by_name.insert(new.file_source, id.clone());
            self.by_content.insert(content_key.clone(), id.clone());
            self.queue.push_back((id.clone(), seq));
            self.records.insert(id, Record { doc, seq, starts_at, ready_at, content_key: Some(content_key) });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Store, StoreRules};
    use super::*;

    fn text(text: &str, name: &str) -> NewText {
        NewText { text: text.into(), file_source: name.into() }
    }

    #[test]
    fn a_name_accepted_twice_before_it_was_enqueued_gets_a_dup_record() {
        let t0 = Instant::now();
        let rules = StoreRules {
            process_delay: Duration::from_millis(10),
            delete_delay: Duration::ZERO,
            busy_while_processing: true,
            max_pending_documents: None,
        };
        let mut store = Store::new(rules, t0);
        store.slow_enqueue("slow", Duration::from_millis(100));
        let first = store.insert(vec![text("first copy", "slow_a.txt")], t0).unwrap();
        assert!(store.documents(t0).is_empty(), "accepted but not enqueued: not listed");
        assert_eq!(store.track_status(&first, t0)["documents"], json!([]));
        assert_eq!(store.pipeline_status(t0)["pending_enqueues"], json!(1));
        assert_eq!(store.delete(vec!["doc-x".into()], t0)["status"], "busy", "no deletion while enqueuing");
        let at = t0 + Duration::from_millis(50);
        let second = store.insert(vec![text("second copy", "slow_a.txt")], at).expect("the 409 check cannot see it");
        assert_eq!(store.pipeline_status(at)["pending_enqueues"], json!(2));

        let docs = store.documents(t0 + Duration::from_millis(200));
        let original = connector_core::lightrag::doc_id("slow_a.txt").as_str().to_owned();
        assert_eq!(docs.len(), 2, "{docs:?}");
        let kept = docs.iter().find(|d| d.id == original).unwrap();
        assert_eq!((kept.text.as_str(), kept.track_id.as_deref()), ("first copy", Some(first.as_str())));
        let dup = docs.iter().find(|d| d.id.starts_with("dup-")).unwrap();
        assert_eq!((dup.status, dup.track_id.as_deref()), (SimDocStatus::Failed, Some(second.as_str())));
        assert!(
            dup.error_msg
                .as_deref()
                .unwrap()
                .starts_with(&format!("File name already exists. Original doc_id: {original}"))
        );
        assert_eq!(dup.metadata.as_ref().unwrap()["duplicate_kind"], json!("filename"));
        let at = t0 + Duration::from_millis(300);
        assert_eq!(store.pipeline_status(at)["pending_enqueues"], json!(0));
        assert_eq!(store.insert(vec![text("third", "slow_a.txt")], at).unwrap_err().status, 409);

        // Deleting the dup- record keeps the original.
        assert_eq!(store.delete(vec![dup.id.clone()], at)["status"], "deletion_started");
        let left: Vec<String> = store.documents(at + Duration::from_millis(1)).into_iter().map(|d| d.id).collect();
        assert_eq!(left, vec![original]);
    }
}
