//! The Memory API simulator: `GET /memory/{ctx}?limit=&range=` over
//! deterministic, untidy data, with faults on demand and `/_control/*`
//! endpoints that give other processes the same powers as the in-process
//! handle.
//!
//! Deterministic: the data comes from `(seed, ctx, now)` only and `now` is
//! fixed (2025-12-18T16:00:00Z by default), so nothing drifts with the clock.
//! Fast: items are kept in memory with their JSON already serialised, so a
//! list of 10,000 memories is a concatenation, not a serialisation.

mod generate;
mod hostile;
pub mod media;
mod server;
#[cfg(test)]
mod tests;

pub use generate::{generate, generate_malformed};
pub use hostile::{HostileItem, hostile_items};

use anyhow::Context as _;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The fixed "now" of the default data set.
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 18, 16, 0, 0).single().unwrap_or_default()
}

/// What the simulator serves.
#[derive(Debug, Clone)]
pub struct MemorySimOptions {
    /// When set, `GET /memory/*` needs `X-API-KEY` with this value (401 otherwise).
    pub api_key: Option<String>,
    pub seed: u64,
    /// Context id -> number of generated memories.
    pub contexts: Vec<(String, usize)>,
    /// The simulator's clock: `range` windows end here.
    pub now: DateTime<Utc>,
    /// Malformed items (no id, not an object...) added to *each* context on
    /// top of the generated ones; 0 keeps every item readable.
    pub malformed: usize,
    /// Adds the [`hostile_items`] to each context: invalid UTF-8, deep
    /// nesting, control characters in ids, huge tag lists, numbers as ids.
    pub hostile: bool,
}

impl Default for MemorySimOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            seed: 42,
            contexts: vec![("CTX123".into(), 40)],
            now: default_now(),
            malformed: 0,
            hostile: false,
        }
    }
}

/// A misbehaviour for the next `times` list requests, applied in queue order.
///
/// `status` 200 with an empty `body` answers normally after `delay` (a slow
/// server); any other status or a non-empty body is sent as it is (a 200
/// with a body that is not JSON is a broken proxy). In JSON the delay is
/// `delay_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default = "Fault::default_status")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    /// Sent as the `Retry-After` header: seconds or an HTTP date.
    #[serde(default)]
    pub retry_after: Option<String>,
    #[serde(default, rename = "delay_ms", alias = "delay", with = "duration_ms")]
    pub delay: Duration,
    #[serde(default = "Fault::default_times")]
    pub times: usize,
}

impl Fault {
    fn default_status() -> u16 {
        503
    }
    fn default_times() -> usize {
        1
    }

    /// One answer with this status and a small HTML body, like a proxy's.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: format!("<html><body><h1>{status}</h1>simulated fault</body></html>"),
            retry_after: None,
            delay: Duration::ZERO,
            times: 1,
        }
    }

    /// One 200 answer whose body is `body` (not JSON, presumably).
    pub fn garbage(body: impl Into<String>) -> Self {
        Self { body: body.into(), ..Self::status(200) }
    }

    /// One normal answer, sent after `delay`.
    pub fn slow(delay: Duration) -> Self {
        Self { body: String::new(), delay, ..Self::status(200) }
    }

    pub fn with_times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    pub fn with_retry_after(mut self, retry_after: impl Into<String>) -> Self {
        self.retry_after = Some(retry_after.into());
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// A slow normal answer rather than a misbehaviour of its own.
    fn answers_normally(&self) -> bool {
        self.status == 200 && self.body.is_empty()
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct MemorySim {
    addr: SocketAddr,
    state: Arc<server::SimState>,
    task: JoinHandle<()>,
}

impl MemorySim {
    /// Serves on 127.0.0.1 at a port chosen by the system.
    pub async fn start(options: MemorySimOptions) -> anyhow::Result<MemorySim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Serves on `addr` (port 0: chosen by the system).
    pub async fn start_on(addr: SocketAddr, options: MemorySimOptions) -> anyhow::Result<MemorySim> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("memory-api-sim: cannot listen on {addr}"))?;
        let addr = listener.local_addr().context("memory-api-sim: no local address")?;
        let state = Arc::new(server::SimState::new(&options));
        let app = server::router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "memory-api-sim stopped");
            }
        });
        Ok(MemorySim { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`, the value for `memory_api.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The simulator's fixed clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.now
    }

    /// Appends items exactly as given (for untidy cases); creates the context
    /// when it is new.
    pub fn add_raw(&self, ctx: &str, items: Vec<serde_json::Value>) {
        self.state.add_raw(ctx, items);
    }

    /// Gives every memory without a transcript (all of them, or those of
    /// `ids`) a deterministic text and a later `updated_at`. Returns how many
    /// changed.
    pub fn fill_transcripts(&self, ctx: &str, ids: Option<&[String]>) -> usize {
        self.state.fill_transcripts(ctx, ids)
    }

    /// Appends `suffix` to the transcripts of `ids` (a missing one becomes
    /// the suffix) and moves their `updated_at` on. Returns how many changed.
    pub fn edit_transcripts(&self, ctx: &str, ids: &[String], suffix: &str) -> usize {
        self.state.edit_transcripts(ctx, ids, suffix)
    }

    /// Queues a fault after those already queued.
    pub fn inject(&self, fault: Fault) {
        self.state.inject(fault);
    }

    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// How many `GET /memory/{ctx}/{id}/audio` and `/image` requests arrived.
    pub fn media_requests(&self) -> usize {
        self.state.media_requests()
    }

    /// How many `GET /memory/{ctx}` requests arrived (faulted ones included).
    pub fn list_requests(&self) -> usize {
        self.state.list_requests()
    }

    /// When the first `GET /memory/{ctx}` arrived, if one did.
    pub fn first_request_at(&self) -> Option<std::time::Instant> {
        self.state.first_request_at()
    }

    /// The raw items stored for `ctx` now, in insertion order (empty for an
    /// unknown context).
    pub fn expected(&self, ctx: &str) -> Vec<serde_json::Value> {
        self.state.items(ctx)
    }

    /// The ids (as strings) of the memories of `ctx` with a non-empty
    /// transcript: those that become documents.
    pub fn ids_with_transcript(&self, ctx: &str) -> Vec<String> {
        self.expected(ctx)
            .iter()
            .filter(|m| m.get("transcript").and_then(serde_json::Value::as_str).is_some_and(|t| !t.trim().is_empty()))
            .filter_map(|m| match m.get("id") {
                Some(serde_json::Value::String(id)) => Some(id.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for MemorySim {
    fn drop(&mut self) {
        self.task.abort();
    }
}
