//! The HTTP client of the Memory API: one `GET /memory/{ctx}` per call, with
//! the retry rules of [`crate::retry`] (429, 5xx, timeouts, network errors and
//! non-JSON 200 answers are retried; 401/403/404 are not).
//!
//! The API key travels only in the `X-API-KEY` header (marked sensitive);
//! errors and log lines name the URL, the status and a body excerpt with the
//! key scrubbed out.

use super::media::{Media, MediaError, MediaKind, MediaLimits};
use super::model::FetchedPage;
use super::parse::{BodyError, parse_body};
use crate::config::{MemoryApiConfig, QueryRange};
use crate::http::{self, shown_url};
use crate::retry::{self, Policy, StatusClass, Transient};
use crate::secrets::Secret;
use reqwest::header::{HeaderMap, HeaderValue};
use std::time::Duration;
use url::Url;

/// Why a list call failed. [`MemoryApiError::is_retryable`] tells a
/// passing problem (try again on a later run) from one that needs a person.
#[derive(Debug, thiserror::Error)]
pub enum MemoryApiError {
    #[error("memory_api.url {url:?} cannot be used as a base URL: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("memory_api.api_key cannot be sent in an HTTP header (it contains characters such as a line break)")]
    InvalidApiKey,

    #[error("cannot build the HTTP client for the Memory API: {0}")]
    Client(String),

    #[error("GET {url}: no complete answer within {timeout_secs} s (memory_api.timeout)")]
    Timeout { url: String, timeout_secs: u64 },

    #[error("GET {url}: {message}")]
    Network { url: String, message: String },

    #[error("GET {url} was refused with HTTP {status}: check memory_api.api_key (body: {body})")]
    Unauthorized { url: String, status: u16, body: String },

    #[error(
        "GET {url} answered HTTP 404: the context id {context_id:?} is unknown to the Memory API \
         (or memory_api.url points to another service) (body: {body})"
    )]
    UnknownContext { url: String, context_id: String, body: String },

    #[error("GET {url} answered HTTP {status} (body: {body})")]
    Http { url: String, status: u16, body: String, retry_after: Option<Duration> },

    #[error("GET {url} answered HTTP {status} but the body is not JSON ({reason}) (body: {body})")]
    GarbageBody { url: String, status: u16, reason: String, body: String },

    #[error("GET {url} answered JSON that is not a memory list: {reason}")]
    InvalidPage { url: String, reason: String },

    #[error(
        "GET {url}: the answer is larger than memory_api.max_response_bytes ({limit} bytes); \
         raise it, or lower the connector's ingestion.query_limit"
    )]
    TooLarge { url: String, limit: u64 },

    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<MemoryApiError>,
    },
}

impl MemoryApiError {
    /// Passing trouble (429, 5xx, timeouts, network, non-JSON answers): the
    /// same call may work later. Still true after the retries gave up, so the
    /// sync engine knows the run failed for a reason that may go away.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Network { .. } | Self::GarbageBody { .. } => true,
            Self::Http { status, .. } => retry::classify_status(*status) == StatusClass::Retryable,
            Self::RetriesExhausted { last, .. } => last.is_retryable(),
            Self::InvalidUrl { .. }
            | Self::InvalidApiKey
            | Self::Client(_)
            | Self::Unauthorized { .. }
            | Self::UnknownContext { .. }
            | Self::InvalidPage { .. }
            | Self::TooLarge { .. } => false,
        }
    }

    /// The HTTP status of the (last) answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. } | Self::Http { status, .. } | Self::GarbageBody { status, .. } => {
                Some(*status)
            }
            Self::UnknownContext { .. } => Some(404),
            Self::InvalidPage { .. } => Some(200),
            Self::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The short "what went wrong" of a retry log line.
    fn outcome(&self) -> String {
        match self {
            Self::Timeout { timeout_secs, .. } => format!("timeout after {timeout_secs} s"),
            Self::Network { message, .. } => message.clone(),
            Self::GarbageBody { status, .. } => format!("HTTP {status} with a body that is not JSON"),
            other => match other.status() {
                Some(status) => format!("HTTP {status}"),
                None => other.to_string(),
            },
        }
    }
}

