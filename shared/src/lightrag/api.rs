//! The `api` sink: documents go to a LightRAG server over HTTP.
//!
//! Owns the conversation with LightRAG's document routes: `POST
//! /documents/text` to insert, `DELETE /documents/delete_document` then a
//! re-insert under the same `file_source` to replace (LightRAG has no
//! update), and the reading of every answer into an [`InsertOutcome`],
//! [`ReplaceOutcome`] or a classified [`SinkError`]. Request retries (429,
//! 5xx, timeouts, network errors, "pipeline is clearing or deleting") follow
//! the rules of [`crate::retry`]; what is left after them is `Transient`.
//!
//! The API key goes into the `X-API-Key` header and nowhere else: error
//! messages carry the URL (without user-info password), the status and a
//! body excerpt with the key scrubbed out.

use super::{DocumentSink, InsertOutcome, ReplaceOutcome, SinkError, SinkErrorKind, doc_id};
use crate::config::LightragApiConfig;
use crate::ids::TrackId;
use crate::retry::{self, StatusClass};
use crate::secrets::{Secret, scrub};
use crate::transform::Document;
use async_trait::async_trait;
use backon::Retryable;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const INSERT_PATH: &str = "/documents/text";
const DELETE_PATH: &str = "/documents/delete_document";
const HEALTH_PATH: &str = "/health";

/// Attempts after the first one for a retryable answer.
const MAX_RETRIES: u32 = 3;
/// Each retry waits this many times longer than the previous one.
const RETRY_MULTIPLIER: f64 = 2.0;

/// How long [`ApiSink::replace`] waits for LightRAG to finish a deletion
/// before it gives the update back to a later run.
pub const DEFAULT_REPLACE_WAIT: Duration = Duration::from_secs(60);
/// The first pause between two re-insert attempts while a deletion runs;
/// it doubles up to [`MAX_POLL_DELAY`]. Deletions of one small document
/// take well under a second on LightRAG, so start short.
const FIRST_POLL_DELAY: Duration = Duration::from_millis(100);
const MAX_POLL_DELAY: Duration = Duration::from_secs(2);

/// How much of an answer's body an error message quotes.
const EXCERPT_BYTES: usize = 200;

/// The LightRAG detail of a 409 that means "this name is stored".
const ALREADY_CONTAINS: &str = "already contains";

/// Talks to one LightRAG server through one pooled HTTP client.
#[derive(Debug)]
pub struct ApiSink {
    client: reqwest::Client,
    /// The configured URL without a trailing `/`; requests go to `base + path`.
    base: String,
    /// `base` with any user-info password removed, for messages.
    shown: String,
    api_key: Option<Secret>,
    timeout: Duration,
    first_retry_delay: Duration,
    replace_wait: Duration,
}

/// What `GET /health` says about the server (every field optional: older
/// servers answer less).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    pub status: Option<String>,
    pub core_version: Option<String>,
    pub api_version: Option<String>,
    /// The workspace the server process is fixed to (`configuration.workspace`).
    pub workspace: Option<String>,
    pub pipeline_busy: Option<bool>,
}

