//! Decorators that time the Memory API fetches and the LightRAG requests of
//! the service's runs into the request-duration histograms, without touching
//! the clients themselves. Each series' `outcome="error"` exists from the
//! start (at zero), so an alert's `increase()` sees the very first error.

use crate::config::ConnectorConfig;
use crate::ids::DocId;
use crate::lightrag::{DocumentSink, InsertOutcome, ReplaceOutcome, SinkError};
use crate::lightrag::{DuplicateRecord, PipelineState, Preflight, RemoteStatus, Removal, TrackedDoc};
use crate::memory_api::model::FetchedPage;
use crate::sync::MemorySource;
use crate::telemetry::metrics::{Histogram, Metrics};
use crate::transform::Document;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The `operation` label of the Memory API histogram.
const MEMORY_API_OPERATIONS: [&str; 1] = ["list"];

/// The `operation` label of the LightRAG histogram: every timed call below.
const LIGHTRAG_OPERATIONS: [&str; 9] =
    ["preflight", "insert", "replace", "insert_batch", "replace_batch", "statuses", "pipeline", "duplicates", "remove"];

/// Registers the error series of both histograms at zero.
pub(super) fn register(metrics: &Metrics, connectors: &[ConnectorConfig]) {
    for connector in connectors {
        for operation in MEMORY_API_OPERATIONS {
            metrics
                .register_histogram(Histogram::MemoryApiRequestDuration, source_labels(connector, operation, "error"));
        }
    }
    for operation in LIGHTRAG_OPERATIONS {
        metrics.register_histogram(Histogram::LightragRequestDuration, sink_labels(operation, "error"));
    }
}

fn source_labels(connector: &ConnectorConfig, operation: &str, outcome: &str) -> Vec<(&'static str, String)> {
    vec![
        ("connector_id", connector.id.to_string()),
        ("operation", operation.to_owned()),
        ("outcome", outcome.to_owned()),
    ]
}

fn sink_labels(operation: &str, outcome: &str) -> Vec<(&'static str, String)> {
    vec![("operation", operation.to_owned()), ("outcome", outcome.to_owned())]
}

fn outcome<T, E>(result: &Result<T, E>) -> &'static str {
    if result.is_ok() { "ok" } else { "error" }
}

pub(super) struct TimedSource {
    pub inner: Arc<dyn MemorySource>,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl MemorySource for TimedSource {
    async fn fetch(&self, connector: &ConnectorConfig) -> Result<FetchedPage, String> {
        let started = Instant::now();
        let result = self.inner.fetch(connector).await;
        self.metrics.observe(
            Histogram::MemoryApiRequestDuration,
            source_labels(connector, MEMORY_API_OPERATIONS[0], outcome(&result)),
            started.elapsed().as_secs_f64(),
        );
        result
    }
}

#[derive(Debug)]
pub(super) struct TimedSink {
    pub inner: Arc<dyn DocumentSink>,
    pub metrics: Arc<Metrics>,
}

impl TimedSink {
    fn observe<T>(&self, operation: &str, started: Instant, result: &Result<T, SinkError>) {
        debug_assert!(LIGHTRAG_OPERATIONS.contains(&operation), "{operation} is not in LIGHTRAG_OPERATIONS");
        self.metrics.observe(
            Histogram::LightragRequestDuration,
            sink_labels(operation, outcome(result)),
            started.elapsed().as_secs_f64(),
        );
    }
}

#[async_trait::async_trait]
impl DocumentSink for TimedSink {
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError> {
        let started = Instant::now();
        let result = self.inner.insert(doc).await;
        self.observe("insert", started, &result);
        result
    }

    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        let started = Instant::now();
        let result = self.inner.replace(doc).await;
        self.observe("replace", started, &result);
        result
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    // Everything else is forwarded as is (a wrapper that forgot one would
    // silently turn batching or confirmation off).
    fn batches(&self) -> bool {
        self.inner.batches()
    }

    fn confirms(&self) -> bool {
        self.inner.confirms()
    }

    async fn insert_batch(&self, docs: &[Document]) -> Vec<Result<InsertOutcome, SinkError>> {
        let started = Instant::now();
        let results = self.inner.insert_batch(docs).await;
        let all: Result<(), SinkError> = results.iter().find_map(|r| r.as_ref().err().cloned()).map_or(Ok(()), Err);
        self.observe("insert_batch", started, &all);
        results
    }

    async fn replace_batch(&self, docs: &[Document]) -> Vec<Result<ReplaceOutcome, SinkError>> {
        let started = Instant::now();
        let results = self.inner.replace_batch(docs).await;
        let all: Result<(), SinkError> = results.iter().find_map(|r| r.as_ref().err().cloned()).map_or(Ok(()), Err);
        self.observe("replace_batch", started, &all);
        results
    }

    async fn statuses(&self, docs: &[TrackedDoc]) -> Result<HashMap<DocId, RemoteStatus>, SinkError> {
        let started = Instant::now();
        let result = self.inner.statuses(docs).await;
        self.observe("statuses", started, &result);
        result
    }

    async fn pipeline(&self) -> Result<Option<PipelineState>, SinkError> {
        let started = Instant::now();
        let result = self.inner.pipeline().await;
        self.observe("pipeline", started, &result);
        result
    }

    async fn duplicates(&self) -> Result<Vec<DuplicateRecord>, SinkError> {
        let started = Instant::now();
        let result = self.inner.duplicates().await;
        self.observe("duplicates", started, &result);
        result
    }

    async fn remove(&self, ids: &[DocId], wait: std::time::Duration) -> Result<Removal, SinkError> {
        let started = Instant::now();
        let result = self.inner.remove(ids, wait).await;
        self.observe("remove", started, &result);
        result
    }

    /// Timed too: an unreachable or refusing LightRAG fails the run here,
    /// before any delivery, and the LightRAG alert must see it.
    async fn preflight(&self, expected_workspace: &str) -> Result<Option<Preflight>, SinkError> {
        let started = Instant::now();
        let result = self.inner.preflight(expected_workspace).await;
        self.observe("preflight", started, &result);
        result
    }
}
