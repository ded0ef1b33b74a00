//! The simulator's state and HTTP routes: the Memory API's list endpoint and
//! the `/_control/*` endpoints (no key needed) that mirror [`super::MemorySim`].

use super::generate::{Rng, generate, generate_malformed, sentence, stable_hash};
use super::hostile::hostile_items;
use super::{Fault, MemorySimOptions};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use connector_core::memory_api::parse_timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// The API's own default page size.
const DEFAULT_LIMIT: usize = 10;

/// One stored item: the raw JSON, its serialised bytes (so a list answer is
/// a concatenation) and the creation time its window is judged by.
#[derive(Debug)]
struct Stored {
    raw: Value,
    json: Vec<u8>,
    /// Unreadable or missing `created_at` counts as `now`: such items are in
    /// every window, and the newest.
    created: DateTime<Utc>,
}

impl Stored {
    fn new(raw: Value, now: DateTime<Utc>) -> Self {
        let created = raw.get("created_at").and_then(Value::as_str).and_then(parse_timestamp).unwrap_or(now);
        let json = serde_json::to_vec(&raw).unwrap_or_default();
        Self { raw, json, created }
    }

    /// An item served exactly as `json` (which need not be JSON, or UTF-8).
    fn from_bytes(json: Vec<u8>, now: DateTime<Utc>) -> Self {
        let raw = serde_json::from_slice(&json).unwrap_or(Value::Null);
        Self { raw, json, created: now }
    }

    fn reserialise(&mut self) {
        self.json = serde_json::to_vec(&self.raw).unwrap_or_default();
    }

    /// The id as the client reads it: a string as is, an integer as decimal.
    fn id(&self) -> Option<String> {
        match self.raw.get("id")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn has_transcript(&self) -> bool {
        self.raw.get("transcript").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty())
    }

