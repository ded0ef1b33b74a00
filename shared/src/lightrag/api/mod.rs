//! The `api` sink: documents go to a LightRAG server over HTTP.
//!
//! Owns the conversation with LightRAG's document routes: `POST
//! /documents/text` to insert, `DELETE /documents/delete_document` then a
//! re-insert under the same `file_source` to replace (LightRAG has no
//! update), and the reading of every answer into an [`InsertOutcome`],
//! [`ReplaceOutcome`] or a classified [`SinkError`]. Request retries (429,
//! 5xx, timeouts, network errors, "pipeline is clearing or deleting") follow
//! the rules of [`crate::retry`]; what is left after them is `Transient`.
//!
//! Reading back: the knowledge graph ([`graph`]) and questions with
//! references ([`query`]), for the provenance look-ups.
//!
//! The API key goes into the `X-API-Key` header and nowhere else: error
//! messages carry the URL (without user-info password), the status and a
//! body excerpt with the key scrubbed out.

mod documents;
pub mod graph;
pub mod query;
mod status;
mod transport;

use documents::InsertReading;
use transport::BusyConflict;

use super::{
    DocumentSink, DuplicateRecord, InsertOutcome, PipelineState, Preflight, RemoteStatus, Removal, ReplaceOutcome,
    SinkError, TrackedDoc,
};
use crate::config::LightragApiConfig;
use crate::http;
use crate::ids::{DocId, TrackId};
use crate::retry::{self};
use crate::secrets::Secret;
use crate::transform::Document;
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INSERT_PATH: &str = "/documents/text";
const INSERT_BATCH_PATH: &str = "/documents/texts";
const TRACK_STATUS_PATH: &str = "/documents/track_status/";
const PAGINATED_PATH: &str = "/documents/paginated";
const PIPELINE_PATH: &str = "/documents/pipeline_status";
/// The most pages of failed documents read when looking for `dup-` records.
const MAX_FAILED_PAGES: usize = 10;
/// Up to this many distinct track ids are asked one by one; beyond it the
/// document list is paged through instead.
const MAX_TRACK_QUERIES: usize = 20;
const PAGE_SIZE: usize = 200;
const DELETE_PATH: &str = "/documents/delete_document";
const HEALTH_PATH: &str = "/health";

/// Attempts after the first one for a retryable answer.
const MAX_RETRIES: u32 = 3;
/// Each retry waits this many times longer than the previous one.
const RETRY_MULTIPLIER: f64 = 2.0;

/// How long [`ApiSink::replace`] waits for LightRAG to finish a deletion
/// before it gives the update back to a later run.
pub const DEFAULT_REPLACE_WAIT: Duration = Duration::from_secs(60);
/// The first pause between two re-insert attempts while a deletion runs;
/// it doubles up to [`MAX_POLL_DELAY`]. Deletions of one small document
/// take well under a second on LightRAG, so start short.
const FIRST_POLL_DELAY: Duration = Duration::from_millis(100);
const MAX_POLL_DELAY: Duration = Duration::from_secs(2);

/// The largest answer read: a page of the document list is well under it;
/// a larger or endless body fails the request instead of filling the memory.
pub const MAX_ANSWER_BYTES: u64 = 32 * 1024 * 1024;

/// The LightRAG detail of a 409 that means "this name is stored".
const ALREADY_CONTAINS: &str = "already contains";

/// Talks to one LightRAG server through one pooled HTTP client.
#[derive(Debug)]
pub struct ApiSink {
    client: reqwest::Client,
    /// The configured URL without a trailing `/`; requests go to `base + path`.
    base: String,
    /// `base` with any user-info password removed, for messages.
    shown: String,
    api_key: Option<Secret>,
    timeout: Duration,
    first_retry_delay: Duration,
    replace_wait: Duration,
    /// The largest answer read ([`MAX_ANSWER_BYTES`] unless changed).
    max_answer_bytes: u64,
    batch_inserts: bool,
    max_batch_bytes: usize,
    /// A 429 with `Retry-After` (a server with `MAX_PENDING_DOCUMENTS`) holds
    /// every request of this sink until then: the whole run pauses sending.
    paused_until: Mutex<Option<Instant>>,
    /// For servers with login accounts (`POST /login`).
    username: Option<String>,
    password: Option<Secret>,
    /// The bearer token from `/login` or `/auth-status`, once one was needed.
    bearer: tokio::sync::Mutex<Option<Secret>>,
}