impl Transient for MemoryApiError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Reads memories from the Memory API. Cheap to clone: clones share one
/// connection pool.
#[derive(Debug, Clone)]
pub struct MemoryApiClient {
    http: reqwest::Client,
    base: Url,
    api_key: Option<Secret>,
    timeout_secs: u64,
    retry: Policy,
    max_response_bytes: u64,
}

impl MemoryApiClient {
    pub fn new(config: &MemoryApiConfig) -> Result<Self, MemoryApiError> {
        let shown = || http::shown_url_text(config.url.trim());
        let base = Url::parse(config.url.trim())
            .map_err(|e| MemoryApiError::InvalidUrl { url: shown(), reason: e.to_string() })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(MemoryApiError::InvalidUrl {
                url: shown(),
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        let api_key = config.api_key.clone().filter(|key| !key.is_empty());
        let mut headers = HeaderMap::new();
        if let Some(key) = &api_key {
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| MemoryApiError::InvalidApiKey)?;
            // Keeps the value out of reqwest's and hyper's debug output.
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        // A zero timeout would fail every request: one second is the floor.
        let timeout_secs = config.timeout.max(1);
        let http = http::client_builder(Duration::from_secs(timeout_secs), base.scheme() == "http")
            .default_headers(headers)
            .build()
            .map_err(|e| MemoryApiError::Client(http::error_chain(&e)))?;
        Ok(Self {
            http,
            base,
            api_key,
            timeout_secs,
            retry: Policy::requests(config.max_retries, config.retry_backoff),
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// For tests: the first retry delay (default [`retry::FIRST_RETRY_DELAY`]).
    pub fn with_first_retry_delay(mut self, delay: Duration) -> Self {
        self.retry = self.retry.with_first_delay(delay);
        self
    }

    /// `GET {url}/memory/{context_id}?limit=&range=`, retried as the config
    /// says. Items that cannot be read are in [`FetchedPage::rejected`].
    pub async fn list(&self, context_id: &str, range: QueryRange, limit: u32) -> Result<FetchedPage, MemoryApiError> {
        let url = self.list_url(context_id, range, limit);
        let shown_url = shown_url(&url);
        let max_attempts = self.retry.retries.saturating_add(1);
        let retried = retry::retrying(
            self.retry,
            || self.attempt(&url, &shown_url, context_id, limit),
            |err: &MemoryApiError, wait, attempt| {
                tracing::warn!(
                    url = %shown_url,
                    outcome = %err.outcome(),
                    attempt,
                    max_attempts,
                    wait_ms = wait.as_millis() as u64,
                    "Memory API request failed, retrying"
                );
            },
        )
        .await;

        let attempts = retried.attempts;
        match retried.result {
            Ok(mut page) => {
                page.attempts = attempts;
                tracing::debug!(
                    url = %shown_url,
                    memories = page.memories.len(),
                    rejected = page.rejected.len(),
                    possibly_truncated = page.possibly_truncated,
                    attempts,
                    "Memory API list answered"
                );
                Ok(page)
            }
            Err(last) if last.is_retryable() => {
                Err(MemoryApiError::RetriesExhausted { attempts, last: Box::new(last) })
            }
            Err(permanent) => Err(permanent),
        }
    }

    fn list_url(&self, context_id: &str, range: QueryRange, limit: u32) -> Url {
        let mut url = self.base.clone();
        // `new` refused cannot-be-a-base URLs, so the segments are there.
        if let Ok(mut segments) = url.path_segments_mut() {
            // `push` percent-encodes: a `/` or `?` in the id stays inside one segment.
            segments.pop_if_empty().push("memory").push(context_id);
        }
        url.query_pairs_mut().clear().append_pair("limit", &limit.to_string()).append_pair("range", range.as_str());
        url
    }

    /// One request, its answer classified.
    async fn attempt(
        &self,
        url: &Url,
        shown_url: &str,
        context_id: &str,
        limit: u32,
    ) -> Result<FetchedPage, MemoryApiError> {
        let response = self.http.get(url.clone()).send().await.map_err(|e| self.transport_error(shown_url, e))?;
        let status = response.status().as_u16();
        let retry_after = http::retry_after(response.headers());
        let body = if retry::classify_status(status) == StatusClass::Success {
            http::read_body(response, self.max_response_bytes).await.map_err(|e| match e {
                http::BodyError::TooLarge { limit } => MemoryApiError::TooLarge { url: shown_url.to_owned(), limit },
                http::BodyError::Transport(e) => self.transport_error(shown_url, e),
            })?
        } else {
            // The status already says what went wrong; the body is only quoted.
            http::read_error_body(response).await
        };

        let url = shown_url.to_owned();
        match (status, retry::classify_status(status)) {
            (_, StatusClass::Success) => parse_body(&body, limit).map_err(|e| match e {
                BodyError::NotJson(reason) => {
                    MemoryApiError::GarbageBody { url: url.clone(), status, reason, body: self.excerpt(&body) }
                }
                BodyError::Shape(reason) => MemoryApiError::InvalidPage { url, reason },
            }),
            (401 | 403, _) => Err(MemoryApiError::Unauthorized { url, status, body: self.excerpt(&body) }),
            (404, _) => Err(MemoryApiError::UnknownContext {
                url,
                context_id: context_id.to_owned(),
                body: self.excerpt(&body),
            }),
            _ => Err(MemoryApiError::Http { url, status, body: self.excerpt(&body), retry_after }),
        }
    }

    /// Downloads the audio or image of a memory (see [`super::media`]).
    pub async fn media(
        &self,
        context_id: &str,
        memory_id: &str,
        kind: MediaKind,
        limits: MediaLimits,
    ) -> Result<Media, MediaError> {
        let url = self.media_location(context_id, memory_id, kind);
        let shown = shown_url(&url);
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                MediaError::Timeout { url: shown.clone(), timeout_secs: limits.timeout.as_secs() }
            } else {
                MediaError::Network { url: shown.clone(), message: http::transport_error(e) }
            }
        };
        let fetch = async {
            let response = self.http.get(url.clone()).timeout(limits.timeout).send().await.map_err(transport)?;
            let status = response.status().as_u16();
            if status == 404 {
                return Err(MediaError::NotFound { url: shown.clone(), kind: kind.segment() });
            }
            if !(200..300).contains(&status) {
                let body = http::read_error_body(response).await;
                return Err(MediaError::Http { url: shown.clone(), status, body: self.excerpt(&body) });
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if !kind.accepts(&content_type) {
                return Err(MediaError::WrongType { url: shown.clone(), content_type, kind: kind.segment() });
            }
            let bytes = http::read_body(response, limits.max_bytes).await.map_err(|e| match e {
                http::BodyError::TooLarge { limit } => MediaError::TooLarge { url: shown.clone(), limit },
                http::BodyError::Transport(e) => transport(e),
            })?;
            let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            Ok(Media { bytes, content_type: essence })
        };
        // The request timeout covers the body too; this one also bounds a slow drip.
        match tokio::time::timeout(limits.timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(MediaError::Timeout { url: shown.clone(), timeout_secs: limits.timeout.as_secs() }),
        }
    }

    /// Where a memory's audio or image is (what [`Self::media`] downloads),
    /// as it may be shown: a password in the base URL is masked, the key is
    /// never in it (it travels as a header).
    pub fn media_url(&self, context_id: &str, memory_id: &str, kind: MediaKind) -> String {
        shown_url(&self.media_location(context_id, memory_id, kind))
    }

    fn media_location(&self, context_id: &str, memory_id: &str, kind: MediaKind) -> Url {
        let mut url = self.base.clone();
        // `new` refused cannot-be-a-base URLs; `push` keeps a `/` in an id inside one segment.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("memory").push(context_id).push(memory_id).push(kind.segment());
        }
        url
    }

    fn transport_error(&self, shown_url: &str, error: reqwest::Error) -> MemoryApiError {
        if error.is_timeout() {
            MemoryApiError::Timeout { url: shown_url.to_owned(), timeout_secs: self.timeout_secs }
        } else {
            MemoryApiError::Network { url: shown_url.to_owned(), message: http::transport_error(error) }
        }
    }

    /// A body as a message quotes it, the key scrubbed out (servers
    /// sometimes echo the request back).
    fn excerpt(&self, body: &[u8]) -> String {
        http::excerpt(body, &self.api_key.iter().collect::<Vec<_>>())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    fn client(url: &str) -> MemoryApiClient {
        MemoryApiClient::new(&MemoryApiConfig { url: url.into(), ..MemoryApiConfig::default() }).unwrap()
    }

    #[test]
    fn the_list_url_encodes_the_context_as_one_segment() {
        let c = client("http://127.0.0.1:8080");
        assert_eq!(
            c.list_url("CTX123", QueryRange::Week, 100).as_str(),
            "http://127.0.0.1:8080/memory/CTX123?limit=100&range=week"
        );
        assert_eq!(
            c.list_url("a/b c?d#é", QueryRange::All, 5).as_str(),
            "http://127.0.0.1:8080/memory/a%2Fb%20c%3Fd%23%C3%A9?limit=5&range=all"
        );
        // A base with a path prefix (and a trailing slash) keeps the prefix.
        let c = client("https://example.org/api/v1/");
        assert_eq!(
            c.list_url("X", QueryRange::Day, 1).as_str(),
            "https://example.org/api/v1/memory/X?limit=1&range=day"
        );
    }

    #[test]
    fn bad_urls_and_keys_are_refused_without_showing_the_key() {
        for url in ["", "not a url", "mailto:someone@example.org", "ftp://example.org", "ftp://u:hunter2@host"] {
            let err =
                MemoryApiClient::new(&MemoryApiConfig { url: url.into(), ..MemoryApiConfig::default() }).unwrap_err();
            assert!(matches!(err, MemoryApiError::InvalidUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains("memory_api.url"));
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err = MemoryApiClient::new(&MemoryApiConfig {
            api_key: Some(Secret::new("sec\nret")),
            ..MemoryApiConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, MemoryApiError::InvalidApiKey));
        assert!(!err.to_string().contains("sec"));
    }

    #[test]
    fn media_urls_encode_each_id_as_one_segment() {
        let c = client("https://user:pw@example.org/api/");
        assert_eq!(
            c.media_url("CTX 1", "a/b", MediaKind::Audio),
            "https://user:***@example.org/api/memory/CTX%201/a%2Fb/audio"
        );
        assert_eq!(c.media_url("C", "42", MediaKind::Image), "https://user:***@example.org/api/memory/C/42/image");
    }

    #[test]
    fn excerpts_are_scrubbed_of_the_key() {
        let c = MemoryApiClient::new(&MemoryApiConfig {
            api_key: Some(Secret::new("k-123")),
            ..MemoryApiConfig::default()
        })
        .unwrap();
        assert_eq!(c.excerpt(b"{\"detail\": \"bad key k-123\"}"), "{\"detail\": \"bad key ***\"}");
    }

    #[test]
    fn retryable_and_status_follow_the_retry_rules() {
        let http = |status| MemoryApiError::Http { url: "u".into(), status, body: String::new(), retry_after: None };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(400).is_retryable());
        assert_eq!(http(502).status(), Some(502));
        let unauthorized = MemoryApiError::Unauthorized { url: "u".into(), status: 403, body: String::new() };
        assert!(!unauthorized.is_retryable());
        assert_eq!(unauthorized.status(), Some(403));
        let exhausted = MemoryApiError::RetriesExhausted { attempts: 4, last: Box::new(http(503)) };
        assert!(exhausted.is_retryable());
        assert_eq!(exhausted.status(), Some(503));
        assert!(MemoryApiError::Timeout { url: "u".into(), timeout_secs: 1 }.is_retryable());
        assert!(!MemoryApiError::InvalidPage { url: "u".into(), reason: String::new() }.is_retryable());
    }
}
