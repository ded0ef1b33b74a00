//! The document sink: where documents go.
//!
//! `api` mode talks HTTP to a LightRAG server ([`api::ApiSink`]); `direct` mode
//! drops files into the input folder of a co-located LightRAG
//! ([`direct::DirectSink`]). Both speak [`DocumentSink`], so the sync engine
//! does not know which one it has.
//!
//! Identity: LightRAG 1.5 stores only the *basename* of `file_source` and
//! derives the document id from it (`doc-` + md5(basename)), so the basename
//! made by [`crate::transform::file_source`] is the memory's identity there.

pub mod api;
pub mod direct;

use crate::config::{LightragConfig, LightragMode};
use crate::ids::{DocId, TrackId};
use crate::transform::Document;
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// What an insert achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Queued (api) or written (direct).
    Accepted { track_id: Option<TrackId> },
    /// The name is already stored (409 "already contains"): the document is
    /// there, which counts as delivered. `status` is LightRAG's status of the
    /// stored record when the answer said it (processed, pending, failed...).
    AlreadyStored { status: Option<String> },
}

/// What replacing a changed document achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// The old document was deleted and the new text inserted under the same name.
    Replaced { track_id: Option<TrackId> },
    /// LightRAG was busy (the delete answered `busy`, or the deletion did not
    /// finish in time): nothing lost, the update is retried on a later run.
    Deferred { reason: String },
}

/// How a sink call failed, which decides what the engine does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Network trouble, 5xx, 429 or "pipeline busy" after the sink's own
    /// retries: the memory is kept and retried on a later run.
    Transient,
    /// 400/422 and the like: this document will not be accepted as it is;
    /// the memory is failed (and retried by the item budget, then dead).
    Rejected,
    /// 401/403, or the environment's fault in direct mode (a missing or
    /// unwritable folder, a full disk, a failing file system): every call
    /// would fail, so the run stops and no memory is charged an attempt.
    Fatal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub kind: SinkErrorKind,
    /// Names the place: URL and status with a body excerpt, or the file path.
    /// Never contains a secret.
    pub message: String,
}

impl SinkError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self { kind: SinkErrorKind::Transient, message: message.into() }
    }
    pub fn rejected(message: impl Into<String>) -> Self {
        Self { kind: SinkErrorKind::Rejected, message: message.into() }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { kind: SinkErrorKind::Fatal, message: message.into() }
    }
}

#[async_trait]
pub trait DocumentSink: Send + Sync + fmt::Debug {
    /// Inserts a new document under its `file_source`.
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError>;

    /// Replaces the document stored under `doc.file_source` with `doc.text`:
    /// delete the old one, wait until it is gone, insert the new text under
    /// the same name (so it keeps its document id).
    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError>;

    /// A short description for logs and the report (URL or folder; no secret).
    fn describe(&self) -> String;

    /// Whether [`DocumentSink::insert_batch`] sends one request for many
    /// documents (else it is a loop over `insert`).
    fn batches(&self) -> bool {
        false
    }

    /// Whether [`DocumentSink::statuses`] can tell processed from failed
    /// (LightRAG over HTTP); the engine follows documents only then.
    fn confirms(&self) -> bool {
        false
    }

    /// Inserts several new documents; one outcome per document, in order.
    /// A sink that cannot batch inserts them one by one.
    async fn insert_batch(&self, docs: &[Document]) -> Vec<Result<InsertOutcome, SinkError>> {
        let mut outcomes = Vec::with_capacity(docs.len());
        for doc in docs {
            outcomes.push(self.insert(doc).await);
        }
        outcomes
    }

    /// Replaces several changed documents; one outcome per document, in
    /// order. A sink that cannot batch replaces them one by one.
    async fn replace_batch(&self, docs: &[Document]) -> Vec<Result<ReplaceOutcome, SinkError>> {
        let mut outcomes = Vec::with_capacity(docs.len());
        for doc in docs {
            outcomes.push(self.replace(doc).await);
        }
        outcomes
    }

    /// Where the sink's pipeline stands (LightRAG: `/documents/pipeline_status`);
    /// `None` when the sink has none.
    async fn pipeline(&self) -> Result<Option<PipelineState>, SinkError> {
        Ok(None)
    }

    /// The failed records LightRAG made when a name it already held came
    /// again (`dup-` ids, "File name already exists"), whoever sent them.
    async fn duplicates(&self) -> Result<Vec<DuplicateRecord>, SinkError> {
        Ok(Vec::new())
    }

    /// Deletes these records, waiting up to `wait` for the sink to allow the
    /// deletion and finish it.
    async fn remove(&self, ids: &[DocId], wait: std::time::Duration) -> Result<Removal, SinkError> {
        let _ = (ids, wait);
        Ok(Removal::Removed)
    }

    /// What the sink knows about these documents' processing. Documents it
    /// has no word on are absent (a direct-mode folder knows nothing).
    async fn statuses(&self, docs: &[TrackedDoc]) -> Result<HashMap<DocId, RemoteStatus>, SinkError> {
        let _ = docs;
        Ok(HashMap::new())
    }

