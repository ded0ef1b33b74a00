//! The adapters a config asks for, built in one place: the Memory API
//! client, the LightRAG sink, the enrichers of the connectors that switch
//! an enrichment on, and the sync engine of one connector over them. The
//! CLI, `serve` and the Lambda functions all start here, so a connector
//! runs the same way whichever shape started it.

use crate::config::{Config, ConnectorConfig};
use crate::enrich::{Enricher, MediaSource};
use crate::ids::ConnectorId;
use crate::lightrag::{self, DocumentSink, SinkError};
use crate::memory_api::{MemoryApiClient, MemoryApiError};
use crate::state::StateStore;
use crate::sync::{MemorySource, SyncEngine};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why the adapters could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// `memory_api` cannot be used (a bad URL): a configuration problem.
    #[error(transparent)]
    MemoryApi(#[from] MemoryApiError),
    /// The LightRAG sink could not be set up.
    #[error("{}", .0.message)]
    Sink(SinkError),
    /// An enrichment service could not be set up.
    #[error("enrichment: {0}")]
    Enrichment(String),
}

impl WiringError {
    /// A mistake in the config itself (exit code 2 in the CLI), rather than
    /// something of the environment.
    pub fn is_config_problem(&self) -> bool {
        matches!(self, WiringError::MemoryApi(_))
    }
}

/// What the runs of a config are made of; cheap to clone.
#[derive(Clone)]
pub struct Adapters {
    pub source: Arc<dyn MemorySource>,
    pub sink: Arc<dyn DocumentSink>,
    /// Per connector, when it switches an enrichment on.
    pub enrichers: HashMap<ConnectorId, Arc<Enricher>>,
}

impl Adapters {
    /// The real adapters of `config` over `store` (which caches enrichments).
    pub fn from_config(config: &Config, store: Arc<dyn StateStore>) -> Result<Self, WiringError> {
        let client = Arc::new(MemoryApiClient::new(&config.memory_api)?);
        let sink = lightrag::open(&config.lightrag).map_err(WiringError::Sink)?;
        Self::with_parts(config, client.clone(), sink, client, store)
    }

    /// Adapters over a given source and sink (tests, benchmarks, `serve`
    /// with timing wrappers); the enrichers are built from `config`.
    pub fn with_parts(
        config: &Config,
        source: Arc<dyn MemorySource>,
        sink: Arc<dyn DocumentSink>,
        media: Arc<dyn MediaSource>,
        store: Arc<dyn StateStore>,
    ) -> Result<Self, WiringError> {
        let mut enrichers = HashMap::new();
        for connector in &config.connectors {
            if let Some(enricher) = Enricher::for_connector(config, connector, Arc::clone(&media), Arc::clone(&store))
                .map_err(|e| WiringError::Enrichment(e.to_string()))?
            {
                enrichers.insert(connector.id.clone(), Arc::new(enricher));
            }
        }
        Ok(Self { source, sink, enrichers })
    }

    /// The engine of one connector: these adapters, LightRAG's settings and
    /// the connector's enricher; the lease lasts `lease_ttl`.
    pub fn engine(
        &self,
        config: &Config,
        connector: &ConnectorConfig,
        store: Arc<dyn StateStore>,
        lease_ttl: Duration,
    ) -> SyncEngine {
        SyncEngine::new(connector.clone(), lease_ttl, Arc::clone(&self.source), Arc::clone(&self.sink), store)
            .with_lightrag_settings(&config.lightrag)
            .with_enricher(self.enrichers.get(&connector.id).cloned())
    }
}
