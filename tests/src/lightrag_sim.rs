//! A LightRAG 1.5.7 server in memory, for tests and benchmarks.
//!
//! It follows what a real `lightrag-server` 1.5.7 does on the routes the
//! connector uses (documents, and for the look-ups the graph and `/query`,
//! see `graph`; `docs/lightrag-behaviour.md`): the same status codes,
//! `detail` texts and JSON shapes, basename identity and `doc-` ids, `dup-`
//! records, asynchronous processing and deletion, and the API-key check. A
//! contract suite runs against both this and a real server, so behaviour
//! here must stay faithful; anything simulated on top (faults, latency,
//! failing texts) is switched on explicitly.
//!
//! Tests drive it through [`LightragSim`]; other processes use the
//! `lightrag-sim` binary and the `/_control/*` routes.

mod graph;
mod http;
mod store;

pub use graph::extract_entities;
pub use http::{API_VERSION, CORE_VERSION};
pub use store::{SimDocStatus, SimDocument};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use store::{Store, StoreRules};
use tokio::sync::oneshot;

/// How a simulated server behaves.
#[derive(Debug, Clone)]
pub struct LightragSimOptions {
    /// `LIGHTRAG_API_KEY`: when set, document routes want `X-API-Key`.
    pub api_key: Option<String>,
    /// How long one document takes from pending to processed. Documents are
    /// processed one at a time, like LightRAG's pipeline. Zero: processed by
    /// the next request.
    pub process_delay: Duration,
    /// How long a deletion runs; inserts meanwhile get 409.
    pub delete_delay: Duration,
    /// Added to every answer (slow-sink benchmarks).
    pub latency: Duration,
    /// The server's fixed workspace (reported by `/health`).
    pub workspace: String,
    /// Deletes answer `busy` while documents are being processed, as on a
    /// real server. Benchmarks that replace while inserting may turn it off.
    pub busy_while_processing: bool,
    /// `MAX_PENDING_DOCUMENTS`: inserts get 429 with `Retry-After: 30`
    /// while this many documents wait.
    pub max_pending_documents: Option<usize>,
    /// `MAX_REQUEST_BODY_BYTES` (413 beyond).
    pub max_request_body_bytes: usize,
    /// `MAX_GRAPH_NODES`: the most nodes `GET /graphs` returns.
    pub max_graph_nodes: usize,
}

impl Default for LightragSimOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            process_delay: Duration::ZERO,
            delete_delay: Duration::ZERO,
            latency: Duration::ZERO,
            workspace: String::new(),
            busy_while_processing: true,
            max_pending_documents: None,
            max_request_body_bytes: 50 * 1024 * 1024,
            max_graph_nodes: 1000,
        }
    }
}

/// Which requests a fault or a counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimRoute {
    /// `POST /documents/text`
    Insert,
    /// `POST /documents/texts`
    InsertBatch,
    /// `DELETE /documents/delete_document`
    Delete,
    /// `GET /documents/track_status/{id}`
    TrackStatus,
    /// `POST /documents/paginated`
    Paginated,
    StatusCounts,
    PipelineStatus,
    Health,
    /// `GET /graphs`, `/graph/label/*`
    Graph,
    /// `POST /query`
    Query,
    /// Any other route of the simulated server (not `/_control`).
    Other,
    /// Every route (for faults), or all requests together (for counts).
    Any,
}

impl SimRoute {
    /// The routes with their own counter.
    pub const COUNTED: [SimRoute; 11] = [
        SimRoute::Insert,
        SimRoute::InsertBatch,
        SimRoute::Delete,
        SimRoute::TrackStatus,
        SimRoute::Paginated,
        SimRoute::StatusCounts,
        SimRoute::PipelineStatus,
        SimRoute::Health,
        SimRoute::Graph,
        SimRoute::Query,
        SimRoute::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimRoute::Insert => "insert",
            SimRoute::InsertBatch => "insert_batch",
            SimRoute::Delete => "delete",
            SimRoute::TrackStatus => "track_status",
            SimRoute::Paginated => "paginated",
            SimRoute::StatusCounts => "status_counts",
            SimRoute::PipelineStatus => "pipeline_status",
            SimRoute::Health => "health",
            SimRoute::Graph => "graph",
            SimRoute::Query => "query",
            SimRoute::Other => "other",
            SimRoute::Any => "any",
        }
    }
}

/// An answer forced onto the next `times` requests of a route, before
/// authentication and before the route does anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimFault {
    pub route: SimRoute,
    pub status: u16,
    /// Sent as JSON when it parses as JSON, else as text.
    #[serde(default)]
    pub body: String,
    /// The `Retry-After` header value, if any.
    #[serde(default)]
    pub retry_after: Option<String>,
    #[serde(default = "one")]
    pub times: usize,
}

fn one() -> usize {
    1
}

