//! The simulated LightRAG's HTTP face: axum routes that read requests the
//! way FastAPI/pydantic do in LightRAG 1.5.7 (status codes, `detail`
//! shapes, API-key checks) and hand them to the [`Store`], plus the
//! `/_control/*` routes other processes use to steer the simulator.

use super::store::{NewText, PageQuery, Refusal, SortField, Store};
use super::{Shared, SimFault, SimRoute};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

pub const CORE_VERSION: &str = "1.5.7";
pub const API_VERSION: &str = "0344";

pub fn router(shared: Arc<Shared>) -> Router {
    let documents = Router::new()
        .route("/documents/text", post(insert_text))
        .route("/documents/texts", post(insert_texts))
        .route("/documents/track_status/{track_id}", get(track_status))
        .route("/documents/paginated", post(paginated))
        .route("/documents/status_counts", get(status_counts))
        .route("/documents/pipeline_status", get(pipeline_status))
        .route("/documents/delete_document", delete(delete_document))
        .route("/documents", delete(clear_documents).fallback(method_not_allowed))
        .route("/health", get(health))
        .route("/auth-status", get(auth_status))
        .merge(super::graph::routes())
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate));
    let control = Router::new()
        .route("/_control/documents", get(control_documents))
        .route("/_control/busy", post(control_busy))
        .route("/_control/faults", post(control_add_fault).delete(control_clear_faults))
        .route("/_control/fail_texts", post(control_fail_texts))
        .route("/_control/slow_enqueue", post(control_slow_enqueue))
        .route("/_control/stats", get(control_stats));
    documents
        .merge(control)
        .fallback(any(not_found))
        // Insert routes take up to `max_request_body_bytes`; checked by hand
        // so the 413 carries LightRAG's JSON `detail`.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    let mut response = answer(refusal.status, refusal.body);
    for (name, value) in refusal.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

pub fn classify(method: &Method, path: &str) -> SimRoute {
    match (method.as_str(), path) {
        ("POST", "/documents/text") => SimRoute::Insert,
        ("POST", "/documents/texts") => SimRoute::InsertBatch,
        ("DELETE", "/documents/delete_document") => SimRoute::Delete,
        ("GET", p) if p.starts_with("/documents/track_status/") => SimRoute::TrackStatus,
        ("POST", "/documents/paginated") => SimRoute::Paginated,
        ("GET", "/documents/status_counts") => SimRoute::StatusCounts,
        ("GET", "/documents/pipeline_status") => SimRoute::PipelineStatus,
        ("GET", "/health") => SimRoute::Health,
        ("GET", p) if p == "/graphs" || p.starts_with("/graph/") => SimRoute::Graph,
        ("POST", "/query") => SimRoute::Query,
        _ => SimRoute::Other,
    }
}

/// Requests LightRAG answers without authentication: its open paths, and
/// methods a path does not have (FastAPI routes before it authenticates).
fn is_open(method: &Method, path: &str) -> bool {
    matches!(path, "/health" | "/auth-status" | "/login" | "/") || (path == "/documents" && method != Method::DELETE)
}

/// Counting, concurrency, latency, injected faults and authentication,
/// in that order, for every simulated LightRAG route.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = classify(request.method(), request.uri().path());
    shared.count(route);
    let _in_flight = shared.enter();
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    if let Some(fault) = shared.take_fault(route) {
        return fault_response(&fault);
    }
    if !is_open(request.method(), request.uri().path())
        && let Some(refused) = check_auth(&shared, request.headers())
    {
        return refused;
    }
    next.run(request).await
}

fn fault_response(fault: &SimFault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match serde_json::from_str::<Value>(&fault.body) {
        Ok(json) => (status, Json(json)).into_response(),
        Err(_) => (status, fault.body.clone()).into_response(),
    };
    if let Some(after) = fault.retry_after.as_ref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert("retry-after", after);
    }
    response
}