impl ApiSink {
    pub fn new(config: &LightragApiConfig) -> Result<Self, SinkError> {
        let trimmed = config.url.trim().trim_end_matches('/');
        let parsed = url::Url::parse(trimmed).map_err(|e| {
            SinkError::fatal(format!(
                "lightrag.api.url {:?} is not a valid URL: {e}",
                redact_url_text(trimmed)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SinkError::fatal(format!(
                "lightrag.api.url {:?} must start with http:// or https://",
                redact_url_text(trimmed)
            )));
        }
        let mut shown_url = parsed.clone();
        if shown_url.password().is_some() {
            // Infallible for http(s) URLs, which have a host.
            let _ = shown_url.set_password(Some(crate::secrets::REDACTED));
        }
        let shown = shown_url.as_str().trim_end_matches('/').to_owned();
        let timeout = Duration::from_secs(config.timeout.max(1));
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("memory-connector/", env!("CARGO_PKG_VERSION")));
        if parsed.scheme() == "http" {
            // Plain HTTP needs no trust store (loading it costs ~10 ms of start-up).
            builder = builder.tls_certs_only(std::iter::empty::<reqwest::Certificate>());
        }
        let client = builder
            .build()
            .map_err(|e| {
                SinkError::fatal(format!(
                    "cannot build the HTTP client for LightRAG at {shown}: {e}"
                ))
            })?;
        Ok(Self {
            client,
            base: trimmed.to_owned(),
            shown,
            api_key: config.api_key.clone().filter(|key| !key.is_empty()),
            timeout,
            first_retry_delay: retry::FIRST_RETRY_DELAY,
            replace_wait: DEFAULT_REPLACE_WAIT,
        })
    }

    /// The first retry's delay (tests make it short).
    pub fn with_first_retry_delay(mut self, delay: Duration) -> Self {
        self.first_retry_delay = delay;
        self
    }

    /// How long `replace` waits for LightRAG to finish deleting the old document.
    pub fn with_replace_wait(mut self, wait: Duration) -> Self {
        self.replace_wait = wait;
        self
    }

    /// `GET /health`: versions, workspace and pipeline state, for a doctor
    /// command or a start-up check (the workspace is fixed per server
    /// process; compare it with `lightrag.api.workspace`).
    pub async fn server_info(&self) -> Result<ServerInfo, SinkError> {
        let answer = self
            .call(Method::GET, HEALTH_PATH, None, BusyConflict::Retry)
            .await?;
        let body = answer.json().ok_or_else(|| {
            SinkError::transient(format!(
                "GET {}{HEALTH_PATH} answered {} with something that is not LightRAG's health JSON: {}",
                self.shown,
                answer.status,
                answer.excerpt(self.secrets())
            ))
        })?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        Ok(ServerInfo {
            status: text(body.get("status")),
            core_version: text(body.get("core_version")),
            api_version: text(body.get("api_version")),
            workspace: text(body.pointer("/configuration/workspace")),
            pipeline_busy: body.get("pipeline_busy").and_then(Value::as_bool),
        })
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.api_key.iter().collect()
    }

    fn backoff(&self) -> backon::ExponentialBuilder {
        retry::request_backoff(MAX_RETRIES, RETRY_MULTIPLIER).with_min_delay(self.first_retry_delay)
    }

    /// Sends one request, retrying what is worth retrying. Returns the answer
    /// when it is a success or a 409 the caller must read; every other
    /// answer becomes a classified error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        busy_conflict: BusyConflict,
    ) -> Result<Answer, SinkError> {
        let attempts = AtomicU32::new(0);
        let request = Request {
            method: &method,
            path,
            body,
            busy_conflict,
        };
        let (attempts_ref, this, request_ref) = (&attempts, self, &request);
        let result = (move || async move {
            attempts_ref.fetch_add(1, Ordering::Relaxed);
            this.attempt(request_ref).await
        })
        .retry(self.backoff())
        .sleep(tokio::time::sleep)
        .when(|failure: &Failure| failure.retryable)
        .adjust(|failure: &Failure, delay| retry::wait_before_retry(delay, failure.retry_after))
        .notify(|failure: &Failure, delay| {
            tracing::debug!(
                error = %failure.message,
                delay_ms = delay.as_millis() as u64,
                "LightRAG request failed; retrying"
            );
        })
        .await;
        result.map_err(|failure| {
            let message = if failure.retryable {
                format!(
                    "{} (gave up after {} attempts)",
                    failure.message,
                    attempts.load(Ordering::Relaxed)
                )
            } else {
                failure.message
            };
            SinkError {
                kind: failure.kind,
                message,
            }
        })
    }

