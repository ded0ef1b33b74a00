//! Inserting and replacing documents: batches split on refusal, the 409
//! that names one stored document, the delete + re-insert of a replace, and
//! the reading of an insert's answer.

use super::transport::{Answer, BusyConflict, status_text};
use super::{ALREADY_CONTAINS, ApiSink, DELETE_PATH, FIRST_POLL_DELAY, INSERT_BATCH_PATH, INSERT_PATH, MAX_POLL_DELAY};
use crate::ids::{DocId, TrackId};
use crate::lightrag::{
    DocumentSink, InsertOutcome, Removal, ReplaceOutcome, SinkError, SinkErrorKind, doc_id, stored_basename,
};
use crate::transform::Document;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

impl ApiSink {
    /// One `POST /documents/texts` for `group` (indexes into `docs`). A 409
    /// names one stored document: that one is `AlreadyStored` and the rest
    /// is sent again; a refusal of the whole request (400/413/422) is split
    /// in halves down to single inserts, so one bad or oversized document
    /// never costs the others.
    pub(super) async fn insert_group(
        &self,
        docs: &[Document],
        group: Vec<usize>,
        outcomes: &mut [Option<Result<InsertOutcome, SinkError>>],
        queue: &mut Vec<Vec<usize>>,
    ) {
        if group.len() == 1 {
            outcomes[group[0]] = Some(self.insert(&docs[group[0]]).await);
            return;
        }
        let body = json!({
            "texts": group.iter().map(|&i| docs[i].text.as_str()).collect::<Vec<_>>(),
            "file_sources": group.iter().map(|&i| docs[i].file_source.as_str()).collect::<Vec<_>>(),
        });
        let answer = match self.call(Method::POST, INSERT_BATCH_PATH, Some(&body), BusyConflict::Retry).await {
            Ok(answer) => answer,
            Err(e) if e.kind == SinkErrorKind::Rejected => {
                let (left, right) = group.split_at(group.len() / 2);
                tracing::debug!(size = group.len(), error = %e.message, "batch refused; splitting it");
                queue.push(right.to_vec());
                queue.push(left.to_vec());
                return;
            }
            Err(e) => {
                for i in group {
                    outcomes[i] = Some(Err(e.clone()));
                }
                return;
            }
        };
        if answer.status == StatusCode::CONFLICT {
            let detail = answer.detail().unwrap_or_default();
            let named = detail.split('\'').nth(1).unwrap_or_default().to_owned();
            match group.iter().position(|&i| stored_basename(&docs[i].file_source) == named) {
                Some(at) => {
                    outcomes[group[at]] = Some(Ok(InsertOutcome::AlreadyStored { status: stored_status(&detail) }));
                    let rest: Vec<usize> =
                        group.iter().enumerate().filter(|(j, _)| *j != at).map(|(_, &i)| i).collect();
                    if !rest.is_empty() {
                        queue.push(rest);
                    }
                }
                None => {
                    let (left, right) = group.split_at(group.len() / 2);
                    queue.push(right.to_vec());
                    queue.push(left.to_vec());
                }
            }
            return;
        }
        match self.read_insert(&answer) {
            Ok(InsertReading::Accepted { track_id }) => {
                for i in group {
                    outcomes[i] = Some(Ok(InsertOutcome::Accepted { track_id: track_id.clone() }));
                }
            }
            Ok(InsertReading::AlreadyStored { status }) => {
                for i in group {
                    outcomes[i] = Some(Ok(InsertOutcome::AlreadyStored { status: status.clone() }));
                }
            }
            Ok(InsertReading::Busy { message }) => {
                for i in group {
                    outcomes[i] = Some(Err(SinkError::transient(message.clone())));
                }
            }
            Err(e) => {
                for i in group {
                    outcomes[i] = Some(Err(e.clone()));
                }
            }
        }
    }