/// LightRAG's `combined_auth`: a guest token is fine while no login
/// accounts exist; otherwise the `X-API-Key` must match when a key is set.
/// Returns the refusal, if any.
fn check_auth(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(token) = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned)) {
        if token == shared.guest_token {
            return None;
        }
        return Some(answer(401, json!({ "detail": "Invalid token. Please login again." })));
    }
    let expected = shared.options.api_key.as_deref().filter(|k| !k.is_empty())?;
    match header("x-api-key") {
        Some(given) if given == expected => None,
        Some(_) => Some(answer(403, json!({ "detail": "Invalid API Key" }))),
        None => Some(answer(403, json!({ "detail": "API Key required" }))),
    }
}

/// Reads a JSON object body the way FastAPI does (422 on anything else).
fn json_object(shared: &Shared, body: &Bytes) -> Result<serde_json::Map<String, Value>, Refusal> {
    if body.len() > shared.options.max_request_body_bytes {
        return Err(Refusal::detail(
            413,
            format!(
                "Request body too large: {} bytes (limit {} bytes, MAX_REQUEST_BODY_BYTES)",
                body.len(),
                shared.options.max_request_body_bytes
            ),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Refusal::validation(
            "model_attributes_type",
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            other,
        )),
        Err(e) => Err(Refusal {
            status: 422,
            body: json!({ "detail": [{
                "type": "json_invalid",
                "loc": ["body", e.column()],
                "msg": "JSON decode error",
                "input": {},
                "ctx": { "error": e.to_string() },
            }] }),
            headers: Vec::new(),
        }),
    }
}

/// `text` after pydantic: present, a string, at least one character, then stripped.
fn read_text(value: Option<&Value>, loc: &[&str], input: &Value) -> Result<String, Refusal> {
    match value {
        None => Err(Refusal::validation("missing", loc, "Field required", input.clone())),
        Some(Value::String(text)) if text.is_empty() => Err(Refusal {
            status: 422,
            body: json!({ "detail": [{
                "type": "string_too_short", "loc": loc,
                "msg": "String should have at least 1 character", "input": text, "ctx": { "min_length": 1 },
            }] }),
            headers: Vec::new(),
        }),
        Some(Value::String(text)) if text.trim().is_empty() => Err(Refusal::validation(
            "value_error",
            loc,
            "Value error, text must not be empty or whitespace only",
            Value::String(text.clone()),
        )),
        Some(Value::String(text)) => Ok(text.trim().to_owned()),
        Some(other) => Err(Refusal::validation("string_type", loc, "Input should be a valid string", other.clone())),
    }
}

fn insert_answer(track_id: String, count: usize) -> Response {
    let message = if count == 1 {
        "Text successfully received. Processing will continue in background.".to_owned()
    } else {
        format!("{count} texts successfully received. Processing will continue in background.")
    };
    answer(200, json!({ "status": "success", "message": message, "track_id": track_id }))
}

async fn insert_text(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let result = (|| {
        let map = json_object(&shared, &body)?;
        let input = Value::Object(map.clone());
        let text = read_text(map.get("text"), &["body", "text"], &input)?;
        let name = Store::stored_name(map.get("file_source"), &["body", "file_source"])?;
        shared.store().insert(vec![NewText { text, file_source: name }], Instant::now())
    })();
    match result {
        Ok(track_id) => insert_answer(track_id, 1),
        Err(r) => refusal(r),
    }
}

async fn insert_texts(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let result = (|| {
        let map = json_object(&shared, &body)?;
        let input = Value::Object(map.clone());
        let texts = match map.get("texts") {
            None => {
                return Err(Refusal::validation("missing", &["body", "texts"], "Field required", input));
            }
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(Refusal::validation(
                    "too_short",
                    &["body", "texts"],
                    "List should have at least 1 item after validation, not 0",
                    Value::Array(Vec::new()),
                ));
            }
            Some(Value::Array(items)) => items.clone(),
            Some(other) => {
                return Err(Refusal::validation(
                    "list_type",
                    &["body", "texts"],
                    "Input should be a valid list",
                    other.clone(),
                ));
            }
        };
        let mut stripped = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let index = i.to_string();
            stripped.push(read_text(Some(text), &["body", "texts", &index], &input)?);
        }
        let sources = match map.get("file_sources") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => {
                return Err(Refusal::detail(
                    400,
                    "A valid file_source is required for each text (file_sources is missing)",
                ));
            }
            Some(other) => {
                return Err(Refusal::validation(
                    "list_type",
                    &["body", "file_sources"],
                    "Input should be a valid list",
                    other.clone(),
                ));
            }
        };
        if sources.len() != stripped.len() {
            return Err(Refusal::detail(
                400,
                format!(
                    "file_sources must match texts in length ({} file_sources for {} texts)",
                    sources.len(),
                    stripped.len()
                ),
            ));
        }
        let mut names = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter().enumerate() {
            let index = i.to_string();
            let name = Store::stored_name(Some(source), &["body", "file_sources", &index])?;
            if names.contains(&name) {
                return Err(Refusal::detail(
                    400,
                    format!("file_sources must be unique by file name: '{name}' appears more than once"),
                ));
            }
            names.push(name);
        }
        let count = names.len();
        let items = stripped.into_iter().zip(names).map(|(text, file_source)| NewText { text, file_source }).collect();
        shared.store().insert(items, Instant::now()).map(|track| (track, count))
    })();
    match result {
        Ok((track_id, count)) => insert_answer(track_id, count),
        Err(r) => refusal(r),
    }
}