    /// Checks the server before a run (version, workspace); `None` when the
    /// sink has no server.
    async fn preflight(&self, expected_workspace: &str) -> Result<Option<Preflight>, SinkError> {
        let _ = expected_workspace;
        Ok(None)
    }
}

/// A document whose processing the connector follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedDoc {
    pub doc_id: DocId,
    pub track_id: Option<TrackId>,
    pub submitted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// LightRAG's word on one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteStatus {
    /// pending, parsing, analyzing, processing, preprocessed.
    Queued {
        status: String,
    },
    Processed,
    /// Failed inside LightRAG (LLM error, timeout...), with its `error_msg`.
    Failed {
        error: String,
    },
}

/// What LightRAG's pipeline says about the requests it accepted.
///
/// LightRAG 1.5 answers an insert before it writes the documents' records:
/// a background task enqueues them a moment (on a loaded server, seconds)
/// later, and only then do their names show in the document list and count
/// for the 409 "already contains" check. Until then the request is counted
/// in `pending_enqueues` (the request whose task then drives processing
/// stays counted until the queue is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineState {
    pub pending_enqueues: Option<u64>,
    pub busy: Option<bool>,
}

impl PipelineState {
    /// Every request the server took up has its documents listed: no
    /// enqueue pending (or, on a server that does not count them, an idle
    /// pipeline; on one that says neither, assumed).
    pub fn enqueued_everything(&self) -> bool {
        match (self.pending_enqueues, self.busy) {
            (Some(pending), _) => pending == 0,
            (None, Some(busy)) => !busy,
            (None, None) => true,
        }
    }
}

/// A failed record LightRAG made for a name it already held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRecord {
    /// `dup-...`.
    pub id: DocId,
    /// The stored basename it repeats.
    pub file_path: String,
    /// The record LightRAG kept under that name.
    pub original: Option<DocId>,
}

/// What asking the sink to delete records achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The sink would not delete within the wait (LightRAG busy); nothing
    /// was deleted.
    Busy {
        reason: String,
    },
}

/// What `/health` said at the start of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Preflight {
    pub core_version: Option<String>,
    pub api_version: Option<String>,
    pub workspace: Option<String>,
    /// Things a person should know (e.g. a workspace mismatch).
    pub warnings: Vec<String>,
}

/// The sink the config asks for: [`api::ApiSink`] in `api` mode,
/// [`direct::DirectSink`] in `direct` mode.
pub fn open(config: &LightragConfig) -> Result<Arc<dyn DocumentSink>, SinkError> {
    Ok(match config.mode {
        LightragMode::Api => Arc::new(api::ApiSink::new(&config.api)?),
        LightragMode::Direct => Arc::new(direct::DirectSink::new(&config.direct)?),
    })
}

pub use crate::ids::stored_basename;

/// LightRAG's document id for a `file_source` ([`DocId::of_name`]).
pub fn doc_id(file_source: &str) -> DocId {
    DocId::of_name(file_source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::file_source;

    /// The name the transform gives a memory survives LightRAG's basename cut whole.
    #[test]
    fn file_source_is_its_own_basename_and_safe() {
        for (ctx, id) in [("CTX123", "42"), ("a/b", "../etc"), ("x", "line\nbreak"), ("c", "über 🎉")] {
            let fs = file_source(ctx, id);
            assert_eq!(stored_basename(&fs), fs, "{fs}");
            assert!(!fs.chars().any(|c| c.is_control() || c == '/' || c == '\\'), "{fs}");
            assert!(fs.is_ascii());
        }
        assert_eq!(file_source("CTX123", "42"), "memory_CTX123_42.txt");
    }

    #[test]
    fn basename_is_what_lightrag_stores() {
        assert_eq!(stored_basename("memories/2024/m1.txt"), "m1.txt");
        assert_eq!(stored_basename("a/b/"), "b");
        assert_eq!(stored_basename("memory:CTX1:42"), "memory:CTX1:42");
    }

    #[test]
    fn a_pipeline_has_enqueued_everything_when_nothing_is_pending() {
        let state = |pending_enqueues, busy| PipelineState { pending_enqueues, busy };
        assert!(state(Some(0), Some(true)).enqueued_everything(), "busy processing, nothing to enqueue");
        assert!(!state(Some(1), Some(false)).enqueued_everything(), "enqueuing while not busy");
        assert!(!state(None, Some(true)).enqueued_everything(), "no count: busy decides");
        assert!(state(None, Some(false)).enqueued_everything());
        assert!(state(None, None).enqueued_everything(), "a server that says nothing");
    }

    #[test]
    fn doc_id_is_md5_of_basename() {
        // md5("m1.txt")
        assert_eq!(doc_id("x/m1.txt"), doc_id("m1.txt"));
        assert!(doc_id("m1.txt").as_str().starts_with("doc-"));
        assert_eq!(doc_id("m1.txt").as_str().len(), 4 + 32);
    }
}