/// What `GET /health` says about the server (every field optional: older
/// servers answer less).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    pub status: Option<String>,
    pub core_version: Option<String>,
    pub api_version: Option<String>,
    /// The workspace the server process is fixed to (`configuration.workspace`).
    pub workspace: Option<String>,
    pub pipeline_busy: Option<bool>,
    /// The most nodes `GET /graphs` returns (`MAX_GRAPH_NODES`).
    pub max_graph_nodes: Option<u64>,
}

impl ApiSink {
    pub fn new(config: &LightragApiConfig) -> Result<Self, SinkError> {
        let trimmed = config.url.trim().trim_end_matches('/');
        let parsed = url::Url::parse(trimmed).map_err(|e| {
            SinkError::fatal(format!("lightrag.api.url {:?} is not a valid URL: {e}", http::shown_url_text(trimmed)))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SinkError::fatal(format!(
                "lightrag.api.url {:?} must start with http:// or https://",
                http::shown_url_text(trimmed)
            )));
        }
        let shown = http::shown_url(&parsed).trim_end_matches('/').to_owned();
        let timeout = Duration::from_secs(config.timeout.max(1));
        let client = http::client_builder(timeout, parsed.scheme() == "http").build().map_err(|e| {
            SinkError::fatal(format!("cannot build the HTTP client for LightRAG at {shown}: {}", http::error_chain(&e)))
        })?;
        Ok(Self {
            client,
            base: trimmed.to_owned(),
            shown,
            api_key: config.api_key.clone().filter(|key| !key.is_empty()),
            timeout,
            first_retry_delay: retry::FIRST_RETRY_DELAY,
            replace_wait: DEFAULT_REPLACE_WAIT,
            max_answer_bytes: MAX_ANSWER_BYTES,
            batch_inserts: config.batch_inserts,
            max_batch_bytes: usize::try_from(config.max_batch_bytes).unwrap_or(usize::MAX).max(1),
            paused_until: Mutex::new(None),
            username: config.username.clone().filter(|u| !u.is_empty()),
            password: config.password.clone(),
            bearer: tokio::sync::Mutex::new(None),
        })
    }

    /// The first retry's delay (tests make it short).
    pub fn with_first_retry_delay(mut self, delay: Duration) -> Self {
        self.first_retry_delay = delay;
        self
    }

    /// The largest answer read (tests make it small).
    pub fn with_max_answer_bytes(mut self, limit: u64) -> Self {
        self.max_answer_bytes = limit;
        self
    }

    /// How long `replace` waits for LightRAG to finish deleting the old document.
    pub fn with_replace_wait(mut self, wait: Duration) -> Self {
        self.replace_wait = wait;
        self
    }

    /// `GET /health`: versions, workspace and pipeline state, for a doctor
    /// command or a start-up check (the workspace is fixed per server
    /// process; compare it with `lightrag.api.workspace`).
    pub async fn server_info(&self) -> Result<ServerInfo, SinkError> {
        let answer = self.call(Method::GET, HEALTH_PATH, None, BusyConflict::Retry).await?;
        let body = self.json_of(&answer, HEALTH_PATH, "LightRAG's health JSON")?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        Ok(ServerInfo {
            status: text(body.get("status")),
            core_version: text(body.get("core_version")),
            api_version: text(body.get("api_version")),
            workspace: text(body.pointer("/configuration/workspace")),
            pipeline_busy: body.get("pipeline_busy").and_then(Value::as_bool),
            max_graph_nodes: body.pointer("/configuration/max_graph_nodes").and_then(Value::as_u64),
        })
    }
}

