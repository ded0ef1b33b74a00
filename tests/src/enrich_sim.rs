//! Fakes of the enrichment services, speaking their APIs on one loopback
//! port: OpenAI's `POST /v1/audio/transcriptions` (multipart) and
//! `POST /v1/chat/completions` (image input), and Nominatim's
//! `GET /reverse?format=jsonv2&lat=&lon=`. Each counts its calls and can be
//! switched off (it then answers 503), so tests see how often the connector
//! calls a service and how it copes when one is down.
//!
//! Answers are deterministic functions of the request (the audio bytes, the
//! image, the coordinates), so documents can be compared across runs.

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// One of the faked services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Transcription,
    Vision,
    Geocoding,
}

#[derive(Debug, Default)]
struct Switch {
    calls: AtomicUsize,
    down: AtomicBool,
}

#[derive(Debug, Default)]
struct FakeState {
    api_key: Option<String>,
    transcription: Switch,
    vision: Switch,
    geocoding: Switch,
    user_agents: Mutex<Vec<String>>,
    problems: Mutex<Vec<String>>,
}

impl FakeState {
    fn switch(&self, service: Service) -> &Switch {
        match service {
            Service::Transcription => &self.transcription,
            Service::Vision => &self.vision,
            Service::Geocoding => &self.geocoding,
        }
    }

    fn problem(&self, text: String) -> Response {
        self.problems.lock().unwrap_or_else(|p| p.into_inner()).push(text.clone());
        (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": text}}))).into_response()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        match &self.api_key {
            None => true,
            Some(key) => {
                headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {key}"))
            }
        }
    }
}

/// The running fakes. Dropping it stops the server.
#[derive(Debug)]
pub struct EnrichSim {
    addr: SocketAddr,
    state: Arc<FakeState>,
    task: JoinHandle<()>,
}

impl EnrichSim {
    /// Serves on 127.0.0.1 at a port chosen by the system. With `api_key`,
    /// the OpenAI routes need `Authorization: Bearer <key>` (401 otherwise).
    pub async fn start(api_key: Option<&str>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("enrich-sim: cannot listen")?;
        let addr = listener.local_addr().context("enrich-sim: no local address")?;
        let state = Arc::new(FakeState { api_key: api_key.map(str::to_owned), ..Default::default() });
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe))
            .route("/v1/chat/completions", post(complete))
            .route("/reverse", get(reverse))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "enrich-sim stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The value for `enrichment.transcription.url` and `enrichment.vision.url`.
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The value for `enrichment.geocoding.url`.
    pub fn nominatim_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `enrichment:` section of a config (for `ConfigSpec::extra_yaml`)
    /// that points every service at these fakes, with the OpenAI key read
    /// from `${OPENAI_API_KEY}`.
    pub fn config_section(&self) -> String {
        format!(
            r#"
enrichment:
  transcription:
    url: "{openai}"
    model: "whisper-1"
    api_key: "${{OPENAI_API_KEY}}"
  vision:
    url: "{openai}"
    api_key: "${{OPENAI_API_KEY}}"
  geocoding:
    url: "{nominatim}"
    user_agent: "memory-connector-tests/1.0 (contact: tests@example.org)"
    requests_per_second: 20
"#,
            openai = self.openai_url(),
            nominatim = self.nominatim_url()
        )
    }

    /// Requests that reached the service (those answered 503 while it was down included).
    pub fn calls(&self, service: Service) -> usize {
        self.state.switch(service).calls.load(Ordering::SeqCst)
    }

    /// Down: every request is answered 503.
    pub fn set_down(&self, service: Service, down: bool) {
        self.state.switch(service).down.store(down, Ordering::SeqCst);
    }

    /// The User-Agent headers the geocoder saw.
    pub fn geocoding_user_agents(&self) -> Vec<String> {
        self.state.user_agents.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Malformed requests the fakes refused (should stay empty).
    pub fn problems(&self) -> Vec<String> {
        self.state.problems.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The text the fake transcriber gives for `audio`.
    pub fn transcript_for(audio: &[u8]) -> String {
        format!("Automatic transcript {:08x}: we walked along the river and talked about #holidays", fingerprint(audio))
    }

    /// The description the fake vision model gives for `image`.
    pub fn description_for(image: &[u8]) -> String {
        format!("A small square picture, colour code {:08x}, on a plain background.", fingerprint(image))
    }
}

impl Drop for EnrichSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// FNV-1a, 32 bits: a stable label for bytes.
fn fingerprint(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"message": "simulated outage"}}))).into_response()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "Incorrect API key provided"}}))).into_response()
}

