//! The provenance routes: `GET /lookup/resolve`, `/lookup/by-entity`,
//! `/lookup/by-memory` and `POST /connectors/{id}/ask`, thin calls of
//! [`crate::provenance::Lookup`] under the API's key and error shape.

use super::{ApiError, ApiState, bad_query};
use crate::config::Config;
use crate::ids::{ConnectorId, MemoryId};
use crate::provenance::{Lookup, LookupError};
use crate::state::StateStore;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The routes, with their own state (the look-ups and their HTTP clients).
pub(super) fn routes(config: Arc<Config>, store: Arc<dyn StateStore>) -> Router<ApiState> {
    Router::new()
        .route("/lookup/resolve", get(resolve))
        .route("/lookup/by-entity", get(by_entity))
        .route("/lookup/by-memory", get(by_memory))
        .route("/connectors/{id}/ask", post(ask))
        .with_state(Arc::new(Lookup::new(config, store)))
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        let (status, code) = match &e {
            LookupError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            LookupError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            LookupError::Lightrag(_) => (StatusCode::BAD_GATEWAY, "lightrag_unavailable"),
            LookupError::MemoryApi(_) => (StatusCode::BAD_GATEWAY, "memory_api_unavailable"),
            LookupError::State(state) => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", state.to_string());
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveQuery {
    name: String,
    #[serde(default)]
    fetch: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityQuery {
    name: String,
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryQuery {
    connector_id: String,
    memory_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskRequest {
    question: String,
    mode: Option<String>,
}

async fn resolve(
    State(lookup): State<Arc<Lookup>>,
    query: Result<Query<ResolveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    Ok(Json(lookup.resolve(&query.name, query.fetch).await?).into_response())
}

async fn by_entity(
    State(lookup): State<Arc<Lookup>>,
    query: Result<Query<EntityQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let target = query.target.as_deref().filter(|t| !t.trim().is_empty());
    Ok(Json(lookup.by_entity(&query.name, target).await?).into_response())
}

async fn by_memory(
    State(lookup): State<Arc<Lookup>>,
    query: Result<Query<MemoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let (connector, memory) = (ConnectorId::new(query.connector_id), MemoryId::new(query.memory_id));
    Ok(Json(lookup.by_memory(&connector, &memory).await?).into_response())
}

async fn ask(
    State(lookup): State<Arc<Lookup>>,
    Path(id): Path<String>,
    body: Result<Json<AskRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    Ok(Json(lookup.ask(&ConnectorId::new(id), &request.question, request.mode.as_deref()).await?).into_response())
}

/// What the OpenAPI document says of one of these routes beyond the common parts.
pub(super) struct OpenApiDetails {
    pub parameters: Vec<Value>,
    pub request_body: Option<Value>,
    /// Status and description of the errors they add.
    pub errors: &'static [(&'static str, &'static str)],
}

/// The OpenAPI details of these routes; `None` for other routes.
pub(super) fn openapi(path: &str) -> Option<OpenApiDetails> {
    let query = |name: &str, required: bool, schema: Value, description: &str| json!({"name": name, "in": "query", "required": required, "schema": schema, "description": description});
    let text = json!({"type": "string", "minLength": 1});
    const LOOKUP_ERRORS: &[(&str, &str)] = &[
        ("400", "Bad request (the message names the parameter)"),
        ("404", "Unknown name, entity, memory or connector"),
        ("502", "LightRAG (or, with fetch, the Memory API) is unreachable or refused; the message names it"),
    ];
    let details = match path {
        "/lookup/resolve" => (
            vec![
                query("name", true, text, "A LightRAG document name (file_path); several joined with <SEP>"),
                query("fetch", false, json!({"type": "boolean"}), "Add each memory as the Memory API lists it now"),
            ],
            None,
        ),
        "/lookup/by-entity" => (
            vec![
                query("name", true, text.clone(), "An entity name as LightRAG shows it (exact)"),
                query("target", false, text, "The other entity: the relation between the two"),
            ],
            None,
        ),
        "/lookup/by-memory" => (
            vec![
                query("connector_id", true, text.clone(), "The connector"),
                query("memory_id", true, text, "The memory id"),
            ],
            None,
        ),
        "/connectors/{id}/ask" => (
            Vec::new(),
            Some(json!({"required": true, "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["question"],
                "additionalProperties": false,
                "properties": {
                    "question": {"type": "string", "minLength": 3, "maxLength": 65536},
                    "mode": {"type": "string", "enum": crate::lightrag::api::query::QUERY_MODES,
                             "default": crate::lightrag::api::query::DEFAULT_QUERY_MODE},
                },
            }}}})),
        ),
        _ => return None,
    };
    Some(OpenApiDetails { parameters: details.0, request_body: details.1, errors: LOOKUP_ERRORS })
}

/// The schema of every look-up answer: a `memories` array.
pub(super) fn memories_schema() -> Value {
    let item = json!({
        "type": "object",
        "required": ["connector_id", "memory_id", "file_source", "created_at"],
        "properties": {
            "connector_id": {"type": "string"}, "memory_id": {"type": "string"},
            "file_source": {"type": "string"}, "created_at": {"type": "string", "format": "date-time", "nullable": true},
        },
    });
    json!({"type": "object", "required": ["memories"], "properties": {"memories": {"type": "array", "items": item}}})
}