    async fn attempt(&self, request: &Request<'_>) -> Result<Answer, Failure> {
        let url = format!("{}{}", self.base, request.path);
        let shown_url = format!("{}{}", self.shown, request.path);
        let what = format!("{} {shown_url}", request.method);
        let mut builder = self.client.request(request.method.clone(), &url);
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        if let Some(key) = &self.api_key {
            builder = builder.header("X-API-Key", key.expose());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| self.network_failure(&what, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry::parse_retry_after(value, chrono::Utc::now()));
        let body = response
            .bytes()
            .await
            .map_err(|e| self.network_failure(&what, e))?;
        let answer = Answer {
            status,
            body: body.to_vec(),
        };
        let excerpt = answer.excerpt(self.secrets());
        let answered = format!("{what} answered {}: {excerpt}", status_text(status));

        match retry::classify_status(status.as_u16()) {
            StatusClass::Success => Ok(answer),
            StatusClass::Retryable => Err(Failure {
                retryable: true,
                retry_after,
                kind: SinkErrorKind::Transient,
                message: answered,
            }),
            StatusClass::Permanent => match status.as_u16() {
                409 if answer
                    .detail()
                    .is_some_and(|d| d.contains(ALREADY_CONTAINS)) =>
                {
                    Ok(answer)
                }
                // Any other 409 on the document routes is a pipeline state
                // ("clearing or deleting", "scan is classifying files", ...)
                // that passes by itself.
                409 => match request.busy_conflict {
                    BusyConflict::Retry => Err(Failure {
                        retryable: true,
                        retry_after,
                        kind: SinkErrorKind::Transient,
                        message: format!("LightRAG's pipeline is busy: {answered}"),
                    }),
                    BusyConflict::Return => Ok(answer),
                },
                401 | 403 => {
                    let detail = answer.detail().unwrap_or_default();
                    let hint = if status.as_u16() == 401 {
                        "; check lightrag.api.api_key (a 401 means the server wants a login token: give it LIGHTRAG_API_KEY and set that as lightrag.api.api_key)"
                    } else {
                        "; check lightrag.api.api_key"
                    };
                    Err(Failure::permanent(
                        SinkErrorKind::Fatal,
                        format!(
                            "LightRAG at {} refused the request: {} {:?}{hint} ({what}, body: {excerpt})",
                            self.shown,
                            status.as_u16(),
                            scrub(&detail, &self.secrets()),
                        ),
                    ))
                }
                404 | 405 => Err(Failure::permanent(
                    SinkErrorKind::Fatal,
                    format!(
                        "{answered}; is lightrag.api.url the address of a LightRAG 1.5 server?"
                    ),
                )),
                _ => Err(Failure::permanent(
                    SinkErrorKind::Rejected,
                    format!("LightRAG rejected the document: {answered}"),
                )),
            },
        }
    }

    fn network_failure(&self, what: &str, error: reqwest::Error) -> Failure {
        if error.is_builder() {
            return Failure::permanent(
                SinkErrorKind::Fatal,
                format!("{what}: cannot build the request: {}", chain(error)),
            );
        }
        let message = if error.is_timeout() {
            format!(
                "{what} timed out after {} s (lightrag.api.timeout)",
                self.timeout.as_secs()
            )
        } else {
            format!("{what} failed: {}", chain(error))
        };
        Failure {
            retryable: true,
            retry_after: None,
            kind: SinkErrorKind::Transient,
            message,
        }
    }

    /// Reads the answer of `POST /documents/text`.
    fn read_insert(&self, answer: &Answer) -> Result<InsertReading, SinkError> {
        let what = format!("POST {}{INSERT_PATH}", self.shown);
        if answer.status == StatusCode::CONFLICT {
            let detail = answer.detail().unwrap_or_default();
            return Ok(if detail.contains(ALREADY_CONTAINS) {
                if detail.starts_with("Input directory") {
                    // A leftover file in LightRAG's INPUT_DIR, not a stored record.
                    return Err(SinkError::rejected(format!(
                        "{what} answered 409: {}; remove that file from LightRAG's input folder",
                        scrub(&detail, &self.secrets())
                    )));
                }
                InsertReading::AlreadyStored {
                    status: stored_status(&detail),
                }
            } else {
                InsertReading::Busy {
                    message: format!("{what} answered 409: {}", scrub(&detail, &self.secrets())),
                }
            });
        }
        let body = answer.json().ok_or_else(|| {
            SinkError::transient(format!(
                "{what} answered {} with something that is not LightRAG's insert answer: {}",
                status_text(answer.status),
                answer.excerpt(self.secrets())
            ))
        })?;
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match status {
            // Servers before ~1.4 answered a stored document this way.
            "duplicated" => Ok(InsertReading::AlreadyStored { status: None }),
            "failure" => Err(SinkError::rejected(format!(
                "LightRAG rejected the document: {what} answered {} with status \"failure\": {}",
                status_text(answer.status),
                answer.excerpt(self.secrets())
            ))),
            _ => Ok(InsertReading::Accepted {
                track_id: body
                    .get("track_id")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(TrackId::from),
            }),
        }
    }
}

#[async_trait]
impl DocumentSink for ApiSink {
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError> {
        let body = json!({ "text": doc.text, "file_source": doc.file_source });
        let answer = self
            .call(Method::POST, INSERT_PATH, Some(&body), BusyConflict::Retry)
            .await?;
        match self.read_insert(&answer)? {
            InsertReading::Accepted { track_id } => Ok(InsertOutcome::Accepted { track_id }),
            InsertReading::AlreadyStored { status } => Ok(InsertOutcome::AlreadyStored { status }),
            // Only reachable if `call` handed a busy 409 back, which it does not with `Retry`.
            InsertReading::Busy { message } => Err(SinkError::transient(message)),
        }
    }

    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        let id = doc_id(&doc.file_source);
        let delete =
            json!({ "doc_ids": [id.as_str()], "delete_file": false, "delete_llm_cache": false });
        let what = format!("DELETE {}{DELETE_PATH}", self.shown);
        let answer = self
            .call(
                Method::DELETE,
                DELETE_PATH,
                Some(&delete),
                BusyConflict::Return,
            )
            .await?;
        if answer.status == StatusCode::CONFLICT {
            return Ok(ReplaceOutcome::Deferred {
                reason: format!(
                    "{what} answered 409 ({}); deleting {id} is retried on a later run",
                    scrub(&answer.detail().unwrap_or_default(), &self.secrets())
                ),
            });
        }
        let body = answer.json().unwrap_or(Value::Null);
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match status {
            "deletion_started" | "success" => {}
            "busy" => {
                return Ok(ReplaceOutcome::Deferred {
                    reason: format!(
                        "LightRAG's pipeline is busy, so deleting {id} was refused ({message}); the update is retried on a later run"
                    ),
                });
            }
            "not_allowed" => {
                return Err(SinkError::rejected(format!(
                    "LightRAG does not allow deleting {id}: {what} answered \"not_allowed\": {message}"
                )));
            }
            _ => {
                return Err(SinkError::transient(format!(
                    "{what} answered {} with an unexpected body: {}",
                    status_text(answer.status),
                    answer.excerpt(self.secrets())
                )));
            }
        }

