//! What the Lambda functions do (`aws` feature); `functions/*` only hand
//! the runtime's events to these.
//!
//! - [`parse_sync_event`]: the three shapes a `sync` invocation comes in (the
//!   constant input of a schedule rule or a direct invoke, a `SyncRequested`
//!   event, a raw `Scheduled Event` whose detail names the connector).
//! - [`SyncFunction`]: built once at cold start (config from `CONFIG_PATH`,
//!   secrets from Secrets Manager, one SDK config, the DynamoDB store, the
//!   enrichers as `serve` builds them), then one sync run per event, stopped
//!   at the Lambda's remaining time minus a safety margin.
//! - [`CleanupFunction`]: history retention.
//! - [`FunctionError::is_retryable`]: what the Lambda should fail (so an
//!   async invoke is retried) versus answer with `rejected` (a retry would
//!   fail the same way). A retry can never start a second concurrent run:
//!   the lease answers `already_running`.
//! - [`roles`]: what each function reads (variables, secrets, config
//!   fields); the functions load their config by it and the template is
//!   checked against it.
//! - Every `sync` invocation writes one metric line ([`crate::telemetry::emf`]).

mod observe;
pub mod roles;
#[cfg(test)]
mod template_check;

pub use roles::FunctionRole;

use crate::aws::record::{self, CallRecorder};
use crate::config::{self, Config, Environment, StateBackend};
use crate::ids::{ConnectorId, RunId};
use crate::secrets::{SecretError, SecretsManagerResolver};
use crate::state::dynamodb::{DynamoStore, TABLE_ENV};
use crate::state::recorded::RecordedStore;
use crate::state::{StateError, StateStore, Trigger};
use crate::sync::{RunLimits, RunOptions, SyncError};
use crate::telemetry::alerts::Alerter;
use crate::telemetry::emf::EmfWriter;
use crate::wiring::Adapters;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use tracing::{error, info, warn};

/// Where the config is read when `CONFIG_PATH` is not set: a Lambda layer
/// (`infra/template.yaml` ships `config/lambda/` as one), so a config change
/// is a layer update, not a rebuild.
pub const DEFAULT_CONFIG_PATH: &str = "/opt/memory-connector/config.yaml";
pub const CONFIG_PATH_ENV: &str = "CONFIG_PATH";
/// Seconds of Lambda time kept back when the run decides whether to take
/// another batch (default [`DEFAULT_SAFETY_MARGIN`]).
pub const SAFETY_MARGIN_ENV: &str = "SYNC_SAFETY_MARGIN_SECONDS";
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(30);

/// One sync the event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub connector_id: ConnectorId,
    pub force: bool,
    /// `schedule`, `event` (SyncRequested) or `lambda` (direct invoke).
    pub trigger: Trigger,
    /// The run id the `api` function promised in its 202 (a `SyncRequested`
    /// event carries it), so the history shows the same id.
    pub run_id: Option<RunId>,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("event not understood: {0}")]
    BadEvent(String),
    #[error("connector {0} is not in the config")]
    UnknownConnector(ConnectorId),
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Secrets(#[from] SecretError),
}

impl FunctionError {
    /// Worth failing the invocation for (Lambda retries async invokes):
    /// AWS calls that may succeed later. An event, connector or config
    /// problem fails the same way on every retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FunctionError::State(_) | FunctionError::Secrets(_))
    }
}

