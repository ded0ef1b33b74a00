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

use super::{
    DocumentSink, InsertOutcome, Preflight, RemoteStatus, ReplaceOutcome, SinkError, SinkErrorKind, TrackedDoc, doc_id,
    stored_basename,
};
use crate::config::LightragApiConfig;
use crate::ids::{DocId, TrackId};
use crate::retry::{self, StatusClass};
use crate::secrets::{Secret, scrub};
use crate::transform::Document;
use async_trait::async_trait;
use backon::Retryable;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const INSERT_PATH: &str = "/documents/text";
const INSERT_BATCH_PATH: &str = "/documents/texts";
const TRACK_STATUS_PATH: &str = "/documents/track_status/";
const PAGINATED_PATH: &str = "/documents/paginated";
/// Up to this many distinct track ids are asked one by one; beyond it the
/// document list is paged through instead.
const MAX_TRACK_QUERIES: usize = 20;
const PAGE_SIZE: usize = 200;
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
    batch_inserts: bool,
    max_batch_bytes: usize,
    /// A 429 with `Retry-After` (a server with `MAX_PENDING_DOCUMENTS`) holds
    /// every request of this sink until then: the whole run pauses sending.
    paused_until: Mutex<Option<Instant>>,
    /// For servers with login accounts (`POST /login`).
    username: Option<String>,
    password: Option<Secret>,
    /// The bearer token from `/login` or `/auth-status`, once one was needed.
    bearer: tokio::sync::Mutex<Option<Secret>>,
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
            SinkError::fatal(format!("lightrag.api.url {:?} is not a valid URL: {e}", redact_url_text(trimmed)))
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
            .map_err(|e| SinkError::fatal(format!("cannot build the HTTP client for LightRAG at {shown}: {e}")))?;
        Ok(Self {
            client,
            base: trimmed.to_owned(),
            shown,
            api_key: config.api_key.clone().filter(|key| !key.is_empty()),
            timeout,
            first_retry_delay: retry::FIRST_RETRY_DELAY,
            replace_wait: DEFAULT_REPLACE_WAIT,
            batch_inserts: config.batch_inserts,
            max_batch_bytes: usize::try_from(config.max_batch_bytes).unwrap_or(usize::MAX).max(1),
            paused_until: Mutex::new(None),
            username: config.username.clone().filter(|u| !u.is_empty()),
            password: config.password.clone(),
            bearer: tokio::sync::Mutex::new(None),
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
        let answer = self.call(Method::GET, HEALTH_PATH, None, BusyConflict::Retry).await?;
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

    /// One `POST /documents/texts` for `group` (indexes into `docs`). A 409
    /// names one stored document: that one is `AlreadyStored` and the rest
    /// is sent again; a refusal of the whole request (400/413/422) is split
    /// in halves down to single inserts, so one bad or oversized document
    /// never costs the others.
    async fn insert_group(
        &self,
        docs: &[Document],
        group: Vec<usize>,
        outcomes: &mut [Option<Result<InsertOutcome, SinkError>>],
        queue: &mut Vec<Vec<usize>>,
    ) {
        if group.len() == 1 {
            outcomes[group[0]] = Some(self.insert(&docs[group[0]]).await);
            return;
        }
        let body = json!({
            "texts": group.iter().map(|&i| docs[i].text.as_str()).collect::<Vec<_>>(),
            "file_sources": group.iter().map(|&i| docs[i].file_source.as_str()).collect::<Vec<_>>(),
        });
        let answer = match self.call(Method::POST, INSERT_BATCH_PATH, Some(&body), BusyConflict::Retry).await {
            Ok(answer) => answer,
            Err(e) if e.kind == SinkErrorKind::Rejected => {
                let (left, right) = group.split_at(group.len() / 2);
                tracing::debug!(size = group.len(), error = %e.message, "batch refused; splitting it");
                queue.push(right.to_vec());
                queue.push(left.to_vec());
                return;
            }
            Err(e) => {
                for i in group {
                    outcomes[i] = Some(Err(e.clone()));
                }
                return;
            }
        };
        if answer.status == StatusCode::CONFLICT {
            let detail = answer.detail().unwrap_or_default();
            let named = detail.split('\'').nth(1).unwrap_or_default().to_owned();
            match group.iter().position(|&i| stored_basename(&docs[i].file_source) == named) {
                Some(at) => {
                    outcomes[group[at]] = Some(Ok(InsertOutcome::AlreadyStored { status: stored_status(&detail) }));
                    let rest: Vec<usize> =
                        group.iter().enumerate().filter(|(j, _)| *j != at).map(|(_, &i)| i).collect();
                    if !rest.is_empty() {
                        queue.push(rest);
                    }
                }
                None => {
                    let (left, right) = group.split_at(group.len() / 2);
                    queue.push(right.to_vec());
                    queue.push(left.to_vec());
                }
            }
            return;
        }
        match self.read_insert(&answer) {
            Ok(InsertReading::Accepted { track_id }) => {
                for i in group {
                    outcomes[i] = Some(Ok(InsertOutcome::Accepted { track_id: track_id.clone() }));
                }
            }
            Ok(InsertReading::AlreadyStored { status }) => {
                for i in group {
                    outcomes[i] = Some(Ok(InsertOutcome::AlreadyStored { status: status.clone() }));
                }
            }
            Ok(InsertReading::Busy { message }) => {
                for i in group {
                    outcomes[i] = Some(Err(SinkError::transient(message.clone())));
                }
            }
            Err(e) => {
                for i in group {
                    outcomes[i] = Some(Err(e.clone()));
                }
            }
        }
    }

    /// `GET /documents/track_status/{id}`: the documents of one insert.
    async fn track_status(&self, track_id: &TrackId, into: &mut HashMap<DocId, RemoteStatus>) -> Result<(), SinkError> {
        let path = format!(
            "{TRACK_STATUS_PATH}{}",
            percent_encoding::utf8_percent_encode(track_id.as_str(), percent_encoding::NON_ALPHANUMERIC)
        );
        let answer = self.call(Method::GET, &path, None, BusyConflict::Retry).await?;
        let body = answer.json().unwrap_or(Value::Null);
        for doc in body.get("documents").and_then(Value::as_array).into_iter().flatten() {
            if let Some((id, status)) = read_doc_status(doc) {
                into.insert(id, status);
            }
        }
        Ok(())
    }

    /// Pages through `POST /documents/paginated` (newest update first) until
    /// every wanted document was seen or the pages are older than the oldest
    /// submission.
    async fn page_statuses(
        &self,
        docs: &[TrackedDoc],
        into: &mut HashMap<DocId, RemoteStatus>,
    ) -> Result<(), SinkError> {
        let wanted: std::collections::HashSet<&DocId> = docs.iter().map(|d| &d.doc_id).collect();
        let oldest = docs.iter().filter_map(|d| d.submitted_at).min();
        let mut found = 0usize;
        for page in 1.. {
            let body = json!({
                "status_filters": null, "page": page, "page_size": PAGE_SIZE,
                "sort_field": "updated_at", "sort_direction": "desc",
            });
            let answer = self.call(Method::POST, PAGINATED_PATH, Some(&body), BusyConflict::Retry).await?;
            let body = answer.json().unwrap_or(Value::Null);
            let documents = body.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut page_oldest: Option<chrono::DateTime<chrono::Utc>> = None;
            for doc in &documents {
                if let Some(updated) = doc
                    .get("updated_at")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    let updated = updated.with_timezone(&chrono::Utc);
                    page_oldest = Some(page_oldest.map_or(updated, |o| o.min(updated)));
                }
                if let Some((id, status)) = read_doc_status(doc)
                    && wanted.contains(&id)
                    && into.insert(id, status).is_none()
                {
                    found += 1;
                }
            }
            let has_next = body.pointer("/pagination/has_next").and_then(Value::as_bool).unwrap_or(false);
            let older_than_wanted = match (page_oldest, oldest) {
                (Some(page), Some(oldest)) => page < oldest - chrono::Duration::minutes(5),
                _ => false,
            };
            if found >= wanted.len() || !has_next || documents.is_empty() || older_than_wanted {
                break;
            }
        }
        Ok(())
    }

    /// Replaces documents (LightRAG has no update): one delete for all
    /// their ids, retried while the pipeline is busy, then one insert of the
    /// new texts under the same names, retried while the deletion runs. What
    /// cannot finish within `replace_wait` is `Deferred` to a later run,
    /// nothing lost (deleting an absent id is harmless next time).
    async fn replace_many(&self, docs: &[Document]) -> Vec<Result<ReplaceOutcome, SinkError>> {
        let all = |outcome: Result<ReplaceOutcome, SinkError>| vec![outcome; docs.len()];
        if docs.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = docs.iter().map(|d| doc_id(&d.file_source).as_str().to_owned()).collect();
        let shown_ids = if ids.len() == 1 { ids[0].clone() } else { format!("{} documents", ids.len()) };
        let delete = json!({ "doc_ids": ids, "delete_file": false, "delete_llm_cache": false });
        let what = format!("DELETE {}{DELETE_PATH}", self.shown);
        let deadline = Instant::now() + self.replace_wait;
        let mut pause = FIRST_POLL_DELAY;
        loop {
            let answer = match self.call(Method::DELETE, DELETE_PATH, Some(&delete), BusyConflict::Return).await {
                Ok(answer) => answer,
                Err(e) => return all(Err(e)),
            };
            let body = answer.json().unwrap_or(Value::Null);
            let status = body.get("status").and_then(Value::as_str).unwrap_or_default();
            let message = body.get("message").and_then(Value::as_str).unwrap_or_default();
            let busy = if answer.status == StatusCode::CONFLICT {
                format!("{what} answered 409 ({})", scrub(&answer.detail().unwrap_or_default(), &self.secrets()))
            } else {
                match status {
                    "deletion_started" | "success" => break,
                    "busy" => format!("LightRAG's pipeline is busy ({message})"),
                    "not_allowed" => {
                        return all(Err(SinkError::rejected(format!(
                            "LightRAG does not allow deleting {shown_ids}: {what} answered \"not_allowed\": {message}"
                        ))));
                    }
                    _ => {
                        return all(Err(SinkError::transient(format!(
                            "{what} answered {} with an unexpected body: {}",
                            status_text(answer.status),
                            answer.excerpt(self.secrets())
                        ))));
                    }
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return all(Ok(ReplaceOutcome::Deferred {
                    reason: format!(
                        "{busy}, so deleting {shown_ids} was refused for {:?}; the update is retried on a later run",
                        self.replace_wait
                    ),
                }));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL_DELAY);
        }

        // The deletion runs in the background; until it is done LightRAG
        // answers the re-insert with 409 ("clearing or deleting", or still
        // "already contains"). Poll with a growing pause until it accepts.
        let (path, insert) = if docs.len() == 1 {
            (INSERT_PATH, json!({ "text": docs[0].text, "file_source": docs[0].file_source }))
        } else {
            (
                INSERT_BATCH_PATH,
                json!({
                    "texts": docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
                    "file_sources": docs.iter().map(|d| d.file_source.as_str()).collect::<Vec<_>>(),
                }),
            )
        };
        // An error from here on leaves the old documents deleted and the new
        // ones not stored; say so, so the report explains the gap (the next
        // run's replace inserts them).
        let deleted = |e: SinkError| SinkError {
            kind: e.kind,
            message: format!(
                "{shown_ids} {} deleted but storing the new text failed: {}",
                if docs.len() == 1 { "was" } else { "were" },
                e.message
            ),
        };
        let mut pause = FIRST_POLL_DELAY;
        loop {
            let answer = match self.call(Method::POST, path, Some(&insert), BusyConflict::Return).await {
                Ok(answer) => answer,
                Err(e) if e.kind == SinkErrorKind::Rejected && docs.len() > 1 => {
                    // One document spoils the batch: store them one by one.
                    let mut outcomes = Vec::with_capacity(docs.len());
                    for doc in docs {
                        outcomes.push(match self.insert(doc).await {
                            Ok(InsertOutcome::Accepted { track_id }) => Ok(ReplaceOutcome::Replaced { track_id }),
                            Ok(InsertOutcome::AlreadyStored { .. }) => Ok(ReplaceOutcome::Deferred {
                                reason: format!(
                                    "{} is still stored after its deletion; retried on a later run",
                                    doc_id(&doc.file_source)
                                ),
                            }),
                            Err(e) => Err(deleted(e)),
                        });
                    }
                    return outcomes;
                }
                Err(e) => return all(Err(deleted(e))),
            };
            match self.read_insert(&answer) {
                Ok(InsertReading::Accepted { track_id }) => return all(Ok(ReplaceOutcome::Replaced { track_id })),
                Ok(InsertReading::AlreadyStored { .. } | InsertReading::Busy { .. }) => {}
                Err(e) => return all(Err(deleted(e))),
            }
            let now = Instant::now();
            if now >= deadline {
                return all(Ok(ReplaceOutcome::Deferred {
                    reason: format!(
                        "deletion of {shown_ids} did not finish within {:?}; the update is retried on a later run",
                        self.replace_wait
                    ),
                }));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL_DELAY);
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.api_key.iter().chain(self.password.iter()).collect()
    }

    /// Gets a bearer token: the guest token `/auth-status` hands out when
    /// the server has no accounts, else `POST /login` with the configured
    /// account.
    async fn login(&self) -> Result<(), SinkError> {
        let auth = self.call_once(Method::GET, "/auth-status", None).await?;
        let body = auth.json().unwrap_or(Value::Null);
        let token = if body.get("auth_configured").and_then(Value::as_bool) == Some(true) {
            let (Some(user), Some(password)) = (&self.username, &self.password) else {
                return Err(SinkError::fatal(format!(
                    "LightRAG at {} wants a login: set lightrag.api.username and lightrag.api.password (or lightrag.api.api_key)",
                    self.shown
                )));
            };
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("username", user)
                .append_pair("password", password.expose())
                .finish();
            let answer = self
                .client
                .post(format!("{}/login", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .map_err(|e| SinkError::transient(format!("POST {}/login failed: {}", self.shown, chain(e))))?;
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let detail = body.get("detail").and_then(Value::as_str).unwrap_or_default();
                return Err(SinkError::fatal(format!(
                    "LightRAG at {} refused the login of {user:?}: {} {:?}; check lightrag.api.username and lightrag.api.password",
                    self.shown,
                    status.as_u16(),
                    scrub(detail, &self.secrets())
                )));
            }
            body.get("access_token").and_then(Value::as_str).map(str::to_owned)
        } else {
            body.get("access_token").and_then(Value::as_str).map(str::to_owned)
        };
        let token =
            token.ok_or_else(|| SinkError::fatal(format!("LightRAG at {} gave no access token", self.shown)))?;
        *self.bearer.lock().await = Some(Secret::new(token));
        tracing::info!(url = %self.shown, "logged in to LightRAG");
        Ok(())
    }

    /// One attempt, no retries, for the login conversation.
    async fn call_once(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, SinkError> {
        let request = Request { method: &method, path, body, busy_conflict: BusyConflict::Retry };
        self.attempt(&request).await.map_err(|f| SinkError { kind: f.kind, message: f.message })
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
        match self.call_retrying(method.clone(), path, body, busy_conflict).await {
            Err((error, true)) => {
                tracing::debug!(error = %error.message, "LightRAG wants a token; logging in");
                self.login().await?;
                self.call_retrying(method, path, body, busy_conflict).await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// `call` without the login: the error says whether a login may help.
    async fn call_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        busy_conflict: BusyConflict,
    ) -> Result<Answer, (SinkError, bool)> {
        let attempts = AtomicU32::new(0);
        let request = Request { method: &method, path, body, busy_conflict };
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
            let needs_login = failure.needs_login;
            let message = if failure.retryable {
                format!("{} (gave up after {} attempts)", failure.message, attempts.load(Ordering::Relaxed))
            } else {
                failure.message
            };
            (SinkError { kind: failure.kind, message }, needs_login)
        })
    }

    /// Waits while a 429 asked this sink to pause.
    async fn wait_if_paused(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until.into()).await,
                _ => return,
            }
        }
    }

    fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait.min(retry::MAX_RETRY_AFTER);
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    async fn attempt(&self, request: &Request<'_>) -> Result<Answer, Failure> {
        self.wait_if_paused().await;
        let url = format!("{}{}", self.base, request.path);
        let shown_url = format!("{}{}", self.shown, request.path);
        let what = format!("{} {shown_url}", request.method);
        let mut builder = self.client.request(request.method.clone(), &url);
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        if let Some(key) = &self.api_key {
            builder = builder.header("X-API-Key", key.expose());
        } else if let Some(token) = self.bearer.lock().await.as_ref() {
            builder = builder.bearer_auth(token.expose());
        }
        let response = builder.send().await.map_err(|e| self.network_failure(&what, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry::parse_retry_after(value, chrono::Utc::now()));
        let body = response.bytes().await.map_err(|e| self.network_failure(&what, e))?;
        let answer = Answer { status, body: body.to_vec() };
        let excerpt = answer.excerpt(self.secrets());
        let answered = format!("{what} answered {}: {excerpt}", status_text(status));

        match retry::classify_status(status.as_u16()) {
            StatusClass::Success => Ok(answer),
            StatusClass::Retryable => Err(Failure {
                retryable: true,
                retry_after: match (status.as_u16(), retry_after) {
                    (429, Some(wait)) => {
                        tracing::info!(wait_s = wait.as_secs_f64(), "LightRAG asked to slow down (429); pausing sends");
                        self.pause_for(wait);
                        Some(Duration::ZERO)
                    }
                    _ => retry_after,
                },
                kind: SinkErrorKind::Transient,
                message: answered,
                needs_login: false,
            }),
            StatusClass::Permanent => match status.as_u16() {
                409 if answer.detail().is_some_and(|d| d.contains(ALREADY_CONTAINS)) => Ok(answer),
                // Any other 409 on the document routes is a pipeline state
                // ("clearing or deleting", "scan is classifying files", ...)
                // that passes by itself.
                409 => match request.busy_conflict {
                    BusyConflict::Retry => Err(Failure {
                        retryable: true,
                        retry_after,
                        kind: SinkErrorKind::Transient,
                        message: format!("LightRAG's pipeline is busy: {answered}"),
                        needs_login: false,
                    }),
                    BusyConflict::Return => Ok(answer),
                },
                401 | 403 => {
                    let detail = answer.detail().unwrap_or_default();
                    let hint = match (status.as_u16(), self.api_key.is_some()) {
                        (401, false) if self.username.is_some() => {
                            "; the login with lightrag.api.username/password was refused or expired"
                        }
                        (401, false) => {
                            "; the server wants a login: set lightrag.api.username and lightrag.api.password (or lightrag.api.api_key)"
                        }
                        _ => "; check lightrag.api.api_key",
                    };
                    let mut failure = Failure::permanent(
                        SinkErrorKind::Fatal,
                        format!(
                            "LightRAG at {} refused the request: {} {:?}{hint} ({what}, body: {excerpt})",
                            self.shown,
                            status.as_u16(),
                            scrub(&detail, &self.secrets()),
                        ),
                    );
                    failure.needs_login = status.as_u16() == 401 && self.api_key.is_none();
                    Err(failure)
                }
                404 | 405 => Err(Failure::permanent(
                    SinkErrorKind::Fatal,
                    format!("{answered}; is lightrag.api.url the address of a LightRAG 1.5 server?"),
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
            format!("{what} timed out after {} s (lightrag.api.timeout)", self.timeout.as_secs())
        } else {
            format!("{what} failed: {}", chain(error))
        };
        Failure { retryable: true, retry_after: None, kind: SinkErrorKind::Transient, message, needs_login: false }
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
                InsertReading::AlreadyStored { status: stored_status(&detail) }
            } else {
                InsertReading::Busy { message: format!("{what} answered 409: {}", scrub(&detail, &self.secrets())) }
            });
        }
        let body = answer.json().ok_or_else(|| {
            SinkError::transient(format!(
                "{what} answered {} with something that is not LightRAG's insert answer: {}",
                status_text(answer.status),
                answer.excerpt(self.secrets())
            ))
        })?;
        let status = body.get("status").and_then(Value::as_str).unwrap_or_default();
        match status {
            // Servers before ~1.4 answered a stored document this way.
            "duplicated" => Ok(InsertReading::AlreadyStored { status: None }),
            "failure" => Err(SinkError::rejected(format!(
                "LightRAG rejected the document: {what} answered {} with status \"failure\": {}",
                status_text(answer.status),
                answer.excerpt(self.secrets())
            ))),
            _ => Ok(InsertReading::Accepted {
                track_id: body.get("track_id").and_then(Value::as_str).filter(|t| !t.is_empty()).map(TrackId::from),
            }),
        }
    }
}

#[async_trait]
impl DocumentSink for ApiSink {
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError> {
        let body = json!({ "text": doc.text, "file_source": doc.file_source });
        let answer = self.call(Method::POST, INSERT_PATH, Some(&body), BusyConflict::Retry).await?;
        match self.read_insert(&answer)? {
            InsertReading::Accepted { track_id } => Ok(InsertOutcome::Accepted { track_id }),
            InsertReading::AlreadyStored { status } => Ok(InsertOutcome::AlreadyStored { status }),
            // Only reachable if `call` handed a busy 409 back, which it does not with `Retry`.
            InsertReading::Busy { message } => Err(SinkError::transient(message)),
        }
    }

    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        self.replace_many(std::slice::from_ref(doc))
            .await
            .pop()
            .unwrap_or_else(|| Err(SinkError::transient("replace gave no answer")))
    }

    async fn replace_batch(&self, docs: &[Document]) -> Vec<Result<ReplaceOutcome, SinkError>> {
        if self.batch_inserts {
            self.replace_many(docs).await
        } else {
            let mut outcomes = Vec::with_capacity(docs.len());
            for doc in docs {
                outcomes.push(self.replace(doc).await);
            }
            outcomes
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn batches(&self) -> bool {
        self.batch_inserts
    }

    fn confirms(&self) -> bool {
        true
    }

    async fn insert_batch(&self, docs: &[Document]) -> Vec<Result<InsertOutcome, SinkError>> {
        let mut outcomes: Vec<Option<Result<InsertOutcome, SinkError>>> = vec![None; docs.len()];
        // Groups bounded by the byte budget, sent in order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0usize;
        for (i, doc) in docs.iter().enumerate() {
            let size = doc.text.len() + doc.file_source.len() + 16;
            match groups.last_mut() {
                Some(group) if bytes + size <= self.max_batch_bytes => group.push(i),
                _ => {
                    groups.push(vec![i]);
                    bytes = 0;
                }
            }
            bytes += size;
        }
        groups.reverse();
        let mut queue = groups;
        while let Some(group) = queue.pop() {
            self.insert_group(docs, group, &mut outcomes, &mut queue).await;
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(SinkError::transient("the batch insert gave no answer for this document")))
            })
            .collect()
    }

    async fn statuses(&self, docs: &[TrackedDoc]) -> Result<HashMap<DocId, RemoteStatus>, SinkError> {
        let mut found = HashMap::with_capacity(docs.len());
        let mut tracks: Vec<&TrackId> = docs.iter().filter_map(|d| d.track_id.as_ref()).collect();
        tracks.sort();
        tracks.dedup();
        if tracks.len() <= MAX_TRACK_QUERIES && docs.iter().all(|d| d.track_id.is_some()) {
            for track in tracks {
                self.track_status(track, &mut found).await?;
            }
        } else {
            self.page_statuses(docs, &mut found).await?;
        }
        let wanted: std::collections::HashSet<&DocId> = docs.iter().map(|d| &d.doc_id).collect();
        found.retain(|id, _| wanted.contains(id));
        Ok(found)
    }

    async fn stored_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<HashMap<DocId, RemoteStatus>>, SinkError> {
        // Clocks of two hosts differ; look a little further back.
        let since = since - chrono::Duration::minutes(2);
        let mut found = HashMap::new();
        for page in 1.. {
            let body = json!({
                "status_filters": null, "page": page, "page_size": PAGE_SIZE,
                "sort_field": "created_at", "sort_direction": "desc",
            });
            let answer = self.call(Method::POST, PAGINATED_PATH, Some(&body), BusyConflict::Retry).await?;
            let body = answer.json().unwrap_or(Value::Null);
            let documents = body.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut older = false;
            for doc in &documents {
                let created = doc
                    .get("created_at")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                if created.is_some_and(|c| c < since) {
                    older = true;
                    continue;
                }
                if let Some((id, status)) = read_doc_status(doc)
                    && id.as_str().starts_with("doc-")
                {
                    found.insert(id, status);
                }
            }
            let has_next = body.pointer("/pagination/has_next").and_then(Value::as_bool).unwrap_or(false);
            if older || !has_next || documents.is_empty() {
                break;
            }
        }
        Ok(Some(found))
    }

    async fn preflight(&self, expected_workspace: &str) -> Result<Option<Preflight>, SinkError> {
        let info = self.server_info().await?;
        let mut warnings = Vec::new();
        let server_workspace = info.workspace.clone().unwrap_or_default();
        if info.workspace.is_some() && server_workspace != expected_workspace {
            warnings.push(format!(
                "lightrag.api.workspace is {expected_workspace:?} but the server at {} serves workspace {server_workspace:?}; \
                 LightRAG 1.5 fixes the workspace per server process (its WORKSPACE setting), so documents go to {server_workspace:?}",
                self.shown
            ));
        }
        match info.core_version.as_deref() {
            Some(v) if !v.starts_with("1.5") => warnings.push(format!(
                "the server at {} runs LightRAG {v}; this connector is built and tested for 1.5.x",
                self.shown
            )),
            None => warnings.push(format!("the server at {} did not report its LightRAG version", self.shown)),
            _ => {}
        }
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        Ok(Some(Preflight {
            core_version: info.core_version,
            api_version: info.api_version,
            workspace: info.workspace,
            warnings,
        }))
    }
}

/// Reads one document of LightRAG's lists: its id and status.
fn read_doc_status(doc: &Value) -> Option<(DocId, RemoteStatus)> {
    let id = doc.get("id").and_then(Value::as_str)?;
    let status = doc.get("status").and_then(Value::as_str)?.to_ascii_lowercase();
    let status = status.strip_prefix("docstatus.").unwrap_or(&status).to_owned();
    let remote = match status.as_str() {
        "processed" => RemoteStatus::Processed,
        "failed" => RemoteStatus::Failed {
            error: doc.get("error_msg").and_then(Value::as_str).unwrap_or("failed in LightRAG (no message)").to_owned(),
        },
        _ => RemoteStatus::Queued { status },
    };
    Some((DocId::new(id), remote))
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
    /// A 401 without an API key: the server wants a bearer token.
    needs_login: bool,
}

impl Failure {
    fn permanent(kind: SinkErrorKind, message: String) -> Self {
        Self { retryable: false, retry_after: None, kind, message, needs_login: false }
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
                            loc.iter().map(|p| p.to_string().trim_matches('"').to_owned()).collect::<Vec<_>>().join(".")
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
            format!("{}://{}@{}", &text[..scheme_end], crate::secrets::REDACTED, &text[at + 1..])
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(url: &str) -> LightragApiConfig {
        LightragApiConfig { url: url.into(), api_key: Some(Secret::new("k-secret")), ..Default::default() }
    }

    #[test]
    fn reads_the_status_of_an_already_stored_document() {
        let detail = "Document storage already contains 'm1.txt' (Status: processed). Delete the existing record before re-inserting.";
        assert_eq!(stored_status(detail).as_deref(), Some("processed"));
        assert_eq!(stored_status("... (Status: DocStatus.FAILED) ...").as_deref(), Some("failed"));
        assert_eq!(stored_status("no status here"), None);
    }

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        assert_eq!(ApiSink::new(&config("not a url")).unwrap_err().kind, SinkErrorKind::Fatal);
        assert_eq!(ApiSink::new(&config("ftp://x")).unwrap_err().kind, SinkErrorKind::Fatal);
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
        assert_eq!(validation.detail().as_deref(), Some("body.text: Field required"));
    }

    #[tokio::test]
    async fn unreachable_server_is_transient_and_named() {
        // Port 1 on loopback: nothing listens there.
        let sink =
            ApiSink::new(&config("http://127.0.0.1:1")).unwrap().with_first_retry_delay(Duration::from_millis(1));
        let err = sink.insert(&Document::new("m.txt".into(), "t".into())).await.unwrap_err();
        assert_eq!(err.kind, SinkErrorKind::Transient);
        assert!(err.message.contains("POST http://127.0.0.1:1/documents/text"), "{}", err.message);
        assert!(err.message.contains("4 attempts"), "{}", err.message);
    }
}