async fn track_status(State(shared): State<Arc<Shared>>, Path(track_id): Path<String>) -> Response {
    if track_id.trim().is_empty() {
        return answer(400, json!({ "detail": "Track ID cannot be empty" }));
    }
    answer(200, shared.store().track_status(track_id.trim(), Instant::now()))
}

fn page_query(map: &serde_json::Map<String, Value>) -> Result<PageQuery, Refusal> {
    let int = |key: &str, default: i64, min: i64, max: Option<i64>| -> Result<usize, Refusal> {
        let value = match map.get(key) {
            None => return Ok(default as usize),
            Some(v) => v,
        };
        let Some(n) = value.as_i64() else {
            return Err(Refusal::validation(
                "int_parsing",
                &["body", key],
                "Input should be a valid integer",
                value.clone(),
            ));
        };
        if n < min {
            return Err(Refusal {
                status: 422,
                body: json!({ "detail": [{
                    "type": "greater_than_equal", "loc": ["body", key],
                    "msg": format!("Input should be greater than or equal to {min}"), "input": n, "ctx": { "ge": min },
                }] }),
                headers: Vec::new(),
            });
        }
        if let Some(max) = max.filter(|max| n > *max) {
            return Err(Refusal {
                status: 422,
                body: json!({ "detail": [{
                    "type": "less_than_equal", "loc": ["body", key],
                    "msg": format!("Input should be less than or equal to {max}"), "input": n, "ctx": { "le": max },
                }] }),
                headers: Vec::new(),
            });
        }
        Ok(n as usize)
    };
    let page = int("page", 1, 1, None)?;
    let page_size = int("page_size", 50, 10, Some(200))?;
    let enum_error = |loc: &[&str], expected: &str, value: &Value| {
        Refusal::validation("enum", loc, format!("Input should be {expected}"), value.clone())
    };
    let statuses_expected = "'pending', 'parsing', 'analyzing', 'processing', 'processed' or 'failed'";
    let mut statuses = Vec::new();
    match map.get("status_filters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let index = i.to_string();
                match item.as_str().and_then(super::SimDocStatus::parse) {
                    Some(status) => statuses.push(status),
                    None => {
                        return Err(enum_error(&["body", "status_filters", &index], statuses_expected, item));
                    }
                }
            }
        }
        Some(other) => {
            return Err(Refusal::validation(
                "list_type",
                &["body", "status_filters"],
                "Input should be a valid list",
                other.clone(),
            ));
        }
    }
    match map.get("status_filter") {
        None | Some(Value::Null) => {}
        Some(item) => match item.as_str().and_then(super::SimDocStatus::parse) {
            Some(status) => statuses.push(status),
            None => {
                return Err(enum_error(&["body", "status_filter"], statuses_expected, item));
            }
        },
    }
    let sort_field = match map.get("sort_field").map(|v| (v, v.as_str())) {
        None => SortField::UpdatedAt,
        Some((_, Some("created_at"))) => SortField::CreatedAt,
        Some((_, Some("updated_at"))) => SortField::UpdatedAt,
        Some((_, Some("id"))) => SortField::Id,
        Some((_, Some("file_path"))) => SortField::FilePath,
        Some((value, _)) => {
            return Err(Refusal::validation(
                "literal_error",
                &["body", "sort_field"],
                "Input should be 'created_at', 'updated_at', 'id' or 'file_path'",
                value.clone(),
            ));
        }
    };
    let descending = match map.get("sort_direction").map(|v| (v, v.as_str())) {
        None => true,
        Some((_, Some("desc"))) => true,
        Some((_, Some("asc"))) => false,
        Some((value, _)) => {
            return Err(Refusal::validation(
                "literal_error",
                &["body", "sort_direction"],
                "Input should be 'asc' or 'desc'",
                value.clone(),
            ));
        }
    };
    Ok(PageQuery { statuses, page, page_size, sort_field, descending })
}