/// Reads the connector out of any of the accepted event shapes.
pub fn parse_sync_event(event: &Value) -> Result<SyncRequest, FunctionError> {
    let bad = |m: &str| FunctionError::BadEvent(m.to_owned());
    let object = event.as_object().ok_or_else(|| bad("expected a JSON object"))?;
    let (body, trigger) = match object.get("detail-type").and_then(Value::as_str) {
        Some("SyncRequested") => {
            (object.get("detail").ok_or_else(|| bad("SyncRequested without detail"))?, Trigger::Event)
        }
        Some("Scheduled Event") => {
            (object.get("detail").ok_or_else(|| bad("Scheduled Event without detail"))?, Trigger::Schedule)
        }
        Some(other) => return Err(FunctionError::BadEvent(format!("detail-type {other:?} is not handled"))),
        None => match object.get("trigger").and_then(Value::as_str).map(Trigger::parse) {
            Some(trigger @ (Trigger::Schedule | Trigger::Event | Trigger::Api)) => (event, trigger),
            _ => (event, Trigger::Lambda),
        },
    };
    let connector_id = body
        .get("connector_id")
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| bad("no connector_id (expected {\"connector_id\": \"...\"})"))?;
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(other) => return Err(FunctionError::BadEvent(format!("force must be true or false, not {other}"))),
    };
    let run_id = body.get("run_id").and_then(Value::as_str).filter(|id| !id.is_empty()).map(RunId::from);
    Ok(SyncRequest { connector_id: ConnectorId::new(connector_id), force, trigger, run_id })
}

/// What a function is built from (the process environment in Lambda).
pub struct FunctionSettings {
    pub config_path: PathBuf,
    /// The environment `${VAR}` and `*_SECRET_ARN` are read from.
    pub vars: HashMap<String, String>,
    pub sdk: aws_config::SdkConfig,
    pub safety_margin: Duration,
}

impl FunctionSettings {
    /// From the process environment and the default AWS chain.
    pub async fn from_process() -> Self {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let config_path =
            PathBuf::from(vars.get(CONFIG_PATH_ENV).cloned().unwrap_or_else(|| DEFAULT_CONFIG_PATH.into()));
        let safety_margin = vars
            .get(SAFETY_MARGIN_ENV)
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(DEFAULT_SAFETY_MARGIN, Duration::from_secs);
        Self { config_path, vars, sdk: crate::aws::sdk_config().await, safety_margin }
    }
}

/// The config and the adapters that depend on resolved secrets.
struct Wiring {
    vars: HashMap<String, String>,
    config: Config,
    adapters: Adapters,
    /// `monitoring.alerts`, judged run by run ([`Alerter::evaluate_run`]).
    alerter: Option<Alerter>,
}

/// Shared cold-start work of the functions: config (once), secrets (TTL).
struct Loaded {
    role: FunctionRole,
    settings_path: PathBuf,
    base_vars: HashMap<String, String>,
    secrets: SecretsManagerResolver,
}

impl Loaded {
    async fn environment(&self) -> Result<(HashMap<String, String>, Environment), FunctionError> {
        let vars = self.secrets.resolve(self.base_vars.clone()).await?;
        let env = Environment::from_map(vars.clone());
        Ok((vars, env))
    }

    /// The config as this function reads it: the secret fields of other
    /// functions need not resolve ([`FunctionRole::unread_secret_fields`]).
    async fn config(&self) -> Result<(HashMap<String, String>, Config), FunctionError> {
        let (vars, env) = self.environment().await?;
        let source = self.settings_path.display().to_string();
        let text = std::fs::read_to_string(&self.settings_path)
            .map_err(|e| FunctionError::Config(config::ConfigError::unreadable(&source, &e).to_string()))?;
        let config = config::load_str_for(&text, &source, &env, &self.role.unread_secret_fields())
            .map_err(|e| FunctionError::Config(e.to_string()))?;
        Ok((vars, config))
    }

    fn new(role: FunctionRole, settings: &FunctionSettings, recorder: Option<&CallRecorder>) -> Self {
        Self {
            role,
            settings_path: settings.config_path.clone(),
            base_vars: settings.vars.clone(),
            secrets: SecretsManagerResolver::new(record::secretsmanager(&settings.sdk, recorder), Duration::MAX),
        }
    }
}

/// The recorder of `role`'s AWS calls, when tests ask for one.
fn recorder(role: FunctionRole, settings: &FunctionSettings) -> Option<CallRecorder> {
    CallRecorder::from_env(role.name(), &settings.vars)
}

