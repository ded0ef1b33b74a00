//! The long-running service behind `memory-connector serve`: the scheduler
//! (one loop per enabled connector, cleanup on `cleanup_cron`, staleness
//! alerts), the in-process [`RunLauncher`] the management API uses, the API
//! and metrics listeners, and graceful shutdown.
//!
//! Single flight: a connector runs at most once at a time. In this process
//! the `active` map says so; across processes the state store's lease does,
//! taken here *before* a trigger is answered, under the run id the answer
//! carries (the engine renews the same lease when it starts).

mod gauges;
mod listen;
mod timing;

pub use listen::{Connections, HEADER_READ_TIMEOUT, connection_budget, raise_descriptor_limit};

use crate::api::{self, LaunchError, LaunchOutcome, RunLauncher};
use crate::clock::Clock;
use crate::config::{Config, ConnectorConfig};
use crate::ids::{ConnectorId, RunId};
use crate::lightrag::DocumentSink;
use crate::schedule;
use crate::state::{Checkpoint, LeaseOutcome, RunStatus, StateStore, Trigger};
use crate::sync::{MemorySource, RunLimits, RunOptions, RunReport, SyncError};
use crate::telemetry::alerts::Alerter;
use crate::telemetry::metrics::{ErrorType, Metrics};
use crate::wiring::Adapters;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{Instrument, debug, error, info, warn};

/// How often a paused connector is looked at again.
const PAUSED_POLL: Duration = Duration::from_secs(2);
/// Shortest gap between two scheduled attempts of one connector.
const MIN_GAP: Duration = Duration::from_secs(1);

/// What `serve` runs and where it listens.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub api: bool,
    pub scheduler: bool,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Where to write the bound ports as JSON (`{"api": P, "metrics": Q}`).
    pub port_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("cannot write the port file {path}: {source}")]
    PortFile { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
}

struct Inner {
    config: Arc<Config>,
    store: Arc<dyn StateStore>,
    /// The timed source and sink, and the enrichers.
    adapters: Adapters,
    metrics: Arc<Metrics>,
    alerter: Option<Arc<Alerter>>,
    permits: Arc<Semaphore>,
    active: Mutex<HashMap<ConnectorId, RunId>>,
    idle: Notify,
    last_error: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
    started_at: DateTime<Utc>,
    job_timeout: Duration,
    /// The wall time the scheduler reads (tests: one that follows paused tokio time).
    clock: Clock,
}