/// Checks the multipart form (a `file` part with a file name, a `model`
/// part) and answers `{"text": ...}` derived from the file bytes.
async fn transcribe(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: Bytes) -> Response {
    let switch = &state.transcription;
    switch.calls.fetch_add(1, Ordering::SeqCst);
    if switch.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") else {
        return state.problem(format!("transcription: content type {content_type:?} is not multipart/form-data"));
    };
    let parts = split_multipart(&body, boundary.trim_matches('"'));
    let Some((file_headers, file)) = parts.iter().find(|(h, _)| h.contains("name=\"file\"")) else {
        return state.problem("transcription: no `file` part".into());
    };
    if !file_headers.contains("filename=\"") {
        return state.problem("transcription: the file part has no file name".into());
    }
    let model =
        parts.iter().find(|(h, _)| h.contains("name=\"model\"")).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    if model.as_deref().is_none_or(str::is_empty) {
        return state.problem("transcription: no `model` part".into());
    }
    if !file.starts_with(b"RIFF") && !file.starts_with(b"OggS") {
        return state.problem(format!("transcription: the file is not WAV/OGG ({} bytes)", file.len()));
    }
    Json(json!({ "text": EnrichSim::transcript_for(file) })).into_response()
}

/// The parts of a multipart body: (headers text, content).
fn split_multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(end) = find(rest, delimiter.as_bytes()) else {
            break;
        };
        let part = &rest[..end];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(split) = find(part, b"\r\n\r\n") {
            parts.push((String::from_utf8_lossy(&part[..split]).into_owned(), part[split + 4..].to_vec()));
        }
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks for a user message with an `image_url` data URL and answers a
/// chat completion describing the decoded image.
async fn complete(State(state): State<Arc<FakeState>>, headers: HeaderMap, Json(request): Json<Value>) -> Response {
    let switch = &state.vision;
    switch.calls.fetch_add(1, Ordering::SeqCst);
    if switch.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    if !state.authorized(&headers) {
        return unauthorized();
    }
    if request.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
        return state.problem("chat: no model".into());
    }
    let url = request
        .pointer("/messages/0/content")
        .and_then(Value::as_array)
        .and_then(|parts| parts.iter().find_map(|p| p.pointer("/image_url/url").and_then(Value::as_str)));
    let Some(url) = url else {
        return state.problem("chat: no image_url in the first message".into());
    };
    let Some((_, data)) = url.strip_prefix("data:image/").and_then(|rest| rest.split_once(";base64,")) else {
        return state.problem("chat: the image is not a base64 data URL".into());
    };
    let Ok(image) = base64::engine::general_purpose::STANDARD.decode(data) else {
        return state.problem("chat: the base64 does not decode".into());
    };
    Json(json!({
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": EnrichSim::description_for(&image)}, "finish_reason": "stop"}]
    }))
    .into_response()
}

/// Names places near Berlin "Berlin, Mitte, Germany"; others by their
/// coordinates; the sea (|lat| < 1 and |lon| < 1) is "Unable to geocode".
async fn reverse(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let switch = &state.geocoding;
    switch.calls.fetch_add(1, Ordering::SeqCst);
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    state.user_agents.lock().unwrap_or_else(|p| p.into_inner()).push(agent);
    if switch.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    if params.get("format").map(String::as_str) != Some("jsonv2") {
        return state.problem("reverse: format is not jsonv2".into());
    }
    let coordinate = |name: &str| params.get(name).and_then(|v| v.parse::<f64>().ok());
    let (Some(lat), Some(lon)) = (coordinate("lat"), coordinate("lon")) else {
        return state.problem("reverse: lat/lon missing".into());
    };
    if lat.abs() < 1.0 && lon.abs() < 1.0 {
        return Json(json!({"error": "Unable to geocode"})).into_response();
    }
    let address = if (52.3..52.7).contains(&lat) && (13.1..13.7).contains(&lon) {
        json!({"road": "Unter den Linden", "suburb": "Mitte", "city": "Berlin", "country": "Germany", "country_code": "de"})
    } else {
        json!({"town": format!("Town {lat:.1}/{lon:.1}"), "country": "Simland"})
    };
    Json(json!({"place_id": 1, "lat": lat.to_string(), "lon": lon.to_string(), "display_name": "somewhere", "address": address}))
        .into_response()
}