fn wire(vars: HashMap<String, String>, config: Config, store: Arc<dyn StateStore>) -> Result<Wiring, FunctionError> {
    let adapters = Adapters::from_config(&config, store).map_err(|e| FunctionError::Config(e.to_string()))?;
    let alerter = Alerter::from_config(&config.monitoring);
    Ok(Wiring { vars, config, adapters, alerter })
}

fn store_for(
    settings: &FunctionSettings,
    config: &Config,
    recorder: Option<&CallRecorder>,
) -> Result<Arc<dyn StateStore>, FunctionError> {
    if config.state.backend != StateBackend::Dynamodb {
        warn!(backend = ?config.state.backend, "state.backend is not dynamodb: the Lambda functions always use DynamoDB");
    }
    let table = settings
        .vars
        .get(TABLE_ENV)
        .filter(|t| !t.is_empty())
        .cloned()
        .or_else(|| config.state.table.clone())
        .ok_or_else(|| FunctionError::Config(format!("no DynamoDB table: set {TABLE_ENV} or state.table")))?;
    let client = record::dynamodb(&settings.sdk, recorder);
    info!(%table, "state table");
    Ok(RecordedStore::wrap(Arc::new(DynamoStore::for_table(client, table, &config.state)), recorder))
}

/// The `sync` function.
pub struct SyncFunction {
    loaded: Loaded,
    store: Arc<dyn StateStore>,
    wiring: RwLock<Arc<Wiring>>,
    safety_margin: Duration,
    metrics: EmfWriter,
}

impl SyncFunction {
    /// Cold start: reads the config once, fetches the secrets it needs,
    /// builds the clients and the store.
    pub async fn init(settings: FunctionSettings) -> Result<Self, FunctionError> {
        // The TTL comes from the config, which needs the secrets: fetch once,
        // then apply the configured TTL to what was fetched.
        let recorder = recorder(FunctionRole::Sync, &settings);
        let mut loaded = Loaded::new(FunctionRole::Sync, &settings, recorder.as_ref());
        let (vars, config) = loaded.config().await?;
        let perf = &config.advanced.performance;
        loaded.secrets.set_ttl(if perf.enable_caching {
            Duration::from_secs(perf.cache_ttl_seconds)
        } else {
            Duration::ZERO
        });
        let store = store_for(&settings, &config, recorder.as_ref())?;
        let wiring = wire(vars, config, store.clone())?;
        info!(connectors = wiring.config.connectors.len(), "sync function ready");
        let metrics = EmfWriter::from_vars(&settings.vars);
        Ok(Self {
            loaded,
            store,
            wiring: RwLock::new(Arc::new(wiring)),
            safety_margin: settings.safety_margin,
            metrics,
        })
    }

    /// Keeps the metric lines in memory instead of writing them to stdout
    /// (tests); the list fills as invocations end.
    pub fn metrics_in_memory(&mut self) -> Arc<std::sync::Mutex<Vec<String>>> {
        let (writer, lines) = EmfWriter::in_memory(self.metrics.namespace());
        self.metrics = writer;
        lines
    }