    /// Replaces documents (LightRAG has no update): one delete for all
    /// their ids, retried while the pipeline is busy, then one insert of the
    /// new texts under the same names, retried while the deletion runs. What
    /// cannot finish within `replace_wait` is `Deferred` to a later run,
    /// nothing lost (deleting an absent id is harmless next time).
    pub(super) async fn replace_many(&self, docs: &[Document]) -> Vec<Result<ReplaceOutcome, SinkError>> {
        let all = |outcome: Result<ReplaceOutcome, SinkError>| vec![outcome; docs.len()];
        if docs.is_empty() {
            return Vec::new();
        }
        let ids: Vec<DocId> = docs.iter().map(|d| doc_id(&d.file_source)).collect();
        let shown_ids = shown(&ids);
        let deadline = Instant::now() + self.replace_wait;
        match self.start_deletion(&ids, deadline).await {
            Ok(Deletion::Started) => {}
            Ok(Deletion::Refused { busy }) => {
                return all(Ok(ReplaceOutcome::Deferred {
                    reason: format!(
                        "{busy}, so deleting {shown_ids} was refused for {:?}; the update is retried on a later run",
                        self.replace_wait
                    ),
                }));
            }
            Err(e) => return all(Err(e)),
        }

        // The deletion runs in the background; until it is done LightRAG
        // answers the re-insert with 409 ("clearing or deleting", or still
        // "already contains"). Poll with a growing pause until it accepts.
        let (path, insert) = if docs.len() == 1 {
            (INSERT_PATH, json!({ "text": docs[0].text, "file_source": docs[0].file_source }))
        } else {
            (
                INSERT_BATCH_PATH,
                json!({
                    "texts": docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
                    "file_sources": docs.iter().map(|d| d.file_source.as_str()).collect::<Vec<_>>(),
                }),
            )
        };
        // An error from here on leaves the old documents deleted and the new
        // ones not stored; say so, so the report explains the gap (the next
        // run's replace inserts them).
        let deleted = |e: SinkError| SinkError {
            kind: e.kind,
            message: format!(
                "{shown_ids} {} deleted but storing the new text failed: {}",
                if docs.len() == 1 { "was" } else { "were" },
                e.message
            ),
        };
        let mut pause = FIRST_POLL_DELAY;
        loop {
            let answer = match self.call(Method::POST, path, Some(&insert), BusyConflict::Return).await {
                Ok(answer) => answer,
                Err(e) if e.kind == SinkErrorKind::Rejected && docs.len() > 1 => {
                    // One document spoils the batch: store them one by one.
                    let mut outcomes = Vec::with_capacity(docs.len());
                    for doc in docs {
                        outcomes.push(match self.insert(doc).await {
                            Ok(InsertOutcome::Accepted { track_id }) => Ok(ReplaceOutcome::Replaced { track_id }),
                            Ok(InsertOutcome::AlreadyStored { .. }) => Ok(ReplaceOutcome::Deferred {
                                reason: format!(
                                    "{} is still stored after its deletion; retried on a later run",
                                    doc_id(&doc.file_source)
                                ),
                            }),
                            Err(e) => Err(deleted(e)),
                        });
                    }
                    return outcomes;
                }
                Err(e) => return all(Err(deleted(e))),
            };
            match self.read_insert(&answer) {
                Ok(InsertReading::Accepted { track_id }) => return all(Ok(ReplaceOutcome::Replaced { track_id })),
                Ok(InsertReading::AlreadyStored { .. } | InsertReading::Busy { .. }) => {}
                Err(e) => return all(Err(deleted(e))),
            }
            let now = Instant::now();
            if now >= deadline {
                return all(Ok(ReplaceOutcome::Deferred {
                    reason: format!(
                        "deletion of {shown_ids} did not finish within {:?}; the update is retried on a later run",
                        self.replace_wait
                    ),
                }));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Asks LightRAG to delete `ids`, again while it answers busy (it refuses
    /// while it processes or enqueues anything) until `deadline`. The
    /// deletion then runs in the background.
    pub(super) async fn start_deletion(&self, ids: &[DocId], deadline: Instant) -> Result<Deletion, SinkError> {
        let delete = json!({ "doc_ids": ids, "delete_file": false, "delete_llm_cache": false });
        let what = format!("DELETE {}{DELETE_PATH}", self.shown);
        let mut pause = FIRST_POLL_DELAY;
        loop {
            let answer = self.call(Method::DELETE, DELETE_PATH, Some(&delete), BusyConflict::Return).await?;
            let body = answer.json().unwrap_or(Value::Null);
            let status = body.get("status").and_then(Value::as_str).unwrap_or_default();
            let message = body.get("message").and_then(Value::as_str).unwrap_or_default();
            let busy = if answer.status == StatusCode::CONFLICT {
                format!("{what} answered 409 ({})", self.quote(&answer.detail().unwrap_or_default()))
            } else {
                match status {
                    "deletion_started" | "success" => return Ok(Deletion::Started),
                    "busy" => format!("LightRAG's pipeline is busy ({message})"),
                    "not_allowed" => {
                        return Err(SinkError::rejected(format!(
                            "LightRAG does not allow deleting {}: {what} answered \"not_allowed\": {message}",
                            shown(ids)
                        )));
                    }
                    _ => {
                        return Err(SinkError::transient(format!(
                            "{what} answered {} with an unexpected body: {}",
                            status_text(answer.status),
                            answer.excerpt(self.secrets())
                        )));
                    }
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Deletion::Refused { busy });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Deletes records (the `dup-` records of [`DocumentSink::duplicates`])
    /// and waits, within `wait`, until LightRAG's pipeline is idle again:
    /// the deletion has run.
    pub(super) async fn remove_records(&self, ids: &[DocId], wait: Duration) -> Result<Removal, SinkError> {
        if ids.is_empty() {
            return Ok(Removal::Removed);
        }
        let deadline = Instant::now() + wait;
        if let Deletion::Refused { busy } = self.start_deletion(ids, deadline).await? {
            return Ok(Removal::Busy {
                reason: format!("{busy}, so deleting {} was refused for {wait:?}", shown(ids)),
            });
        }
        let mut pause = FIRST_POLL_DELAY;
        loop {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            if self.pipeline_state().await?.busy != Some(true) {
                return Ok(Removal::Removed);
            }
            if Instant::now() >= deadline {
                return Ok(Removal::Busy {
                    reason: format!("the deletion of {} started but had not finished after {wait:?}", shown(ids)),
                });
            }
            pause = (pause * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Reads the answer of `POST /documents/text`.
    pub(super) fn read_insert(&self, answer: &Answer) -> Result<InsertReading, SinkError> {
        let what = format!("POST {}{INSERT_PATH}", self.shown);
        if answer.status == StatusCode::CONFLICT {
            let detail = answer.detail().unwrap_or_default();
            return Ok(if detail.contains(ALREADY_CONTAINS) {
                if detail.starts_with("Input directory") {
                    // A leftover file in LightRAG's INPUT_DIR, not a stored record.
                    return Err(SinkError::rejected(format!(
                        "{what} answered 409: {}; remove that file from LightRAG's input folder",
                        self.quote(&detail)
                    )));
                }
                InsertReading::AlreadyStored { status: stored_status(&detail) }
            } else {
                InsertReading::Busy { message: format!("{what} answered 409: {}", self.quote(&detail)) }
            });
        }
        let body = answer.json().ok_or_else(|| {
            SinkError::transient(format!(
                "{what} answered {} with something that is not LightRAG's insert answer: {}",
                status_text(answer.status),
                answer.excerpt(self.secrets())
            ))
        })?;
        let status = body.get("status").and_then(Value::as_str).unwrap_or_default();
        match status {
            // Servers before ~1.4 answered a stored document this way.
            "duplicated" => Ok(InsertReading::AlreadyStored { status: None }),
            "failure" => Err(SinkError::rejected(format!(
                "LightRAG rejected the document: {what} answered {} with status \"failure\": {}",
                status_text(answer.status),
                answer.excerpt(self.secrets())
            ))),
            _ => Ok(InsertReading::Accepted {
                track_id: body.get("track_id").and_then(Value::as_str).filter(|t| !t.is_empty()).map(TrackId::from),
            }),
        }
    }
}

/// What asking for a deletion achieved.
pub(super) enum Deletion {
    Started,
    /// Still busy at the deadline: nothing deleted.
    Refused {
        busy: String,
    },
}

/// One id, or how many, for messages.
fn shown(ids: &[DocId]) -> String {
    match ids {
        [one] => one.to_string(),
        many => format!("{} documents", many.len()),
    }
}

pub(super) enum InsertReading {
    Accepted { track_id: Option<TrackId> },
    AlreadyStored { status: Option<String> },
    Busy { message: String },
}

/// The `(Status: processed)` part of LightRAG's "already contains" detail.
pub(super) fn stored_status(detail: &str) -> Option<String> {
    let start = detail.find("(Status: ")? + "(Status: ".len();
    let rest = &detail[start..];
    let status = rest[..rest.find(')')?].trim();
    // Some servers print the enum (`DocStatus.PROCESSED`).
    let status = status.rsplit('.').next().unwrap_or(status);
    (!status.is_empty()).then(|| status.to_ascii_lowercase())
}
