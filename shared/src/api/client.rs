//! The client side of the management API, for `memory-connector trigger`:
//! finds the running service from the config and asks it to start a run.

use super::LaunchOutcome;
use crate::config::ApiConfig;
use crate::ids::ConnectorId;
use std::time::Duration;

/// The largest answer of the service read (its answers are a few hundred bytes).
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no memory-connector service answers at {url} ({detail}); start it with `memory-connector serve`, or run `memory-connector sync` for a one-shot run"
    )]
    NotRunning { url: String, detail: String },
    #[error("the service at {url} answered {status}: {message}")]
    Refused { url: String, status: u16, code: String, message: String },
    #[error("the service at {url} sent an answer that is not understood: {detail}")]
    BadAnswer { url: String, detail: String },
}

impl ClientError {
    /// The connector was already running (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Refused { status: 409, .. })
    }
}

/// The base URL of the service the config describes (`0.0.0.0` and `::`
/// mean "this machine").
pub fn base_url(api: &ApiConfig, port: Option<u16>) -> String {
    let host = match api.host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    format!("http://{host}:{}", port.unwrap_or(api.port))
}

/// `POST /connectors/{id}/trigger` on the running service.
pub async fn trigger(
    api: &ApiConfig,
    base: &str,
    connector: &ConnectorId,
    force: bool,
) -> Result<LaunchOutcome, ClientError> {
    let url = format!("{base}/connectors/{}/trigger{}", connector, if force { "?force=true" } else { "" });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| ClientError::NotRunning { url: url.clone(), detail: e.to_string() })?;
    let mut request = client.post(&url);
    if let Some(key) = api.api_key.as_ref().filter(|k| !k.is_empty()) {
        request = request.header("X-API-Key", key.expose());
    }
    let response = request.send().await.map_err(|e| ClientError::NotRunning {
        url: base.to_owned(),
        detail: if e.is_connect() { "connection refused".into() } else { e.without_url().to_string() },
    })?;
    let status = response.status().as_u16();
    let body = crate::http::read_body(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ClientError::BadAnswer { url: url.clone(), detail: crate::http::error_chain(&e) })?;
    if status == 202 {
        return serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer { url, detail: e.to_string() });
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let code = parsed["error"]["code"].as_str().unwrap_or("").to_owned();
    let message =
        parsed["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| crate::http::excerpt(&body, &[]));
    Err(ClientError::Refused { url, status, code, message })
}

/// `GET /health` of the running service (for container health checks);
/// with the key (when the config has one) it has the details too.
pub async fn health(api: &ApiConfig, base: &str) -> Result<super::Health, ClientError> {
    let url = format!("{base}/health");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ClientError::NotRunning { url: url.clone(), detail: e.to_string() })?;
    let mut request = client.get(&url);
    if let Some(key) = api.api_key.as_ref().filter(|k| !k.is_empty()) {
        request = request.header("X-API-Key", key.expose());
    }
    let response = request.send().await.map_err(|e| ClientError::NotRunning {
        url: base.to_owned(),
        detail: if e.is_connect() { "connection refused".into() } else { e.without_url().to_string() },
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(ClientError::Refused { url, status, code: String::new(), message: "not healthy".into() });
    }
    let body = crate::http::read_body(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ClientError::BadAnswer { url: url.clone(), detail: crate::http::error_chain(&e) })?;
    serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer { url, detail: e.to_string() })
}