    pub fn store(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store)
    }

    /// The wiring, rebuilt when the secrets' TTL has passed and a value changed.
    async fn current(&self) -> Result<Arc<Wiring>, FunctionError> {
        let wiring = Arc::clone(&*self.wiring.read().await);
        if self.loaded.secrets.is_fresh() {
            return Ok(wiring);
        }
        let (vars, _) = self.loaded.environment().await?;
        if vars == wiring.vars {
            return Ok(wiring);
        }
        info!("a secret changed: reloading the config");
        let (vars, config) = self.loaded.config().await?;
        let fresh = Arc::new(wire(vars, config, self.store())?);
        *self.wiring.write().await = Arc::clone(&fresh);
        Ok(fresh)
    }

    /// One event: `Ok` with the run report (or `already_running`,
    /// `skipped`), `Err` for whatever stopped the run from starting; either
    /// way one metric line ([`SyncFunction::record_metrics`]). `remaining`
    /// is the Lambda's remaining time.
    pub async fn handle(&self, event: &Value, remaining: Option<Duration>) -> Result<Value, FunctionError> {
        let result = self.run_event(event, remaining).await;
        self.record_metrics(event, &result);
        result
    }

    async fn run_event(&self, event: &Value, remaining: Option<Duration>) -> Result<Value, FunctionError> {
        let started = Instant::now();
        let request = parse_sync_event(event)?;
        let wiring = self.current().await?;
        let connector = wiring
            .config
            .connector(&request.connector_id)
            .cloned()
            .ok_or_else(|| FunctionError::UnknownConnector(request.connector_id.clone()))?;
        let job_timeout = wiring.config.advanced.pipeline.job_timeout();
        // Bounded by job_timeout_minutes and the invocation's remaining
        // time, whichever ends first; the lease outlives the run.
        let limits = RunLimits::new(started, job_timeout, remaining, self.safety_margin);
        let engine =
            wiring.adapters.engine(&wiring.config, &connector, self.store(), job_timeout).without_local_takeover();
        let options =
            RunOptions { force: request.force, dry_run: false, trigger: request.trigger, limits: Some(limits) };
        let before = match &wiring.alerter {
            Some(_) => self.store.connector_state(&connector.id).await.ok().flatten(),
            None => None,
        };
        let run = match request.run_id.clone() {
            Some(run_id) => engine.run_with_id(run_id, options).await,
            None => engine.run(options).await,
        };
        match run {
            Ok(report) => {
                info!(connector_id = %request.connector_id, status = %report.status, stopped_early = report.stopped_early, "run finished");
                if let Some(alerter) = &wiring.alerter {
                    self.alert(alerter, &connector.id, before.as_ref(), report.error.clone()).await;
                }
                serde_json::to_value(&report).map_err(|e| FunctionError::Config(format!("report: {e}")))
            }
            Err(SyncError::AlreadyRunning { connector, owner, expires_at }) => {
                info!(connector_id = %connector, %owner, "already running: not starting a second run");
                Ok(
                    json!({"status": "already_running", "connector_id": connector, "owner": owner, "expires_at": expires_at}),
                )
            }
            Err(SyncError::Paused(connector)) => {
                info!(connector_id = %connector, "paused: scheduled run skipped");
                Ok(json!({"status": "skipped", "reason": "paused", "connector_id": connector}))
            }
            Err(SyncError::State(e)) => Err(e.into()),
        }
    }

    /// [`SyncFunction::handle`] with the retry classification applied:
    /// `Err` only for retryable failures; the others are logged and
    /// answered `{"status": "rejected", "error": ...}`.
    pub async fn handle_classified(&self, event: &Value, remaining: Option<Duration>) -> Result<Value, FunctionError> {
        classify(self.handle(event, remaining).await)
    }
}

fn classify(result: Result<Value, FunctionError>) -> Result<Value, FunctionError> {
    match result {
        Err(e) if !e.is_retryable() => {
            error!(error = %e, "rejected (not retried)");
            Ok(json!({"status": "rejected", "error": e.to_string()}))
        }
        other => other,
    }
}

/// The `cleanup` function: drops run history older than
/// `state.cleanup.retention_days` (DynamoDB TTL does it too, within days;
/// this is the exact cut) and reports the dead entries per connector, which
/// stay in the ledger (dropping them would re-send those memories).
pub struct CleanupFunction {
    store: Arc<dyn StateStore>,
    config: Config,
}

impl CleanupFunction {
    pub async fn init(settings: FunctionSettings) -> Result<Self, FunctionError> {
        let recorder = recorder(FunctionRole::Cleanup, &settings);
        let (_, config) = Loaded::new(FunctionRole::Cleanup, &settings, recorder.as_ref()).config().await?;
        let store = store_for(&settings, &config, recorder.as_ref())?;
        Ok(Self { store, config })
    }

