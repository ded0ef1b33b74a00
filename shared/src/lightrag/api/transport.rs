//! The HTTP conversation with one LightRAG server: one attempt
//! ([`ApiSink::attempt`]: auth header or bearer token, `Retry-After`, the
//! classification of every answer), retries with backoff
//! ([`ApiSink::call`]), the pause a 429 asks for, and the login for servers
//! with accounts. Error messages carry the URL without password, the status
//! and a scrubbed body excerpt.

use super::{ALREADY_CONTAINS, ApiSink, MAX_RETRIES, RETRY_MULTIPLIER};
use crate::http;
use crate::lightrag::{SinkError, SinkErrorKind};
use crate::retry::{self, Policy, StatusClass, Transient};
use crate::secrets::Secret;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

impl ApiSink {
    pub(super) fn secrets(&self) -> Vec<&Secret> {
        self.api_key.iter().chain(self.password.iter()).collect()
    }

    /// A text from the server (a `detail`, a body) as a message quotes it:
    /// secrets scrubbed, then cut.
    pub(super) fn quote(&self, text: &str) -> String {
        http::excerpt(text.as_bytes(), &self.secrets())
    }

    /// Gets a bearer token: the guest token `/auth-status` hands out when
    /// the server has no accounts, else `POST /login` with the configured
    /// account.
    pub(super) async fn login(&self) -> Result<(), SinkError> {
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
                .map_err(|e| {
                    SinkError::transient(format!("POST {}/login failed: {}", self.shown, http::transport_error(e)))
                })?;
            let status = answer.status();
            let body = if status.is_success() {
                http::read_body(answer, self.max_answer_bytes).await.unwrap_or_default()
            } else {
                http::read_error_body(answer).await
            };
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() {
                let detail = body.get("detail").and_then(Value::as_str).unwrap_or_default();
                return Err(SinkError::fatal(format!(
                    "LightRAG at {} refused the login of {user:?}: {} {:?}; check lightrag.api.username and lightrag.api.password",
                    self.shown,
                    status.as_u16(),
                    self.quote(detail)
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
    pub(super) async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SinkError> {
        let request = Request { method: &method, path, body, busy_conflict: BusyConflict::Retry };
        self.attempt(&request).await.map_err(|f| SinkError { kind: f.kind, message: f.message })
    }

    pub(super) fn retry_policy(&self) -> Policy {
        Policy::requests(MAX_RETRIES, RETRY_MULTIPLIER).with_first_delay(self.first_retry_delay)
    }

    /// Sends one request, retrying what is worth retrying. Returns the answer
    /// when it is a success or a 409 the caller must read; every other
    /// answer becomes a classified error.
    pub(super) async fn call(
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
    pub(super) async fn call_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        busy_conflict: BusyConflict,
    ) -> Result<Answer, (SinkError, bool)> {
        let request = Request { method: &method, path, body, busy_conflict };
        let retried = retry::retrying(
            self.retry_policy(),
            || self.attempt(&request),
            |failure: &Failure, delay, _| {
                tracing::debug!(
                    error = %failure.message,
                    delay_ms = delay.as_millis() as u64,
                    "LightRAG request failed; retrying"
                );
            },
        )
        .await;
        retried.result.map_err(|failure| {
            let needs_login = failure.needs_login;
            let message = if failure.retryable {
                format!("{} (gave up after {} attempts)", failure.message, retried.attempts)
            } else {
                failure.message
            };
            (SinkError { kind: failure.kind, message }, needs_login)
        })
    }

    /// Waits while a 429 asked this sink to pause.
    pub(super) async fn wait_if_paused(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until.into()).await,
                _ => return,
            }
        }
    }

    pub(super) fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait.min(retry::MAX_RETRY_AFTER);
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    pub(super) async fn attempt(&self, request: &Request<'_>) -> Result<Answer, Failure> {
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
        let retry_after = http::retry_after(response.headers());
        let body = if status.is_success() {
            http::read_body(response, self.max_answer_bytes).await.map_err(|e| match e {
                http::BodyError::TooLarge { limit } => Failure::permanent(
                    SinkErrorKind::Fatal,
                    format!(
                        "{what}: the answer is larger than the limit of {limit} bytes; \
                         is lightrag.api.url the address of a LightRAG 1.5 server?"
                    ),
                ),
                http::BodyError::Transport(e) => self.network_failure(&what, e),
            })?
        } else {
            // 409s and refusals are read for their `detail`, which is short.
            http::read_error_body(response).await
        };
        let answer = Answer { status, body };
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
                            self.quote(&detail),
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

    pub(super) fn network_failure(&self, what: &str, error: reqwest::Error) -> Failure {
        if error.is_builder() {
            return Failure::permanent(
                SinkErrorKind::Fatal,
                format!("{what}: cannot build the request: {}", http::transport_error(error)),
            );
        }
        let message = if error.is_timeout() {
            format!("{what} timed out after {} s (lightrag.api.timeout)", self.timeout.as_secs())
        } else {
            format!("{what} failed: {}", http::transport_error(error))
        };
        Failure { retryable: true, retry_after: None, kind: SinkErrorKind::Transient, message, needs_login: false }
    }
}

/// What to do with a 409 that is not "already contains".
#[derive(Debug, Clone, Copy)]
pub(super) enum BusyConflict {
    /// Retry it with backoff, then fail `Transient` (a plain insert).
    Retry,
    /// Hand it back: the caller polls by itself (replace).
    Return,
}

pub(super) struct Request<'a> {
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    pub(super) body: Option<&'a Value>,
    pub(super) busy_conflict: BusyConflict,
}

/// One attempt that did not give a usable answer.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) retryable: bool,
    pub(super) retry_after: Option<Duration>,
    pub(super) kind: SinkErrorKind,
    pub(super) message: String,
    /// A 401 without an API key: the server wants a bearer token.
    pub(super) needs_login: bool,
}

impl Transient for Failure {
    fn is_transient(&self) -> bool {
        self.retryable
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl Failure {
    pub(super) fn permanent(kind: SinkErrorKind, message: String) -> Self {
        Self { retryable: false, retry_after: None, kind, message, needs_login: false }
    }
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// LightRAG's (FastAPI's) `detail`: a string, or validation errors as a list.
    pub(super) fn detail(&self) -> Option<String> {
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

    /// The body as a message quotes it (see [`http::excerpt`]).
    pub(super) fn excerpt(&self, secrets: Vec<&Secret>) -> String {
        http::excerpt(&self.body, &secrets)
    }
}

pub(super) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}