impl SimFault {
    /// One `status` answer with a FastAPI-style `{"detail": ...}` body.
    pub fn new(route: SimRoute, status: u16) -> Self {
        Self {
            route,
            status,
            body: serde_json::json!({ "detail": format!("simulated {status}") }).to_string(),
            retry_after: None,
            times: 1,
        }
    }
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }
}

/// What the HTTP handlers and the [`LightragSim`] handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    options: LightragSimOptions,
    store: Mutex<Store>,
    faults: Mutex<Vec<SimFault>>,
    counts: Mutex<HashMap<SimRoute, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// When the first request arrived (start-up benchmark).
    first_request: OnceLock<Instant>,
    guest_token: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn count(&self, route: SimRoute) {
        self.first_request.get_or_init(Instant::now);
        *lock(&self.counts).entry(route).or_default() += 1;
    }

    fn request_count(&self, route: SimRoute) -> usize {
        let counts = lock(&self.counts);
        match route {
            SimRoute::Any => counts.values().sum(),
            route => counts.get(&route).copied().unwrap_or(0),
        }
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn add_fault(&self, fault: SimFault) {
        if fault.times > 0 {
            lock(&self.faults).push(fault);
        }
    }

    fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    fn take_fault(&self, route: SimRoute) -> Option<SimFault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| f.route == route || f.route == SimRoute::Any)?;
        let fault = faults[index].clone();
        faults[index].times -= 1;
        if faults[index].times == 0 {
            faults.remove(index);
        }
        Some(fault)
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running simulated LightRAG; stops when dropped.
#[derive(Debug)]
pub struct LightragSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl LightragSim {
    /// Listens on 127.0.0.1 at a port the system picks.
    pub async fn start(options: LightragSimOptions) -> anyhow::Result<LightragSim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    pub async fn start_on(addr: SocketAddr, options: LightragSimOptions) -> anyhow::Result<LightragSim> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("lightrag-sim cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let rules = StoreRules {
            process_delay: options.process_delay,
            delete_delay: options.delete_delay,
            busy_while_processing: options.busy_while_processing,
            max_pending_documents: options.max_pending_documents,
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(rules, Instant::now())),
            options,
            faults: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            first_request: OnceLock::new(),
            guest_token: format!("lightrag-sim-guest-{:016x}", fastrand::u64(..)),
        });
        let app = http::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "lightrag-sim stopped");
            }
        });
        Ok(LightragSim { addr, shared, shutdown: Some(tx) })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every record, `dup-` ones included, oldest first.
    pub fn documents(&self) -> Vec<SimDocument> {
        self.shared.store().documents(Instant::now())
    }

    /// Each stored name with its record count, after asserting there is no
    /// `dup-` record and no name twice.
    pub fn assert_names_once(&self) -> std::collections::BTreeMap<String, usize> {
        let mut names = std::collections::BTreeMap::new();
        for doc in self.documents() {
            assert!(!doc.id.starts_with("dup-"), "duplicate record {doc:?}");
            *names.entry(doc.file_path.clone()).or_insert(0) += 1;
        }
        assert!(names.values().all(|n| *n == 1), "{names:?}");
        names
    }

    /// The record stored under a name (basename), if any.
    pub fn document_named(&self, file_path: &str) -> Option<SimDocument> {
        self.documents().into_iter().find(|d| d.file_path == file_path)
    }

    /// Marks the pipeline busy: deletes answer `busy`.
    pub fn set_busy(&self, busy: bool) {
        self.shared.store().set_busy(busy);
    }

    pub fn inject(&self, fault: SimFault) {
        self.shared.add_fault(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Requests with a name containing `marker` are enqueued `delay` after
    /// LightRAG answered them (zero: at once): until then their names are
    /// not listed and not seen by the 409 check, as on a loaded server.
    pub fn slow_enqueue(&self, marker: &str, delay: Duration) {
        self.shared.store().slow_enqueue(marker, delay);
    }

    /// Accepted requests whose documents are not enqueued yet (plus the one
    /// driving processing): the pipeline status's `pending_enqueues`.
    pub fn pending_enqueues(&self) -> usize {
        let mut store = self.shared.store();
        store.advance(Instant::now());
        store.pending_enqueues()
    }

    /// Documents whose text contains `marker` end `failed` (an LLM failure).
    pub fn fail_texts_containing(&self, marker: &str) {
        self.shared.store().fail_texts_containing(marker);
    }

    /// Requests seen on a route ([`SimRoute::Any`]: all of them).
    pub fn request_count(&self, route: SimRoute) -> usize {
        self.shared.request_count(route)
    }

    /// When the first request (any route) arrived, if one did.
    pub fn first_request_at(&self) -> Option<Instant> {
        self.shared.first_request.get().copied()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight()
    }
}

impl Drop for LightragSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
