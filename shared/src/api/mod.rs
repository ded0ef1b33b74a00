//! The management API: one axum [`Router`] used by `serve` (runs happen in
//! process) and by the `api` Lambda (runs are requested through EventBridge).
//! The difference between the two is the [`RunLauncher`] they pass in.
//!
//! Every answer of the API is JSON (the web console in [`console`] answers
//! HTML at `/`, `/login`, `/logout`, `/console.css` and `/console/...`); errors have one shape,
//! `{"error": {"code": "...", "message": "..."}}`; secrets never appear
//! (the config is shown through its redacting serialisation).

pub mod client;
mod console;
mod guard;
mod lookup;
mod openapi;
mod unavailable;

use crate::admin;
use crate::config::{Config, ConnectorConfig};
use crate::ids::{ConnectorId, RunId};
use crate::state::{StateError, StateStore};
use crate::status;
use async_trait::async_trait;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

pub use guard::RateLimiter;
pub use unavailable::unavailable_router;

/// How a reset request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetAnswer {
    /// The ledger and state are gone (200).
    Done,
    /// The reset was handed over and runs in the background (202); the
    /// connector shows `running` (its lease is held) until it is done.
    Accepted,
}

/// What a trigger got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaunchOutcome {
    pub connector_id: ConnectorId,
    pub run_id: RunId,
    /// `accepted`: the run starts (or is queued) asynchronously.
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("connector {connector} is already running (run {owner})")]
    AlreadyRunning { connector: ConnectorId, owner: RunId, expires_at: Option<DateTime<Utc>> },
    #[error("connector {0} is disabled")]
    Disabled(ConnectorId),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("cannot start the run: {0}")]
    Unavailable(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Starts a run of a connector somewhere: in this process (`serve`) or by
/// an event (Lambda). Implementations never start a connector twice.
#[async_trait]
pub trait RunLauncher: Send + Sync {
    async fn launch(&self, connector: &ConnectorConfig, force: bool) -> Result<LaunchOutcome, LaunchError>;

    /// Runs in progress in this process (for `/health`).
    fn active_jobs(&self) -> usize {
        0
    }

    /// The last run-level error seen by this process (for `/health`).
    fn last_error(&self) -> Option<String> {
        None
    }

    /// Resets the connector (see [`admin::reset`]): here and now (`serve`),
    /// or handed to a function that has the time for a large ledger (the
    /// api Lambda answers within API Gateway's 30 s).
    async fn reset(&self, connector: &ConnectorConfig) -> Result<ResetAnswer, LaunchError>;
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct ApiState {
    config: Arc<Config>,
    store: Arc<dyn StateStore>,
    launcher: Arc<dyn RunLauncher>,
    started: Instant,
    /// For `/health`, which answers everyone but shows details only to the key.
    key: guard::AuthKey,
    /// The web console's logins and CSRF tokens.
    sessions: Arc<console::Sessions>,
}

/// The error answer of every route.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("unknown connector `{id}`"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Busy { .. } => ApiError::new(StatusCode::CONFLICT, "already_running", e.to_string()),
            other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", other.to_string()),
        }
    }
}

impl From<LaunchError> for ApiError {
    fn from(e: LaunchError) -> Self {
        // A state error keeps its own answer (a lease held: 409).
        let e = match e {
            LaunchError::State(state) => return state.into(),
            other => other,
        };
        let (status, code) = match &e {
            LaunchError::AlreadyRunning { .. } => (StatusCode::CONFLICT, "already_running"),
            LaunchError::Disabled(_) => (StatusCode::CONFLICT, "disabled"),
            LaunchError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            LaunchError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            LaunchError::State(_) => (StatusCode::SERVICE_UNAVAILABLE, "state_unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The `GET /health` answer: up/down and the version for everyone; the
/// details only for a request with the key (or when auth is off), since
/// `last_error` names internal URLs, context ids and upstream answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub details: Option<HealthDetails>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HealthDetails {
    pub uptime_seconds: u64,
    pub active_jobs: usize,
    pub last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
struct TriggerQuery {
    #[serde(default)]
    force: bool,
}

/// The management API and its web console ([`console`], `GET /` and
/// below). Everything but `/health` needs the key when `api.enable_auth` is
/// on (checked before the rate limit, see [`guard`]; the console asks for it
/// once in a login form); CORS and rate limiting follow `api.cors` and
/// `api.rate_limit`.
pub fn router(config: Arc<Config>, store: Arc<dyn StateStore>, launcher: Arc<dyn RunLauncher>) -> Router {
    let api = &config.api;
    let lookups = lookup::routes(Arc::clone(&config), Arc::clone(&store));
    let key = guard::AuthKey::from_config(api);
    let sessions = Arc::new(console::Sessions::from_config(api));
    let state = ApiState {
        config: Arc::clone(&config),
        store,
        launcher,
        started: Instant::now(),
        key,
        sessions: Arc::clone(&sessions),
    };
    // One rate limit for the API and the console (a console session counts as the key).
    let gate = Arc::new(guard::Gate::from_config(api));
    let protected = Router::new()
        .route("/connectors", get(list_connectors))
        .route("/connectors/{id}", get(get_connector))
        .route("/connectors/{id}/status", get(connector_status))
        .route("/connectors/{id}/history", get(history))
        .route("/connectors/{id}/failed", get(failed))
        .route("/connectors/{id}/trigger", post(trigger))
        .route("/connectors/{id}/reset", post(reset))
        .route("/connectors/{id}/pause", post(pause))
        .route("/connectors/{id}/resume", post(resume))
        .route("/connectors/{id}/retry-failed", post(retry_failed))
        .merge(lookups)
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found_route)
        // `/health` stays outside: free for probes, never rate limited.
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&gate), guard::gate));
    // Validation refuses an endpoint the router cannot mount; never trusted
    // here, so a config that skipped validation cannot make `serve` panic.
    let endpoint = &config.monitoring.health_check.endpoint;
    let health_path = match crate::config::health_endpoint_problem(endpoint) {
        None => endpoint.clone(),
        Some(_) => "/health".to_owned(),
    };
    let mut router = Router::new().route(&health_path, get(health));
    if health_path != "/health" {
        router = router.route("/health", get(health));
    }
    let mut router = router.merge(console::routes(sessions, gate)).merge(protected).with_state(state);
    if api.cors.enabled {
        router = router.layer(guard::cors(&api.cors));
    }
    router
}