    /// Moves `updated_at` five minutes past its previous value (or
    /// `created_at`), written in tidy RFC 3339.
    fn bump_updated_at(&mut self) {
        let previous = ["updated_at", "created_at"]
            .iter()
            .find_map(|key| self.raw.get(*key).and_then(Value::as_str).and_then(parse_timestamp))
            .unwrap_or(self.created);
        let next = previous + ChronoDuration::minutes(5);
        if let Value::Object(fields) = &mut self.raw {
            fields.insert("updated_at".into(), json!(next.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
    }

    fn set_transcript(&mut self, text: String) {
        if let Value::Object(fields) = &mut self.raw {
            fields.insert("transcript".into(), Value::String(text));
        }
        self.bump_updated_at();
        self.reserialise();
    }
}

#[derive(Debug, Default)]
struct Inner {
    contexts: HashMap<String, Vec<Stored>>,
    faults: VecDeque<Fault>,
    list_requests: usize,
    media_requests: usize,
    /// When the first list request arrived (start-up benchmark).
    first_request: Option<std::time::Instant>,
}

#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) now: DateTime<Utc>,
    seed: u64,
    api_key: Option<String>,
    inner: Mutex<Inner>,
}

impl SimState {
    pub(crate) fn new(options: &MemorySimOptions) -> Self {
        let mut inner = Inner::default();
        for (ctx, count) in &options.contexts {
            let mut raw = generate(options.seed, ctx, *count, options.now);
            raw.extend(generate_malformed(options.seed, ctx, options.malformed, options.now));
            let mut stored: Vec<Stored> = raw.into_iter().map(|item| Stored::new(item, options.now)).collect();
            if options.hostile {
                stored.extend(hostile_items().into_iter().map(|item| Stored::from_bytes(item.json, options.now)));
            }
            inner.contexts.insert(ctx.clone(), stored);
        }
        Self {
            now: options.now,
            seed: options.seed,
            api_key: options.api_key.clone().filter(|k| !k.is_empty()),
            inner: Mutex::new(inner),
        }
    }

    /// The lock; a panic elsewhere while holding it leaves data that is still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn add_raw(&self, ctx: &str, items: Vec<Value>) -> usize {
        let now = self.now;
        let mut inner = self.lock();
        let stored = inner.contexts.entry(ctx.to_owned()).or_default();
        stored.extend(items.into_iter().map(|item| Stored::new(item, now)));
        stored.len()
    }

    fn has_context(&self, ctx: &str) -> bool {
        self.lock().contexts.contains_key(ctx)
    }

    pub(crate) fn fill_transcripts(&self, ctx: &str, ids: Option<&[String]>) -> usize {
        let seed = self.seed;
        let mut inner = self.lock();
        let Some(items) = inner.contexts.get_mut(ctx) else { return 0 };
        let wanted: Option<HashSet<&str>> = ids.map(|ids| ids.iter().map(String::as_str).collect());
        let mut filled = 0;
        for item in items.iter_mut() {
            let Some(id) = item.id() else { continue };
            if item.has_transcript() || wanted.as_ref().is_some_and(|wanted| !wanted.contains(id.as_str())) {
                continue;
            }
            let mut rng = Rng::derive(&[seed, stable_hash(ctx), stable_hash(&id), 0x6669_6c6c]);
            item.set_transcript(format!("Transcribed later: {}", sentence(&mut rng)));
            filled += 1;
        }
        filled
    }

    pub(crate) fn edit_transcripts(&self, ctx: &str, ids: &[String], suffix: &str) -> usize {
        let mut inner = self.lock();
        let Some(items) = inner.contexts.get_mut(ctx) else { return 0 };
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut edited = 0;
        for item in items.iter_mut() {
            if !item.id().is_some_and(|id| wanted.contains(id.as_str())) {
                continue;
            }
            let current = item.raw.get("transcript").and_then(Value::as_str).unwrap_or_default();
            let text = format!("{current}{suffix}");
            item.set_transcript(text);
            edited += 1;
        }
        edited
    }

    pub(crate) fn inject(&self, fault: Fault) -> usize {
        let mut inner = self.lock();
        if fault.times > 0 {
            inner.faults.push_back(fault);
        }
        inner.faults.iter().map(|f| f.times).sum()
    }

    pub(crate) fn clear_faults(&self) -> usize {
        let mut inner = self.lock();
        let cleared = inner.faults.iter().map(|f| f.times).sum();
        inner.faults.clear();
        cleared
    }

    pub(crate) fn list_requests(&self) -> usize {
        self.lock().list_requests
    }

    pub(crate) fn media_requests(&self) -> usize {
        self.lock().media_requests
    }

    /// The bytes and content type of a memory's audio or image; `None` when
    /// the memory is unknown or its flag (`true` or `1`) is not set.
    fn media(&self, ctx: &str, id: &str, kind: &str) -> Option<(&'static str, Vec<u8>)> {
        let mut inner = self.lock();
        inner.media_requests += 1;
        let item = inner.contexts.get(ctx)?.iter().find(|item| item.id().as_deref() == Some(id))?;
        let flag = item.raw.get(kind).is_some_and(|v| v.as_bool() == Some(true) || v.as_i64() == Some(1));
        if !flag {
            return None;
        }
        let seed = stable_hash(id) ^ self.seed;
        match kind {
            "audio" => Some(("audio/wav", super::media::wav(seed))),
            _ => Some(("image/png", super::media::png(seed))),
        }
    }

    pub(crate) fn first_request_at(&self) -> Option<std::time::Instant> {
        self.lock().first_request
    }

    pub(crate) fn items(&self, ctx: &str) -> Vec<Value> {
        self.lock().contexts.get(ctx).map(|items| items.iter().map(|s| s.raw.clone()).collect()).unwrap_or_default()
    }

    /// Counts a list request and takes the fault it should suffer, if any.
    fn begin_list_request(&self) -> (usize, Option<Fault>) {
        let mut inner = self.lock();
        inner.list_requests += 1;
        inner.first_request.get_or_insert_with(std::time::Instant::now);
        let number = inner.list_requests;
        let fault = match inner.faults.front_mut() {
            Some(front) if front.times > 1 => {
                front.times -= 1;
                Some(front.clone())
            }
            Some(_) => inner.faults.pop_front(),
            None => None,
        };
        (number, fault)
    }

    /// The answer body for a list request; `None` for an unknown context.
    /// The newest `limit` items created after `since`, in a shuffled order
    /// (the API promises none), `count` left out of some answers.
    fn list_body(&self, ctx: &str, limit: usize, since: Option<DateTime<Utc>>, request: usize) -> Option<Vec<u8>> {
        let inner = self.lock();
        let items = inner.contexts.get(ctx)?;
        let mut chosen: Vec<usize> =
            (0..items.len()).filter(|&i| since.is_none_or(|since| items[i].created >= since)).collect();
        chosen.sort_by(|&a, &b| items[b].created.cmp(&items[a].created).then(a.cmp(&b)));
        chosen.truncate(limit);
        let mut rng = Rng::derive(&[self.seed, stable_hash(ctx), request as u64]);
        rng.shuffle(&mut chosen);

        let size: usize = chosen.iter().map(|&i| items[i].json.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 64);
        body.extend_from_slice(b"{\"memories\":[");
        for (n, &i) in chosen.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&items[i].json);
        }
        body.push(b']');
        // Some deployments leave `count` out.
        if !rng.chance(25) {
            body.extend_from_slice(format!(",\"count\":{}", chosen.len()).as_bytes());
        }
        body.push(b'}');
        Some(body)
    }

    fn stats(&self) -> Value {
        let inner = self.lock();
        let contexts: serde_json::Map<String, Value> =
            inner.contexts.iter().map(|(ctx, items)| (ctx.clone(), json!(items.len()))).collect();
        json!({
            "list_requests": inner.list_requests,
            "media_requests": inner.media_requests,
            "faults_queued": inner.faults.iter().map(|f| f.times).sum::<usize>(),
            "contexts": contexts,
            "now": self.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
    }
}

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/memory/{ctx}", get(list))
        .route("/memory/{ctx}/{id}/audio", get(audio))
        .route("/memory/{ctx}/{id}/image", get(image))
        .route("/_control/memories", post(control_add))
        .route("/_control/memories/{ctx}", get(control_items))
        .route("/_control/fill_transcripts", post(control_fill))
        .route("/_control/edit_transcripts", post(control_edit))
        .route("/_control/faults", post(control_inject).delete(control_clear))
        .route("/_control/stats", get(control_stats))
        .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(state)
}