async fn paginated(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let result = json_object(&shared, &body).and_then(|map| page_query(&map));
    match result {
        Ok(query) => answer(200, shared.store().paginated(&query, Instant::now())),
        Err(r) => refusal(r),
    }
}

async fn status_counts(State(shared): State<Arc<Shared>>) -> Response {
    answer(200, json!({ "status_counts": shared.store().status_counts(Instant::now()) }))
}

async fn pipeline_status(State(shared): State<Arc<Shared>>) -> Response {
    answer(200, shared.store().pipeline_status(Instant::now()))
}

async fn delete_document(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let result = (|| {
        let map = json_object(&shared, &body)?;
        let input = Value::Object(map.clone());
        let ids = match map.get("doc_ids") {
            None => {
                return Err(Refusal::validation("missing", &["body", "doc_ids"], "Field required", input));
            }
            Some(Value::Array(items)) => items.clone(),
            Some(other) => {
                return Err(Refusal::validation(
                    "list_type",
                    &["body", "doc_ids"],
                    "Input should be a valid list",
                    other.clone(),
                ));
            }
        };
        let value_error = |msg: &str| {
            Refusal::validation(
                "value_error",
                &["body", "doc_ids"],
                format!("Value error, {msg}"),
                Value::Array(ids.clone()),
            )
        };
        if ids.is_empty() {
            return Err(value_error("Document IDs list cannot be empty"));
        }
        let mut clean: Vec<String> = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let Some(text) = id.as_str() else {
                let index = i.to_string();
                return Err(Refusal::validation(
                    "string_type",
                    &["body", "doc_ids", &index],
                    "Input should be a valid string",
                    id.clone(),
                ));
            };
            if text.trim().is_empty() {
                return Err(value_error("Document ID cannot be empty"));
            }
            clean.push(text.trim().to_owned());
        }
        let mut unique = clean.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != clean.len() {
            return Err(value_error("Document IDs must be unique"));
        }
        Ok(shared.store().delete(clean, Instant::now()))
    })();
    match result {
        Ok(body) => answer(200, body),
        Err(r) => refusal(r),
    }
}

async fn clear_documents(State(shared): State<Arc<Shared>>) -> Response {
    answer(200, shared.store().clear(Instant::now()))
}

async fn method_not_allowed() -> Response {
    answer(405, json!({ "detail": "Method Not Allowed" }))
}

async fn not_found() -> Response {
    answer(404, json!({ "detail": "Not Found" }))
}

