//! From an answer back to the memories. The ledger keeps a provenance
//! record of each delivered memory ([`record`]); [`Lookup`] turns what
//! LightRAG says (document names, entities, answers) into those memories:
//!
//! - [`Lookup::resolve`]: LightRAG names (`file_path`, several joined with
//!   `<SEP>`) -> memories, from the ledger alone (its name index; the name
//!   is never decoded back into ids), optionally with the live memory.
//! - [`Lookup::by_entity`]: an entity (or the relation between two) -> the
//!   memories it came from, via `GET /graphs` and its `file_path`s.
//! - [`Lookup::by_memory`]: a memory -> the entities and relations LightRAG
//!   extracted from it (decision 0022 says how exact that is).
//! - [`Lookup::ask`]: a question -> LightRAG's answer, each reference
//!   resolved to its memory.
//!
//! The API routes and the CLI commands are thin calls of these.

mod ask;
mod graph;
pub mod record;
mod view;

pub use ask::{AskAnswer, ReferenceView};
pub use graph::{EntityLookup, EntityRef, MemoryLookup, RelationView};
pub use record::record;
pub use view::{MemoryKey, MemoryView, Resolution, split_names};

use crate::config::Config;
use crate::lightrag::api::ApiSink;
use crate::lightrag::{SinkError, SinkErrorKind};
use crate::memory_api::MemoryApiClient;
use crate::state::{StateError, StateStore};
use std::sync::Arc;

/// Why a look-up gave no answer. The API answers 400, 404, 502 or 503.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// LightRAG is unreachable or refused (the message names its URL).
    #[error("LightRAG is not usable: {0}")]
    Lightrag(String),
    /// The Memory API is unreachable or refused (`fetch`).
    #[error("the Memory API is not usable: {0}")]
    MemoryApi(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<SinkError> for LookupError {
    fn from(e: SinkError) -> Self {
        match e.kind {
            // 400/422: LightRAG found the request itself wrong.
            SinkErrorKind::Rejected => LookupError::BadRequest(e.message),
            SinkErrorKind::Transient | SinkErrorKind::Fatal => LookupError::Lightrag(e.message),
        }
    }
}

/// The look-ups of one configuration over one state store. Cheap to share
/// (`Arc`); the HTTP clients pool their connections.
#[derive(Debug)]
pub struct Lookup {
    config: Arc<Config>,
    store: Arc<dyn StateStore>,
    /// `lightrag.api` (in direct mode too: the co-located server answers questions).
    lightrag: Result<ApiSink, String>,
    memory_api: Result<MemoryApiClient, String>,
}

impl Lookup {
    pub fn new(config: Arc<Config>, store: Arc<dyn StateStore>) -> Self {
        let lightrag = ApiSink::new(&config.lightrag.api).map_err(|e| e.message);
        let memory_api = MemoryApiClient::new(&config.memory_api).map_err(|e| e.to_string());
        Self { config, store, lightrag, memory_api }
    }

    fn lightrag(&self) -> Result<&ApiSink, LookupError> {
        self.lightrag.as_ref().map_err(|e| LookupError::Lightrag(e.clone()))
    }
}