        // The deletion runs in the background; until it is done LightRAG
        // answers the re-insert with 409 ("clearing or deleting", or still
        // "already contains"). Poll with a growing pause until it accepts.
        let insert = json!({ "text": doc.text, "file_source": doc.file_source });
        let deadline = Instant::now() + self.replace_wait;
        let mut pause = FIRST_POLL_DELAY;
        // An error from here on leaves the old document deleted and the new
        // one not stored; say so, so the report explains the gap (the next
        // run's replace inserts it: deleting an absent id is harmless).
        let deleted = |e: SinkError| SinkError {
            kind: e.kind,
            message: format!(
                "{id} was deleted but storing its new text failed: {}",
                e.message
            ),
        };
        loop {
            let answer = self
                .call(
                    Method::POST,
                    INSERT_PATH,
                    Some(&insert),
                    BusyConflict::Return,
                )
                .await
                .map_err(deleted)?;
            match self.read_insert(&answer).map_err(deleted)? {
                InsertReading::Accepted { track_id } => {
                    return Ok(ReplaceOutcome::Replaced { track_id });
                }
                InsertReading::AlreadyStored { .. } | InsertReading::Busy { .. } => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(ReplaceOutcome::Deferred {
                    reason: format!(
                        "deletion of {id} did not finish within {:?}; the update is retried on a later run",
                        self.replace_wait
                    ),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL_DELAY);
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// What to do with a 409 that is not "already contains".
#[derive(Debug, Clone, Copy)]
enum BusyConflict {
    /// Retry it with backoff, then fail `Transient` (a plain insert).
    Retry,
    /// Hand it back: the caller polls by itself (replace).
    Return,
}

struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    body: Option<&'a Value>,
    busy_conflict: BusyConflict,
}

/// One attempt that did not give a usable answer.
#[derive(Debug)]
struct Failure {
    retryable: bool,
    retry_after: Option<Duration>,
    kind: SinkErrorKind,
    message: String,
}

impl Failure {
    fn permanent(kind: SinkErrorKind, message: String) -> Self {
        Self {
            retryable: false,
            retry_after: None,
            kind,
            message,
        }
    }
}

enum InsertReading {
    Accepted { track_id: Option<TrackId> },
    AlreadyStored { status: Option<String> },
    Busy { message: String },
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// LightRAG's (FastAPI's) `detail`: a string, or validation errors as a list.
    fn detail(&self) -> Option<String> {
        let body = self.json()?;
        Some(match body.get("detail")? {
            Value::String(text) => text.clone(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    let place = item
                        .get("loc")
                        .and_then(Value::as_array)
                        .map(|loc| {
                            loc.iter()
                                .map(|p| p.to_string().trim_matches('"').to_owned())
                                .collect::<Vec<_>>()
                                .join(".")
                        })
                        .unwrap_or_default();
                    let msg = item.get("msg").and_then(Value::as_str).unwrap_or_default();
                    format!("{place}: {msg}")
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
    }

    /// The first [`EXCERPT_BYTES`] bytes of the body, secrets scrubbed.
    fn excerpt(&self, secrets: Vec<&Secret>) -> String {
        if self.body.is_empty() {
            return "(empty body)".into();
        }
        let text = String::from_utf8_lossy(&self.body);
        let mut end = text.len().min(EXCERPT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = scrub(text[..end].trim(), &secrets);
        if end < text.len() {
            out.push('…');
        }
        out
    }
}

/// The `(Status: processed)` part of LightRAG's "already contains" detail.
fn stored_status(detail: &str) -> Option<String> {
    let start = detail.find("(Status: ")? + "(Status: ".len();
    let rest = &detail[start..];
    let status = rest[..rest.find(')')?].trim();
    // Some servers print the enum (`DocStatus.PROCESSED`).
    let status = status.rsplit('.').next().unwrap_or(status);
    (!status.is_empty()).then(|| status.to_ascii_lowercase())
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// An error with its causes (reqwest's top level says little), without the
/// URL, which the caller names itself (with any password removed).
fn chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut out = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Hides a `user:password@` part in a URL that did not parse.
fn redact_url_text(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!(
                "{}://{}@{}",
                &text[..scheme_end],
                crate::secrets::REDACTED,
                &text[at + 1..]
            )
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(url: &str) -> LightragApiConfig {
        LightragApiConfig {
            url: url.into(),
            api_key: Some(Secret::new("k-secret")),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_status_of_an_already_stored_document() {
        let detail = "Document storage already contains 'm1.txt' (Status: processed). Delete the existing record before re-inserting.";
        assert_eq!(stored_status(detail).as_deref(), Some("processed"));
        assert_eq!(
            stored_status("... (Status: DocStatus.FAILED) ...").as_deref(),
            Some("failed")
        );
        assert_eq!(stored_status("no status here"), None);
    }

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        assert_eq!(
            ApiSink::new(&config("not a url")).unwrap_err().kind,
            SinkErrorKind::Fatal
        );
        assert_eq!(
            ApiSink::new(&config("ftp://x")).unwrap_err().kind,
            SinkErrorKind::Fatal
        );
        let sink = ApiSink::new(&config("http://user:pw@127.0.0.1:9621/")).unwrap();
        assert_eq!(sink.describe(), "http://user:***@127.0.0.1:9621");
        assert!(!format!("{sink:?}").contains("k-secret"));
        assert_eq!(redact_url_text("http://u:p@h x"), "http://***@h x");
    }

    #[test]
    fn empty_key_sends_no_header() {
        let mut c = config("http://127.0.0.1:1");
        c.api_key = Some(Secret::new(""));
        assert!(ApiSink::new(&c).unwrap().api_key.is_none());
    }

    #[test]
    fn excerpts_are_bounded_and_scrubbed() {
        let key = Secret::new("k-secret");
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body: format!("bad key k-secret {}", "é".repeat(300)).into_bytes(),
        };
        let excerpt = answer.excerpt(vec![&key]);
        assert!(!excerpt.contains("k-secret"));
        assert!(excerpt.len() <= EXCERPT_BYTES + "…".len());
        let validation = Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: br#"{"detail":[{"loc":["body","text"],"msg":"Field required"}]}"#.to_vec(),
        };
        assert_eq!(
            validation.detail().as_deref(),
            Some("body.text: Field required")
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_transient_and_named() {
        // Port 1 on loopback: nothing listens there.
        let sink = ApiSink::new(&config("http://127.0.0.1:1"))
            .unwrap()
            .with_first_retry_delay(Duration::from_millis(1));
        let err = sink
            .insert(&Document::new("m.txt".into(), "t".into()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, SinkErrorKind::Transient);
        assert!(
            err.message
                .contains("POST http://127.0.0.1:1/documents/text"),
            "{}",
            err.message
        );
        assert!(err.message.contains("4 attempts"), "{}", err.message);
    }
}