async fn health(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let workspace = &shared.options.workspace;
    if let Some(asked) = headers.get("lightrag-workspace").and_then(|v| v.to_str().ok()).map(str::trim)
        && !asked.is_empty()
        && asked != workspace
    {
        return answer(500, json!({ "detail": format!("Workspace '{asked}' is not initialized") }));
    }
    let busy = shared.store().pipeline_status(Instant::now())["busy"].as_bool().unwrap_or(false);
    answer(
        200,
        json!({
            "status": "healthy",
            "webui_available": false,
            "working_directory": "./rag_storage",
            "input_directory": "./inputs",
            "configuration": {
                "llm_binding": "openai",
                "llm_binding_host": "http://127.0.0.1/v1",
                "llm_model": "lightrag-sim",
                "embedding_binding": "openai",
                "embedding_binding_host": "http://127.0.0.1/v1",
                "embedding_model": "lightrag-sim",
                "kv_storage": "JsonKVStorage",
                "doc_status_storage": "JsonDocStatusStorage",
                "graph_storage": "NetworkXStorage",
                "vector_storage": "NanoVectorDBStorage",
                "enable_llm_cache_for_extract": true,
                "enable_llm_cache": true,
                "workspace": workspace,
                "max_graph_nodes": shared.options.max_graph_nodes,
                "max_parallel_insert": 2,
                "max_async": 4,
            },
            "auth_mode": "disabled",
            "pipeline_busy": busy,
            "keyed_locks": {},
            "core_version": CORE_VERSION,
            "api_version": API_VERSION,
            "webui_title": "",
            "webui_description": "",
        }),
    )
}

async fn auth_status(State(shared): State<Arc<Shared>>) -> Response {
    answer(
        200,
        json!({
            "auth_configured": false,
            "access_token": shared.guest_token,
            "token_type": "bearer",
            "auth_mode": "disabled",
            "message": "Authentication is disabled. Using guest access.",
            "core_version": CORE_VERSION,
            "api_version": API_VERSION,
            "webui_title": "",
            "webui_description": "",
        }),
    )
}

// ------------------------------------------------------------------ control

async fn control_documents(State(shared): State<Arc<Shared>>) -> Response {
    let docs = shared.store().documents(Instant::now());
    Json(docs).into_response()
}

#[derive(Deserialize)]
struct BusyBody {
    busy: bool,
}

async fn control_busy(State(shared): State<Arc<Shared>>, Json(body): Json<BusyBody>) -> Response {
    shared.store().set_busy(body.busy);
    answer(200, json!({ "busy": body.busy }))
}

async fn control_add_fault(State(shared): State<Arc<Shared>>, Json(fault): Json<SimFault>) -> Response {
    shared.add_fault(fault);
    answer(200, json!({ "status": "ok" }))
}

async fn control_clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.clear_faults();
    answer(200, json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct MarkerBody {
    marker: String,
}

async fn control_fail_texts(State(shared): State<Arc<Shared>>, Json(body): Json<MarkerBody>) -> Response {
    shared.store().fail_texts_containing(&body.marker);
    answer(200, json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct SlowEnqueueBody {
    marker: String,
    seconds: f64,
}

async fn control_slow_enqueue(State(shared): State<Arc<Shared>>, Json(body): Json<SlowEnqueueBody>) -> Response {
    let delay = std::time::Duration::try_from_secs_f64(body.seconds.max(0.0)).unwrap_or_default();
    shared.store().slow_enqueue(&body.marker, delay);
    answer(200, json!({ "status": "ok" }))
}

async fn control_stats(State(shared): State<Arc<Shared>>) -> Response {
    let requests: serde_json::Map<String, Value> =
        SimRoute::COUNTED.iter().map(|route| (route.name().to_owned(), json!(shared.request_count(*route)))).collect();
    answer(
        200,
        json!({ "requests": requests, "total": shared.request_count(SimRoute::Any), "max_in_flight": shared.max_in_flight() }),
    )
}