/// An error answer the way a FastAPI service gives it.
fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "detail": message }))).into_response()
}

async fn list(
    State(state): State<Arc<SimState>>,
    Path(ctx): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (request, fault) = state.begin_list_request();
    if let Some(fault) = fault {
        if !fault.delay.is_zero() {
            tokio::time::sleep(fault.delay).await;
        }
        if !fault.answers_normally() {
            return fault_response(&fault);
        }
    }

    if let Some(key) = &state.api_key {
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if given != Some(key.as_str()) {
            return detail(StatusCode::UNAUTHORIZED, "Invalid or missing API key");
        }
    }

    let limit = match params.get("limit").map(|v| v.trim().parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) => limit,
        Some(Err(_)) => return detail(StatusCode::UNPROCESSABLE_ENTITY, "limit must be a non-negative integer"),
    };
    let days = match params.get("range").map(String::as_str) {
        None | Some("week") => Some(7),
        Some("day") => Some(1),
        Some("month") => Some(30),
        Some("all") => None,
        Some(_) => return detail(StatusCode::UNPROCESSABLE_ENTITY, "range must be one of day, week, month, all"),
    };
    let since = days.map(|days| state.now - ChronoDuration::days(days));

    match state.list_body(&ctx, limit, since, request) {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => detail(StatusCode::NOT_FOUND, "Context not found"),
    }
}

async fn audio(state: State<Arc<SimState>>, path: Path<(String, String)>, headers: HeaderMap) -> Response {
    media(state, path, headers, "audio").await
}

async fn image(state: State<Arc<SimState>>, path: Path<(String, String)>, headers: HeaderMap) -> Response {
    media(state, path, headers, "image").await
}

async fn media(
    State(state): State<Arc<SimState>>,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    kind: &str,
) -> Response {
    if let Some(key) = &state.api_key {
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if given != Some(key.as_str()) {
            return detail(StatusCode::UNAUTHORIZED, "Invalid or missing API key");
        }
    }
    match state.media(&ctx, &id, kind) {
        Some((content_type, bytes)) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        None => detail(StatusCode::NOT_FOUND, &format!("No {kind} for this memory")),
    }
}

fn fault_response(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let looks_json = fault.body.trim_start().starts_with(['{', '[']);
    let content_type = if looks_json { "application/json" } else { "text/html; charset=utf-8" };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], fault.body.clone()).into_response();
    if let Some(value) = fault.retry_after.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[derive(Deserialize)]
struct AddItems {
    ctx: String,
    items: Vec<Value>,
}

async fn control_add(State(state): State<Arc<SimState>>, Json(request): Json<AddItems>) -> Response {
    let added = request.items.len();
    let total = state.add_raw(&request.ctx, request.items);
    Json(json!({ "added": added, "total": total })).into_response()
}

async fn control_items(State(state): State<Arc<SimState>>, Path(ctx): Path<String>) -> Response {
    if !state.has_context(&ctx) {
        return detail(StatusCode::NOT_FOUND, "Context not found");
    }
    Json(Value::Array(state.items(&ctx))).into_response()
}

#[derive(Deserialize)]
struct FillTranscripts {
    ctx: String,
    ids: Option<Vec<String>>,
}

async fn control_fill(State(state): State<Arc<SimState>>, Json(request): Json<FillTranscripts>) -> Response {
    if !state.has_context(&request.ctx) {
        return detail(StatusCode::NOT_FOUND, "Context not found");
    }
    let filled = state.fill_transcripts(&request.ctx, request.ids.as_deref());
    Json(json!({ "filled": filled })).into_response()
}

#[derive(Deserialize)]
struct EditTranscripts {
    ctx: String,
    ids: Vec<String>,
    suffix: String,
}

async fn control_edit(State(state): State<Arc<SimState>>, Json(request): Json<EditTranscripts>) -> Response {
    if !state.has_context(&request.ctx) {
        return detail(StatusCode::NOT_FOUND, "Context not found");
    }
    let edited = state.edit_transcripts(&request.ctx, &request.ids, &request.suffix);
    Json(json!({ "edited": edited })).into_response()
}

async fn control_inject(State(state): State<Arc<SimState>>, Json(fault): Json<Fault>) -> Response {
    let queued = state.inject(fault);
    Json(json!({ "queued": queued })).into_response()
}

async fn control_clear(State(state): State<Arc<SimState>>) -> Response {
    let cleared = state.clear_faults();
    Json(json!({ "cleared": cleared })).into_response()
}

async fn control_stats(State(state): State<Arc<SimState>>) -> Response {
    Json(state.stats()).into_response()
}