/// The service; cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl Service {
    /// The enrichers of the connectors that turn a flag on (see
    /// [`crate::wiring::Adapters`]); call before the service is shared.
    pub fn with_enrichers(
        mut self,
        enrichers: HashMap<ConnectorId, Arc<crate::enrich::Enricher>>,
    ) -> Result<Self, ServeError> {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.adapters.enrichers = enrichers,
            None => return Err(ServeError::Setup("the service was shared before its enrichers were set".into())),
        }
        Ok(self)
    }

    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn StateStore>,
        source: Arc<dyn MemorySource>,
        sink: Arc<dyn DocumentSink>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let alerter = Alerter::from_config(&config.monitoring).map(Arc::new);
        let permits = Arc::new(Semaphore::new(config.advanced.pipeline.max_concurrent_connectors.max(1) as usize));
        for connector in &config.connectors {
            metrics.register_connector(&connector.id);
        }
        timing::register(&metrics, &config.connectors);
        let source: Arc<dyn MemorySource> =
            Arc::new(timing::TimedSource { inner: source, metrics: Arc::clone(&metrics) });
        let sink: Arc<dyn DocumentSink> = Arc::new(timing::TimedSink { inner: sink, metrics: Arc::clone(&metrics) });
        let (stop, _) = watch::channel(false);
        let job_timeout = config.advanced.pipeline.job_timeout();
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                adapters: Adapters { source, sink, enrichers: HashMap::new() },
                metrics,
                alerter,
                permits,
                active: Mutex::new(HashMap::new()),
                idle: Notify::new(),
                last_error: Mutex::new(None),
                stop,
                started_at: Utc::now(),
                job_timeout,
                clock: Clock::system(),
            }),
        }
    }

    /// Overrides `job_timeout_minutes` (tests: seconds instead of minutes).
    /// Only before the service is shared.
    pub fn with_job_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.job_timeout = timeout;
        }
        self
    }

    /// Reads wall time from `clock` instead of the system's (tests: a clock
    /// that follows paused tokio time). Only before the service is shared.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.clock = clock;
            inner.started_at = clock.now();
        }
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    fn stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Stop scheduling and tell running syncs to stop at their next batch boundary.
    pub fn request_stop(&self) {
        self.inner.stop.send_replace(true);
    }

    pub fn active_count(&self) -> usize {
        self.inner.active.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Waits until no run is active, at most `timeout`; `true` when idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.idle.notified();
            if self.active_count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active_count() == 0;
            }
        }
    }

    /// Starts a run: reserves the connector here and takes its lease in the
    /// store (so a second start, from anywhere, is refused), then runs it in
    /// the background. The receiver gets the report when the run is over.
    pub async fn start_run(
        &self,
        connector: &ConnectorConfig,
        trigger: Trigger,
        force: bool,
    ) -> Result<(LaunchOutcome, tokio::sync::oneshot::Receiver<Option<RunReport>>), LaunchError> {
        if self.stopping() {
            return Err(LaunchError::ShuttingDown);
        }
        if !connector.enabled {
            return Err(LaunchError::Disabled(connector.id.clone()));
        }
        let now = Utc::now();
        let run_id = RunId::generate(now);
        {
            let mut active =
                self.inner.active.lock().map_err(|_| LaunchError::Unavailable("internal lock poisoned".into()))?;
            if let Some(owner) = active.get(&connector.id) {
                return Err(LaunchError::AlreadyRunning {
                    connector: connector.id.clone(),
                    owner: owner.clone(),
                    expires_at: None,
                });
            }
            active.insert(connector.id.clone(), run_id.clone());
        }
        if let Err(e) = self.take_lease(&connector.id, &run_id, now).await {
            self.finish_active(&connector.id);
            return Err(e);
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let service = self.clone();
        let connector = connector.clone();
        let outcome =
            LaunchOutcome { connector_id: connector.id.clone(), run_id: run_id.clone(), status: "accepted".into() };
        tokio::spawn(async move {
            let report = service.run_reserved(&connector, run_id, trigger, force).await;
            service.finish_active(&connector.id);
            let _ = done_tx.send(report);
        });
        Ok((outcome, done_rx))
    }

    async fn take_lease(&self, connector: &ConnectorId, run_id: &RunId, now: DateTime<Utc>) -> Result<(), LaunchError> {
        let store = &self.inner.store;
        for _ in 0..2 {
            match store.try_acquire_lease(connector, run_id, now, self.lease_ttl()).await? {
                LeaseOutcome::Acquired(_) => return Ok(()),
                LeaseOutcome::Held(lease) if lease.owner.holder_is_gone() => {
                    warn!(target: "connector_core::service", connector_id = %connector, previous = %lease.owner, "the previous run's process is gone; taking over its lease");
                    store.release_lease(connector, &lease.owner).await?;
                }
                LeaseOutcome::Held(lease) => {
                    return Err(LaunchError::AlreadyRunning {
                        connector: connector.clone(),
                        owner: lease.owner,
                        expires_at: Some(lease.expires_at),
                    });
                }
            }
        }
        Err(LaunchError::Unavailable(format!("connector {connector}: could not take the lease")))
    }

    fn lease_ttl(&self) -> Duration {
        self.inner.job_timeout
    }

    fn finish_active(&self, connector: &ConnectorId) {
        if let Ok(mut active) = self.inner.active.lock() {
            active.remove(connector);
        }
        self.inner.idle.notify_waiters();
    }

    /// The body of a started run: wait for a slot, run, record, alert.
    async fn run_reserved(
        &self,
        connector: &ConnectorConfig,
        run_id: RunId,
        trigger: Trigger,
        force: bool,
    ) -> Option<RunReport> {
        let inner = &self.inner;
        let mut stop = inner.stop.subscribe();
        let permit = tokio::select! {
            permit = Arc::clone(&inner.permits).acquire_owned() => permit.ok(),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(_permit) = permit else {
            info!(target: "connector_core::service", connector_id = %connector.id, run_id = %run_id, "shutting down before the run started");
            let _ = inner.store.release_lease(&connector.id, &run_id).await;
            return None;
        };
        let timeout = self.lease_ttl();
        let engine = inner
            .adapters
            .engine(&inner.config, connector, Arc::clone(&inner.store), timeout)
            .with_stop_signal(inner.stop.subscribe());
        let limits = RunLimits::new(Instant::now(), timeout, None, crate::sync::limits::DEFAULT_MARGIN);
        let options = RunOptions { force, dry_run: false, trigger, limits: Some(limits) };
        let result = engine.run_with_id(run_id.clone(), options).await;
        let mut report = match result {
            Ok(report) => report,
            Err(SyncError::AlreadyRunning { .. }) => {
                inner.metrics.record_error(&connector.id, ErrorType::AlreadyRunning);
                return None;
            }
            Err(SyncError::Paused(_)) => return None,
            Err(e) => {
                error!(target: "connector_core::service", connector_id = %connector.id, run_id = %run_id, error = %e, "the run could not start");
                inner.metrics.record_error(&connector.id, ErrorType::RunFailed);
                self.set_last_error(Some(format!("{}: {e}", connector.id)));
                return None;
            }
        };
        if report.stopped_early && Instant::now() >= limits.stop_at {
            self.mark_timed_out(&mut report).await;
        }
        inner.metrics.record_run(report.finished_run());
        match &report.error {
            Some(e) => self.set_last_error(Some(format!("{}: {e}", connector.id))),
            None if report.status != RunStatus::Failed => self.set_last_error(None),
            None => {}
        }
        if let Some(alerter) = &inner.alerter
            && let Ok(Some(state)) = inner.store.connector_state(&connector.id).await
        {
            alerter.evaluate(&state, report.error.clone(), inner.started_at, self.now()).await;
        }
        Some(report)
    }

    /// A run stopped by `job_timeout_minutes` is recorded as `timed_out`
    /// (the engine calls it `partial`: it stopped at a batch boundary, and
    /// the next run continues).
    async fn mark_timed_out(&self, report: &mut RunReport) {
        report.status = RunStatus::TimedOut;
        report
            .error
            .get_or_insert_with(|| "stopped at advanced.pipeline.job_timeout_minutes; the next run continues".into());
        let store = &self.inner.store;
        let mut checkpoint = Checkpoint { run: Some(report.record(RunStatus::TimedOut)), ..Default::default() };
        if let Ok(Some(mut state)) = store.connector_state(&report.connector_id).await
            && state.last_run_id.as_ref() == Some(&report.run_id)
        {
            state.status = RunStatus::TimedOut;
            checkpoint.connector = Some(state);
        }
        if let Err(e) = store.checkpoint(&report.connector_id, checkpoint).await {
            warn!(target: "connector_core::service", error = %e, "could not record the run as timed out");
        }
        warn!(target: "connector_core::service", connector_id = %report.connector_id, run_id = %report.run_id, "the run hit the job timeout and stopped at a batch boundary");
    }

    fn set_last_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.inner.last_error.lock() {
            *last = error;
        }
    }

    /// One scheduler loop per enabled connector, plus cleanup and staleness
    /// checks; they end when stop is requested.
    pub fn spawn_scheduler(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for connector in self.inner.config.connectors.iter().filter(|c| c.enabled) {
            let service = self.clone();
            let connector = connector.clone();
            let span = tracing::info_span!(target: "connector_core::service", "schedule", connector_id = %connector.id);
            handles.push(tokio::spawn(async move { service.schedule_loop(connector).await }.instrument(span)));
        }
        if self.inner.config.state.cleanup.enabled {
            let service = self.clone();
            handles.push(tokio::spawn(async move { service.cleanup_loop().await }));
        }
        if self.inner.alerter.as_ref().is_some_and(|a| a.no_sync_threshold().is_some()) {
            let service = self.clone();
            handles.push(tokio::spawn(async move { service.staleness_loop().await }));
        }
        handles
    }

    /// Sleeps `wait`; `false` when stop was requested meanwhile.
    async fn sleep_unless_stopped(&self, wait: Duration) -> bool {
        let mut stop = self.inner.stop.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        !self.stopping()
    }

    async fn schedule_loop(&self, connector: ConnectorConfig) {
        let store = &self.inner.store;
        let mut last_attempt: Option<DateTime<Utc>> = None;
        loop {
            if self.stopping() {
                return;
            }
            let state = match store.connector_state(&connector.id).await {
                Ok(state) => state,
                Err(e) => {
                    warn!(target: "connector_core::service", error = %e, "cannot read the connector state; retrying in 30 s");
                    if !self.sleep_unless_stopped(Duration::from_secs(30)).await {
                        return;
                    }
                    continue;
                }
            };
            let now = self.now();
            let last = state.as_ref().and_then(|s| s.last_run_started).max(last_attempt);
            let Some(due) = schedule::due_at(&connector.schedule, last, now) else {
                warn!(target: "connector_core::service", "the schedule never fires; not scheduling this connector");
                return;
            };
            let wait = (due - now).to_std().unwrap_or(Duration::ZERO) + schedule::jitter(&connector.schedule);
            debug!(target: "connector_core::service", next_run = %due, wait_ms = wait.as_millis() as u64, "next scheduled run");
            if !self.sleep_unless_stopped(wait).await {
                return;
            }
            if matches!(store.connector_state(&connector.id).await, Ok(Some(ref s)) if s.paused) {
                debug!(target: "connector_core::service", "paused; not running");
                if !self.sleep_unless_stopped(PAUSED_POLL).await {
                    return;
                }
                continue;
            }
            last_attempt = Some(self.now());
            match self.start_run(&connector, Trigger::Schedule, false).await {
                Ok((outcome, done)) => {
                    info!(target: "connector_core::service", run_id = %outcome.run_id, "scheduled run started");
                    let _ = done.await;
                }
                Err(LaunchError::AlreadyRunning { owner, .. }) => {
                    info!(target: "connector_core::service", running = %owner, "already running; skipping this scheduled run");
                }
                Err(LaunchError::ShuttingDown) => return,
                Err(e) => warn!(target: "connector_core::service", error = %e, "the scheduled run could not start"),
            }
            if !self.sleep_unless_stopped(MIN_GAP).await {
                return;
            }
        }
    }

    async fn cleanup_loop(&self) {
        let cleanup = self.inner.config.state.cleanup.clone();
        loop {
            let now = self.now();
            let Some(next) = schedule::next_cron(&cleanup.cleanup_cron, None, now) else { return };
            if !self.sleep_unless_stopped((next - now).to_std().unwrap_or(Duration::ZERO)).await {
                return;
            }
            let before = self.now() - chrono::Duration::days(i64::from(cleanup.retention_days));
            // Every connector the store knows, configured or not: a local
            // store is small, and a removed connector's history expires too.
            let connectors = match self.inner.store.connectors().await {
                Ok(connectors) => connectors,
                Err(e) => {
                    warn!(target: "connector_core::service", error = %e, "run history cleanup failed");
                    Vec::new()
                }
            };
            for connector in connectors {
                match self.inner.store.prune_runs(&connector, before).await {
                    Ok(n) => {
                        info!(target: "connector_core::service", connector_id = %connector, removed = n, %before, "run history cleaned up")
                    }
                    Err(e) => {
                        warn!(target: "connector_core::service", connector_id = %connector, error = %e, "run history cleanup failed")
                    }
                }
            }
            if !self.sleep_unless_stopped(MIN_GAP).await {
                return;
            }
        }
    }

    async fn staleness_loop(&self) {
        let Some(alerter) = self.inner.alerter.clone() else { return };
        let period = alerter
            .no_sync_threshold()
            .and_then(|t| (t / 10).to_std().ok())
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            for connector in self.inner.config.connectors.iter().filter(|c| c.enabled) {
                let state = self.inner.store.connector_state(&connector.id).await;
                let state = match state {
                    Ok(Some(s)) => s,
                    Ok(None) => crate::state::ConnectorState::new(connector.id.clone()),
                    Err(_) => continue,
                };
                alerter.evaluate(&state, None, self.inner.started_at, self.now()).await;
            }
            if !self.sleep_unless_stopped(period).await {
                return;
            }
        }
    }
}