#[async_trait]
impl DocumentSink for ApiSink {
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError> {
        let body = json!({ "text": doc.text, "file_source": doc.file_source });
        let answer = self.call(Method::POST, INSERT_PATH, Some(&body), BusyConflict::Retry).await?;
        match self.read_insert(&answer)? {
            InsertReading::Accepted { track_id } => Ok(InsertOutcome::Accepted { track_id }),
            InsertReading::AlreadyStored { status } => Ok(InsertOutcome::AlreadyStored { status }),
            // Only reachable if `call` handed a busy 409 back, which it does not with `Retry`.
            InsertReading::Busy { message } => Err(SinkError::transient(message)),
        }
    }

    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        self.replace_many(std::slice::from_ref(doc))
            .await
            .pop()
            .unwrap_or_else(|| Err(SinkError::transient("replace gave no answer")))
    }

    async fn replace_batch(&self, docs: &[Document]) -> Vec<Result<ReplaceOutcome, SinkError>> {
        if self.batch_inserts {
            self.replace_many(docs).await
        } else {
            let mut outcomes = Vec::with_capacity(docs.len());
            for doc in docs {
                outcomes.push(self.replace(doc).await);
            }
            outcomes
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn batches(&self) -> bool {
        self.batch_inserts
    }

    fn confirms(&self) -> bool {
        true
    }

    async fn insert_batch(&self, docs: &[Document]) -> Vec<Result<InsertOutcome, SinkError>> {
        let mut outcomes: Vec<Option<Result<InsertOutcome, SinkError>>> = vec![None; docs.len()];
        // Groups bounded by the byte budget, sent in order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0usize;
        for (i, doc) in docs.iter().enumerate() {
            let size = doc.text.len() + doc.file_source.len() + 16;
            match groups.last_mut() {
                Some(group) if bytes + size <= self.max_batch_bytes => group.push(i),
                _ => {
                    groups.push(vec![i]);
                    bytes = 0;
                }
            }
            bytes += size;
        }
        groups.reverse();
        let mut queue = groups;
        while let Some(group) = queue.pop() {
            self.insert_group(docs, group, &mut outcomes, &mut queue).await;
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(SinkError::transient("the batch insert gave no answer for this document")))
            })
            .collect()
    }

    async fn statuses(&self, docs: &[TrackedDoc]) -> Result<HashMap<DocId, RemoteStatus>, SinkError> {
        let mut found = HashMap::with_capacity(docs.len());
        let mut tracks: Vec<&TrackId> = docs.iter().filter_map(|d| d.track_id.as_ref()).collect();
        tracks.sort();
        tracks.dedup();
        if tracks.len() <= MAX_TRACK_QUERIES && docs.iter().all(|d| d.track_id.is_some()) {
            for track in tracks {
                self.track_status(track, &mut found).await?;
            }
        } else {
            self.page_statuses(docs, &mut found).await?;
        }
        let wanted: std::collections::HashSet<&DocId> = docs.iter().map(|d| &d.doc_id).collect();
        found.retain(|id, _| wanted.contains(id));
        Ok(found)
    }

    async fn pipeline(&self) -> Result<Option<PipelineState>, SinkError> {
        self.pipeline_state().await.map(Some)
    }

    async fn duplicates(&self) -> Result<Vec<DuplicateRecord>, SinkError> {
        self.duplicate_records().await
    }

    async fn remove(&self, ids: &[DocId], wait: Duration) -> Result<Removal, SinkError> {
        self.remove_records(ids, wait).await
    }

    async fn preflight(&self, expected_workspace: &str) -> Result<Option<Preflight>, SinkError> {
        let info = self.server_info().await?;
        let mut warnings = Vec::new();
        let server_workspace = info.workspace.clone().unwrap_or_default();
        if info.workspace.is_some() && server_workspace != expected_workspace {
            warnings.push(format!(
                "lightrag.api.workspace is {expected_workspace:?} but the server at {} serves workspace {server_workspace:?}; \
                 LightRAG 1.5 fixes the workspace per server process (its WORKSPACE setting), so documents go to {server_workspace:?}",
                self.shown
            ));
        }
        match info.core_version.as_deref() {
            Some(v) if !v.starts_with("1.5") => warnings.push(format!(
                "the server at {} runs LightRAG {v}; this connector is built and tested for 1.5.x",
                self.shown
            )),
            None => warnings.push(format!("the server at {} did not report its LightRAG version", self.shown)),
            _ => {}
        }
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        Ok(Some(Preflight {
            core_version: info.core_version,
            api_version: info.api_version,
            workspace: info.workspace,
            warnings,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
