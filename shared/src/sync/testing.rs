//! In-process doubles for engine tests: a Memory API whose page the test
//! edits, and a LightRAG that records what it was sent and answers as told
//! (rejects, deferred updates, processing outcomes).

use super::MemorySource;
use crate::config::ConnectorConfig;
use crate::ids::{DocId, MemoryId, TrackId};
use crate::lightrag::{self, DocumentSink, InsertOutcome, RemoteStatus, ReplaceOutcome, SinkError, TrackedDoc};
use crate::memory_api::model::{FetchedPage, Memory};
use crate::transform::Document;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// A memory of kind `note` with this transcript.
pub(crate) fn memory(id: &str, transcript: Option<&str>) -> Memory {
    Memory {
        id: MemoryId::new(id),
        kind: Some("note".into()),
        audio: false,
        image: false,
        transcript: transcript.map(str::to_owned),
        location: None,
        created_at: None,
        updated_at: None,
        gcs_uri: None,
        gcs_uri_img: None,
    }
}

/// The page the Memory API answers with.
#[derive(Debug, Default, Clone)]
pub(crate) struct Page(pub Arc<Mutex<Vec<Memory>>>);

impl Page {
    pub fn set(&self, memories: Vec<Memory>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = memories;
    }
}

#[async_trait]
impl MemorySource for Page {
    async fn fetch(&self, _connector: &ConnectorConfig) -> Result<FetchedPage, String> {
        let memories = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Ok(FetchedPage { memories, attempts: 1, ..Default::default() })
    }
}

/// What the fake LightRAG does; documents are named by `file_source`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Behaviour {
    /// Inserts and replaces of these are refused as the document's fault (422).
    pub reject: HashSet<String>,
    /// Replaces of these are deferred (LightRAG busy).
    pub defer: HashSet<String>,
    /// Processing outcomes by document id (absent: processed).
    pub remote: HashMap<DocId, RemoteStatus>,
}

/// A LightRAG double: records `(operation, file_source, content hash)`.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub behaviour: Mutex<Behaviour>,
    pub sent: Mutex<Vec<(String, String, String)>>,
    pub confirming: bool,
}

impl Sink {
    fn answer(&self, op: &str, doc: &Document) -> Result<Option<TrackId>, SinkError> {
        let behaviour = self.behaviour.lock().unwrap_or_else(PoisonError::into_inner);
        if behaviour.reject.contains(&doc.file_source) {
            return Err(SinkError::rejected(format!("422 for {}", doc.file_source)));
        }
        drop(behaviour);
        self.sent.lock().unwrap_or_else(PoisonError::into_inner).push((
            op.into(),
            doc.file_source.clone(),
            doc.hash.as_str().to_owned(),
        ));
        Ok(Some(TrackId::new(format!("track-{}", &doc.hash.as_str()[..8]))))
    }

    /// What was sent since the last call, sorted.
    pub fn take_sent(&self) -> Vec<(String, String, String)> {
        let mut sent = std::mem::take(&mut *self.sent.lock().unwrap_or_else(PoisonError::into_inner));
        sent.sort();
        sent
    }
}

#[async_trait]
impl DocumentSink for Sink {
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError> {
        self.answer("insert", doc).map(|track_id| InsertOutcome::Accepted { track_id })
    }

    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        if self.behaviour.lock().unwrap_or_else(PoisonError::into_inner).defer.contains(&doc.file_source) {
            return Ok(ReplaceOutcome::Deferred { reason: "busy".into() });
        }
        self.answer("replace", doc).map(|track_id| ReplaceOutcome::Replaced { track_id })
    }

    fn describe(&self) -> String {
        "test sink".into()
    }

    fn confirms(&self) -> bool {
        self.confirming
    }

    async fn statuses(&self, docs: &[TrackedDoc]) -> Result<HashMap<DocId, RemoteStatus>, SinkError> {
        let behaviour = self.behaviour.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(docs
            .iter()
            .map(|d| (d.doc_id.clone(), behaviour.remote.get(&d.doc_id).cloned().unwrap_or(RemoteStatus::Processed)))
            .collect())
    }
}

/// The document id of memory `id` in context `ctx`.
pub(crate) fn doc_id(ctx: &str, id: &str) -> DocId {
    lightrag::doc_id(&crate::transform::file_source(ctx, id))
}

/// An engine of connector `c` (context [`CTX`], retries without backoff)
/// over these doubles; with `confirming`, in api mode without an end-of-run wait.
pub(crate) fn engine(
    store: Arc<dyn crate::state::StateStore>,
    page: &Page,
    sink: &Arc<Sink>,
    confirming: bool,
) -> super::SyncEngine {
    let connector = ConnectorConfig {
        id: crate::ids::ConnectorId::new("c"),
        context_id: CTX.into(),
        retry: crate::config::RetryConfig { max_attempts: 3, backoff_multiplier: 2.0, max_backoff_seconds: 0 },
        ..Default::default()
    };
    let mut lightrag = crate::config::LightragConfig { mode: crate::config::LightragMode::Api, ..Default::default() };
    lightrag.api.confirm_wait_seconds = 0;
    let sink: Arc<dyn DocumentSink> = sink.clone();
    let engine =
        super::SyncEngine::new(connector, std::time::Duration::from_secs(600), Arc::new(page.clone()), sink, store);
    if confirming { engine.with_lightrag_settings(&lightrag) } else { engine }
}

/// The context of [`engine`]'s connector.
pub(crate) const CTX: &str = "CTX";