#[async_trait]
impl RunLauncher for Service {
    async fn launch(&self, connector: &ConnectorConfig, force: bool) -> Result<LaunchOutcome, LaunchError> {
        self.start_run(connector, Trigger::Api, force).await.map(|(outcome, _)| outcome)
    }

    fn active_jobs(&self) -> usize {
        self.active_count()
    }

    fn last_error(&self) -> Option<String> {
        self.inner.last_error.lock().ok().and_then(|e| e.clone())
    }

    async fn reset(&self, connector: &ConnectorConfig) -> Result<api::ResetAnswer, LaunchError> {
        // A local store deletes even a large ledger in well under a second.
        let store = self.inner.store.as_ref();
        crate::admin::reset(store, &connector.id, crate::admin::AbandonedLeases::Release, Utc::now()).await?;
        Ok(api::ResetAnswer::Done)
    }
}

/// `memory-connector serve`: the scheduler, the management API and the
/// metrics endpoint until SIGTERM/SIGINT; then stop scheduling, let running
/// syncs finish their batch and checkpoint, and return within
/// `advanced.shutdown_timeout` seconds.
pub async fn serve(
    config: Arc<Config>,
    store: Arc<dyn StateStore>,
    adapters: Adapters,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    metrics.set_process_start(Utc::now());
    let Adapters { source, sink, enrichers } = adapters;
    let service = Service::new(Arc::clone(&config), Arc::clone(&store), source, sink, Arc::clone(&metrics))
        .with_enrichers(enrichers)?;
    let descriptors = raise_descriptor_limit();
    let connections = Connections::new(connection_budget(descriptors));
    let spawn_server = |listener, router| {
        let stop = service.inner.stop.subscribe();
        tokio::spawn(listen::serve(listener, router, Arc::clone(&connections), HEADER_READ_TIMEOUT, stop))
    };
    let mut ports = serde_json::Map::new();
    let mut servers = Vec::new();
    let mut shutdown = service.inner.stop.subscribe();

    for warning in crate::config::exposure_warnings(&config, options.host.as_deref()) {
        warn!(target: "connector_core::service", "{warning}");
    }
    let api_enabled = options.api && config.api.enabled;
    if options.api && !config.api.enabled {
        info!(target: "connector_core::service", "api.enabled is false: no management API");
    }
    if api_enabled {
        let host = options.host.clone().unwrap_or_else(|| config.api.host.clone());
        let port = options.port.unwrap_or(config.api.port);
        let listener = bind(&host, port).await?;
        let bound = listener.local_addr().map_err(|e| ServeError::Setup(e.to_string()))?;
        info!(target: "connector_core::service", address = %bound, port = bound.port(), "management API listening");
        ports.insert("api".into(), bound.port().into());
        let router = api::router(Arc::clone(&config), Arc::clone(&store), Arc::new(service.clone()));
        servers.push(spawn_server(listener, router));
    }
    if config.monitoring.prometheus.enabled {
        let host = options.host.clone().unwrap_or_else(|| config.api.host.clone());
        let listener = bind(&host, config.monitoring.prometheus.port).await?;
        let bound = listener.local_addr().map_err(|e| ServeError::Setup(e.to_string()))?;
        info!(target: "connector_core::service", address = %bound, port = bound.port(), path = %config.monitoring.prometheus.path, "metrics listening");
        ports.insert("metrics".into(), bound.port().into());
        let metrics = Arc::clone(&metrics);
        let scraped = service.clone();
        // Validation refuses a path the router cannot mount; never trusted here.
        let path = match crate::config::route_path_problem(&config.monitoring.prometheus.path) {
            None => config.monitoring.prometheus.path.as_str(),
            Some(_) => "/metrics",
        };
        let router = axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let metrics = Arc::clone(&metrics);
                let scraped = scraped.clone();
                async move {
                    scraped.refresh_gauges().await;
                    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
                }
            }),
        );
        servers.push(spawn_server(listener, router));
    }
    if let Some(path) = &options.port_file {
        write_port_file(path, &serde_json::Value::Object(ports)).await?;
    }
    let scheduler = if options.scheduler { service.spawn_scheduler() } else { Vec::new() };
    info!(
        target: "connector_core::service",
        scheduler = options.scheduler,
        api = api_enabled,
        open_file_limit = descriptors,
        max_connections = connection_budget(descriptors),
        connectors = config.connectors.iter().filter(|c| c.enabled).count(),
        version = crate::VERSION,
        "memory-connector service started"
    );

    tokio::select! {
        signal = shutdown_signal() => info!(target: "connector_core::service", signal, "shutting down: no new runs; running syncs stop at their next batch boundary"),
        _ = shutdown.wait_for(|s| *s) => {}
    }
    service.request_stop();
    let timeout = Duration::from_secs(config.advanced.shutdown_timeout);
    if service.wait_idle(timeout).await {
        info!(target: "connector_core::service", "every run checkpointed; bye");
    } else {
        warn!(
            target: "connector_core::service",
            active = service.active_count(),
            "advanced.shutdown_timeout reached with runs still going; exiting (at most one batch of bookkeeping is redone next time)"
        );
    }
    for handle in scheduler {
        handle.abort();
    }
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    Ok(())
}

async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener, ServeError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    tokio::net::TcpListener::bind(&address).await.map_err(|source| ServeError::Bind { address, source })
}

async fn write_port_file(path: &std::path::Path, ports: &serde_json::Value) -> Result<(), ServeError> {
    let tmp = path.with_extension("tmp");
    let text = ports.to_string();
    tokio::fs::write(&tmp, text).await.map_err(|source| ServeError::PortFile { path: tmp.clone(), source })?;
    tokio::fs::rename(&tmp, path).await.map_err(|source| ServeError::PortFile { path: path.to_owned(), source })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C) with the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests;