    pub fn store(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store)
    }

    /// A `ResetRequested` event resets its connector; any other event
    /// (the schedule) applies retention.
    pub async fn handle_event(&self, event: &Value) -> Result<Value, FunctionError> {
        if event.get("detail-type").and_then(Value::as_str) != Some(RESET_REQUESTED) {
            return self.handle().await;
        }
        let id = event
            .pointer("/detail/connector_id")
            .and_then(Value::as_str)
            .ok_or_else(|| FunctionError::BadEvent("ResetRequested without detail.connector_id".into()))?;
        let connector = self
            .config
            .connector(&ConnectorId::new(id))
            .ok_or_else(|| FunctionError::UnknownConnector(ConnectorId::new(id)))?;
        let started = Instant::now();
        crate::admin::reset(self.store.as_ref(), &connector.id, crate::admin::AbandonedLeases::Keep, Utc::now())
            .await?;
        info!(connector_id = %connector.id, took_ms = started.elapsed().as_millis() as u64, "connector reset");
        Ok(json!({"status": "reset", "connector_id": connector.id}))
    }

    pub async fn handle(&self) -> Result<Value, FunctionError> {
        let cleanup = &self.config.state.cleanup;
        if !cleanup.enabled {
            return Ok(json!({"status": "disabled"}));
        }
        let before = Utc::now() - TimeDelta::days(i64::from(cleanup.retention_days));
        // The configured connectors, one query each: the table is never
        // scanned (DynamoDB's TTL expires what removed connectors left).
        let mut removed = 0;
        let mut dead = serde_json::Map::new();
        for connector in &self.config.connectors {
            removed += self.store.prune_runs(&connector.id, before).await?;
            let counts = self.store.status_counts(&connector.id).await?;
            if let Some(n) = counts.get(&crate::state::EntryStatus::Dead).filter(|n| **n > 0) {
                dead.insert(connector.id.to_string(), json!(n));
            }
        }
        info!(removed_runs = removed, before = %before, "history retention applied");
        Ok(json!({"status": "completed", "removed_runs": removed, "before": before, "dead_entries": dead}))
    }

    pub async fn handle_classified(&self, event: &Value) -> Result<Value, FunctionError> {
        classify(self.handle_event(event).await)
    }
}

/// Where the `api` function puts `SyncRequested` events (default: `default`).
pub const EVENT_BUS_ENV: &str = "EVENT_BUS_NAME";
/// The `source` of the connector's events (the SAM rule matches it).
pub const EVENT_SOURCE: &str = "memory-connector";
pub const SYNC_REQUESTED: &str = "SyncRequested";
/// The event the api function puts to have `cleanup` reset a connector.
pub const RESET_REQUESTED: &str = "ResetRequested";

/// `trigger` in the serverless shape: a `SyncRequested` event on EventBridge,
/// which a rule routes to the `sync` function. A connector whose lease is
/// held answers 409 here already; the lease still decides in `sync`.
pub struct EventBridgeLauncher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    store: Arc<dyn StateStore>,
}

impl EventBridgeLauncher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String, store: Arc<dyn StateStore>) -> Self {
        Self { client, bus, store }
    }
}

#[async_trait::async_trait]
impl crate::api::RunLauncher for EventBridgeLauncher {
    async fn launch(
        &self,
        connector: &crate::config::ConnectorConfig,
        force: bool,
    ) -> Result<crate::api::LaunchOutcome, crate::api::LaunchError> {
        use crate::api::{LaunchError, LaunchOutcome};
        if !connector.enabled {
            return Err(LaunchError::Disabled(connector.id.clone()));
        }
        let now = Utc::now();
        if let Some(lease) = self.store.lease(&connector.id).await?.filter(|l| !l.is_expired_at(now)) {
            return Err(LaunchError::AlreadyRunning {
                connector: connector.id.clone(),
                owner: lease.owner,
                expires_at: Some(lease.expires_at),
            });
        }
        let run_id = RunId::generate(now);
        let detail = json!({ "connector_id": connector.id, "force": force, "run_id": run_id });
        self.put(SYNC_REQUESTED, &detail).await?;
        info!(connector_id = %connector.id, %run_id, bus = %self.bus, "SyncRequested event put");
        Ok(LaunchOutcome { connector_id: connector.id.clone(), run_id, status: "accepted".into() })
    }