async fn not_found_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json")
}

fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text())
}

fn find<'a>(state: &'a ApiState, id: &str) -> Result<&'a ConnectorConfig, ApiError> {
    state.config.connector(&ConnectorId::new(id)).ok_or_else(|| ApiError::not_found(id))
}

async fn health(State(state): State<ApiState>, headers: axum::http::HeaderMap) -> Json<Health> {
    let details = state.key.admits(&headers).then(|| HealthDetails {
        uptime_seconds: state.started.elapsed().as_secs(),
        active_jobs: state.launcher.active_jobs(),
        last_error: state.launcher.last_error(),
    });
    Json(Health { status: "healthy".into(), version: crate::VERSION.into(), details })
}

async fn list_connectors(State(state): State<ApiState>) -> ApiResult<Vec<status::ConnectorSummary>> {
    Ok(Json(status::list(&state.config, state.store.as_ref(), Utc::now()).await?))
}

/// The connector's (redacted) configuration and its status.
async fn get_connector(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let connector = find(&state, &id)?;
    let view = status::connector_status(connector, state.store.as_ref(), Utc::now()).await?;
    Ok(Json(serde_json::json!({ "config": connector, "status": view })))
}

async fn connector_status(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<status::ConnectorStatus> {
    let connector = find(&state, &id)?;
    Ok(Json(status::connector_status(connector, state.store.as_ref(), Utc::now()).await?))
}

async fn history(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Vec<crate::state::RunRecord>> {
    let connector = find(&state, &id)?;
    let query = query.map_err(bad_query)?;
    let limit = query.limit.unwrap_or(20).clamp(1, 1000);
    Ok(Json(state.store.runs(&connector.id, limit).await?))
}

async fn failed(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Vec<crate::state::LedgerEntry>> {
    let connector = find(&state, &id)?;
    Ok(Json(admin::failed(state.store.as_ref(), &connector.id).await?))
}

async fn trigger(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<TriggerQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<LaunchOutcome>), ApiError> {
    let connector = find(&state, &id)?;
    let force = query.map_err(bad_query)?.force;
    let outcome = state.launcher.launch(connector, force).await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}

async fn reset(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let connector = find(&state, &id)?;
    Ok(match state.launcher.reset(connector).await? {
        ResetAnswer::Done => (StatusCode::OK, Json(serde_json::json!({ "connector_id": connector.id, "reset": true }))),
        ResetAnswer::Accepted => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "connector_id": connector.id, "reset": "accepted" })))
        }
    })
}

async fn pause(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, &id, true).await
}

async fn resume(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, &id, false).await
}

async fn set_paused(state: &ApiState, id: &str, paused: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let connector = find(state, id)?;
    admin::set_paused(state.store.as_ref(), &connector.id, paused).await?;
    Ok(Json(serde_json::json!({ "connector_id": connector.id, "paused": paused })))
}

async fn retry_failed(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let connector = find(&state, &id)?;
    let count = admin::retry_failed(state.store.as_ref(), &connector.id).await?;
    Ok(Json(serde_json::json!({ "connector_id": connector.id, "replayed": count })))
}

#[cfg(test)]
mod tests;