    /// A ledger of a million entries takes minutes to delete, longer than
    /// API Gateway waits: the `cleanup` function does it on a
    /// `ResetRequested` event (its lease shows the connector as running).
    async fn reset(
        &self,
        connector: &crate::config::ConnectorConfig,
    ) -> Result<crate::api::ResetAnswer, crate::api::LaunchError> {
        let now = Utc::now();
        if let Some(lease) = self.store.lease(&connector.id).await?.filter(|l| !l.is_expired_at(now)) {
            return Err(crate::api::LaunchError::AlreadyRunning {
                connector: connector.id.clone(),
                owner: lease.owner,
                expires_at: Some(lease.expires_at),
            });
        }
        self.put(RESET_REQUESTED, &json!({ "connector_id": connector.id })).await?;
        info!(connector_id = %connector.id, bus = %self.bus, "ResetRequested event put");
        Ok(crate::api::ResetAnswer::Accepted)
    }
}

impl EventBridgeLauncher {
    /// Puts one event of the connector's source on the bus.
    async fn put(&self, detail_type: &str, detail: &Value) -> Result<(), crate::api::LaunchError> {
        use crate::api::LaunchError;
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(EVENT_SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build();
        let answer = self.client.put_events().entries(entry).send().await.map_err(|e| {
            LaunchError::Unavailable(format!(
                "EventBridge PutEvents on bus {}: {}",
                self.bus,
                crate::http::error_chain(&e)
            ))
        })?;
        if answer.failed_entry_count() > 0 {
            let why = answer.entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(LaunchError::Unavailable(format!("EventBridge refused the {detail_type} event: {why}")));
        }
        Ok(())
    }
}

/// The `api` function's router: the management API of `serve`, over the
/// DynamoDB store, with `trigger` as a `SyncRequested` event.
pub async fn api_router(settings: FunctionSettings) -> Result<axum::Router, FunctionError> {
    let recorder = recorder(FunctionRole::Api, &settings);
    let (_, config) = Loaded::new(FunctionRole::Api, &settings, recorder.as_ref()).config().await?;
    if let Some(problem) = crate::config::api_auth_problem(&config.api) {
        return Err(FunctionError::Config(format!("{}: {problem}", settings.config_path.display())));
    }
    let store = store_for(&settings, &config, recorder.as_ref())?;
    let bus = settings.vars.get(EVENT_BUS_ENV).filter(|b| !b.is_empty()).cloned().unwrap_or_else(|| "default".into());
    let events = record::eventbridge(&settings.sdk, recorder.as_ref());
    let launcher = Arc::new(EventBridgeLauncher::new(events, bus, Arc::clone(&store)));
    info!(connectors = config.connectors.len(), "api function ready");
    Ok(crate::api::router(Arc::new(config), store, launcher))
}

/// What the `api` function serves: [`api_router`], or, when its config is
/// wrong (a retry would fail the same way), the router of a function that
/// could not start ([`crate::api::unavailable_router`]: `/health` answers
/// `degraded`, the rest 503), so a misconfiguration is visible and named in
/// the log instead of a 500 on every route. AWS failures (secrets, state)
/// fail the start: Lambda starts the function again on the next request.
pub async fn api_function(settings: FunctionSettings) -> Result<axum::Router, FunctionError> {
    match api_router(settings).await {
        Err(e) if !e.is_retryable() => {
            error!(error = %e, "the api function cannot serve its API: answering 503 until it is redeployed");
            Ok(crate::api::unavailable_router())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
