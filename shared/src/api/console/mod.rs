//! The web console: server-side HTML over the same read models and operator
//! actions as the JSON API ([`crate::status`], [`crate::admin`], the
//! [`RunLauncher`](super::RunLauncher)), served by the same router in
//! `serve` and in the api Lambda. No script at all: forms, links, a meta
//! refresh while a run is going, and one stylesheet.
//!
//! - `GET /` the connectors at a glance; `GET /console/{id}` one connector
//!   (history with a chart, failed and dead memories, the actions);
//!   `GET /console/{id}/reset` the confirmation step of a reset.
//! - `POST /console/{id}/{trigger,pause,resume,retry-failed,reset}`, each
//!   answered by a redirect to the connector's page (post/redirect/get).
//! - `GET|POST /login`, `POST /logout`, `GET /console.css`.
//!
//! Security: the key is typed once into the login form (never in a URL)
//! and a signed session cookie is kept ([`session`]); every POST carries a
//! per-session CSRF token checked here, and one a browser marks as coming
//! from another site (`Sec-Fetch-Site`) is refused before that. Every page
//! has a Content-Security-Policy without scripts, frames or foreign
//! origins, and is never cached. Without a session, only the login form
//! and the stylesheet answer (the API's own rule: only `/health` is open).
//! Rate limiting shares the API's buckets: a session counts as the key.

mod chart;
mod pages;
mod session;

pub(crate) use session::Sessions;

use super::guard::{Gate, retry_after_seconds};
use super::{ApiError, ApiState, LaunchError, ResetAnswer, find};
use crate::admin;
use crate::state::StateError;
use crate::status;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use chrono::Utc;
use maud::Markup;
use pages::{ConnectorPage, Done, Frame, LoginProblem};
use serde::Deserialize;
use session::{Session, Transport};
use std::sync::Arc;

/// Forms are small: a key, a token, a confirmation.
const FORM_BYTES: usize = 16 * 1024;

const STYLESHEET: &str = include_str!("console.css");

/// No script, no plugin, no frame, no foreign origin; styles only from our
/// stylesheet (the SVG chart uses classes, never `style` attributes).
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, behind [`guard`].
pub(super) fn routes(sessions: Arc<Sessions>, gate: Arc<Gate>) -> Router<ApiState> {
    let guarded = Guarded { sessions, gate };
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/console.css", get(stylesheet))
        .route("/console/{id}", get(connector_page))
        .route("/console/{id}/trigger", post(trigger))
        .route("/console/{id}/pause", post(pause))
        .route("/console/{id}/resume", post(resume))
        .route("/console/{id}/retry-failed", post(retry_failed))
        .route("/console/{id}/reset", get(confirm_reset).post(reset))
        .layer(DefaultBodyLimit::max(FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(guarded, guard))
}

#[derive(Clone)]
struct Guarded {
    sessions: Arc<Sessions>,
    gate: Arc<Gate>,
}

/// The logged-in browser of a request (put there by [`guard`]).
#[derive(Clone)]
struct Viewer {
    session: Session,
    csrf: String,
}

/// The relative path from a request's path back to the console's root:
/// `./` for `/` and `/login`, `../` for `/console/x`, `../../` below.
fn root_of(path: &str) -> String {
    let depth = path.trim_start_matches('/').matches('/').count();
    if depth == 0 { "./".into() } else { "../".repeat(depth) }
}

/// Sessions, rate limit, CSRF origin check and the security headers.
async fn guard(State(guarded): State<Guarded>, mut request: Request, next: Next) -> Response {
    let transport = Transport::of(request.headers(), request.uri());
    let now = Utc::now();
    let sessions = &guarded.sessions;
    let mut session = sessions.verify(request.headers(), transport, now);
    let mut new_cookie = None;
    if session.is_none() && !sessions.login_required() {
        // Auth off: everyone has a session, for the CSRF token.
        let fresh = sessions.open(now);
        new_cookie = Some(sessions.set_cookie(&fresh, transport));
        session = Some(fresh);
    }
    let root = root_of(request.uri().path());
    let response = if let Err(wait) = guarded.gate.take(session.is_some()) {
        too_many(&root, retry_after_seconds(wait))
    } else if request.method() == Method::POST && from_another_site(request.headers()) {
        page(StatusCode::FORBIDDEN, pages::problem(&frame(&root, None, "Refused"), 403, CROSS_SITE))
    } else {
        let path = request.uri().path();
        let public = matches!(path, "/login" | "/console.css");
        match session {
            Some(session) => {
                let csrf = sessions.csrf_token(&session);
                request.extensions_mut().insert(Viewer { session, csrf });
                next.run(request).await
            }
            None if public => next.run(request).await,
            None if request.method() == Method::GET || request.method() == Method::HEAD => {
                redirect(&format!("{root}login"))
            }
            None => {
                let host = host(request.headers());
                let frame = frame(&root, None, "Log in");
                page(StatusCode::UNAUTHORIZED, pages::login(&frame, Some(LoginProblem::SessionEnded), &host))
            }
        }
    };
    finish(response, new_cookie)
}

const CROSS_SITE: &str =
    "the browser says this form was sent from another site; actions are taken only from the console's own pages";

/// `Sec-Fetch-Site` says the request was made by another site's page
/// (`same-origin` and `none`, a typed or bookmarked URL, pass; browsers
/// that send no such header rely on the CSRF token alone).
fn from_another_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v != "same-origin" && v != "none")
}

/// Adds the security headers (and a new session's cookie).
fn finish(mut response: Response, new_cookie: Option<String>) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    if let Some(cookie) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

fn frame<'a>(root: &'a str, viewer: Option<&'a Viewer>, title: &'a str) -> Frame<'a> {
    Frame { root, csrf: viewer.map(|v| v.csrf.as_str()), title, refresh: None }
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// 303 to `location` (relative: the console may live below a prefix).
fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn too_many(root: &str, seconds: u64) -> Response {
    let message = format!("too many requests (api.rate_limit); retry in {seconds} s");
    let mut response =
        page(StatusCode::TOO_MANY_REQUESTS, pages::problem(&frame(root, None, "Slow down"), 429, &message));
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn host(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn problem_page(root: &str, viewer: Option<&Viewer>, error: ApiError) -> Response {
    let status = error.status;
    page(status, pages::problem(&frame(root, viewer, "Problem"), status.as_u16(), &error.message))
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], STYLESHEET)
        .into_response()
}

async fn login_form(State(state): State<ApiState>, request_headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if !state.sessions.login_required() {
        return redirect("./");
    }
    let problem = (Transport::of(&request_headers, &uri) == Transport::NetworkHttp).then_some(LoginProblem::PlainHttp);
    page(StatusCode::OK, pages::login(&frame("./", None, "Log in"), problem, &host(&request_headers)))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    key: String,
}

async fn login(
    State(state): State<ApiState>,
    request_headers: HeaderMap,
    uri: axum::http::Uri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let sessions = &state.sessions;
    if !sessions.login_required() {
        return redirect("./");
    }
    let transport = Transport::of(&request_headers, &uri);
    let show = |status, problem| {
        page(status, pages::login(&frame("./", None, "Log in"), Some(problem), &host(&request_headers)))
    };
    if transport == Transport::NetworkHttp {
        return show(StatusCode::FORBIDDEN, LoginProblem::PlainHttp);
    }
    let key = form.map(|Form(f)| f.key).unwrap_or_default();
    if !sessions.key_accepted(key.trim()) {
        tracing::warn!("console login with a wrong key");
        return show(StatusCode::UNAUTHORIZED, LoginProblem::WrongKey);
    }
    let session = sessions.open(Utc::now());
    let mut response = redirect("./");
    if let Ok(cookie) = HeaderValue::from_str(&sessions.set_cookie(&session, transport)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize, Default)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    force: Option<String>,
    confirm: Option<String>,
}

/// The form of an action, if its CSRF token is this session's.
fn checked_form(state: &ApiState, viewer: &Viewer, form: FormResult) -> Result<ActionForm, ApiError> {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if state.sessions.csrf_ok(&viewer.session, &form.csrf) {
        Ok(form)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the form's security token is missing or not this session's (CSRF); reload the page and try again",
        ))
    }
}

async fn logout(
    State(state): State<ApiState>,
    Extension(viewer): Extension<Viewer>,
    request_headers: HeaderMap,
    uri: axum::http::Uri,
    form: FormResult,
) -> Response {
    if let Err(error) = checked_form(&state, &viewer, form) {
        return problem_page("./", Some(&viewer), error);
    }
    let mut response = redirect(if state.sessions.login_required() { "./login" } else { "./" });
    let clear = Sessions::clear_cookie(Transport::of(&request_headers, &uri));
    if let Ok(cookie) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn overview(State(state): State<ApiState>, Extension(viewer): Extension<Viewer>) -> Response {
    let now = Utc::now();
    let all = state.config.connectors.iter().map(|c| status::connector_status(c, state.store.as_ref(), now));
    match futures_util::future::try_join_all(all).await {
        Ok(connectors) => {
            page(StatusCode::OK, pages::overview(&frame("./", Some(&viewer), "Connectors"), &connectors, now))
        }
        Err(e) => problem_page("./", Some(&viewer), e.into()),
    }
}

#[derive(Deserialize, Default)]
struct PageQuery {
    done: Option<String>,
    count: Option<String>,
}

async fn connector_page(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Extension(viewer): Extension<Viewer>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let done = Done::parse(query.done.as_deref(), query.count.as_deref());
    render_connector(&state, &id, &viewer, "../", done, None).await
}

/// A connector's page, with what the last action did or why it did not.
async fn render_connector(
    state: &ApiState,
    id: &str,
    viewer: &Viewer,
    root: &str,
    done: Option<Done>,
    problem: Option<&ApiError>,
) -> Response {
    let now = Utc::now();
    let loaded = async {
        let connector = find(state, id)?;
        let status = status::connector_status(connector, state.store.as_ref(), now).await?;
        let runs = state.store.runs(&connector.id, pages::HISTORY_RUNS).await?;
        // What the page shows; how many more, the counts say.
        let failed = admin::failed_first(state.store.as_ref(), &connector.id, pages::FAILED_SHOWN).await?;
        Ok::<_, ApiError>((status, runs, failed))
    };
    let (status, runs, failed) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return problem_page(root, Some(viewer), error),
    };
    let mut frame = frame(root, Some(viewer), id);
    if status.lease.is_some() {
        frame.refresh = Some(3);
    }
    let code = problem.map_or(StatusCode::OK, |p| p.status);
    let view = ConnectorPage {
        status: &status,
        runs: &runs,
        failed: &failed,
        done,
        problem: problem.map(|p| (p.status.as_u16(), p.message.as_str())),
        now,
    };
    page(code, pages::connector(&frame, &view))
}

async fn confirm_reset(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    reset_page(&state, &id, &viewer, false).await
}

async fn reset_page(state: &ApiState, id: &str, viewer: &Viewer, mismatch: bool) -> Response {
    let root = "../../";
    let loaded = async {
        let connector = find(state, id)?;
        Ok::<_, ApiError>(status::connector_status(connector, state.store.as_ref(), Utc::now()).await?)
    };
    match loaded.await {
        Ok(status) => {
            let code = if mismatch { StatusCode::BAD_REQUEST } else { StatusCode::OK };
            page(code, pages::confirm_reset(&frame(root, Some(viewer), "Reset"), &status, mismatch))
        }
        Err(error) => problem_page(root, Some(viewer), error),
    }
}

type FormResult = Result<Form<ActionForm>, FormRejection>;

/// The handler of one action's route.
macro_rules! action_route {
    ($name:ident, $action:expr) => {
        async fn $name(
            state: State<ApiState>,
            id: Path<String>,
            viewer: Extension<Viewer>,
            form: FormResult,
        ) -> Response {
            act(state, id, viewer, form, $action).await
        }
    };
}
action_route!(trigger, Action::Trigger);
action_route!(pause, Action::Pause);
action_route!(resume, Action::Resume);
action_route!(retry_failed, Action::RetryFailed);
action_route!(reset, Action::Reset);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Trigger,
    Pause,
    Resume,
    RetryFailed,
    Reset,
}

/// One action: the CSRF token first, then the same call the JSON API makes;
/// a redirect to the connector's page, or that page with why not.
async fn act(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Extension(viewer): Extension<Viewer>,
    form: FormResult,
    action: Action,
) -> Response {
    let root = "../../";
    let form = match checked_form(&state, &viewer, form) {
        Ok(form) => form,
        Err(error) => return problem_page(root, Some(&viewer), error),
    };
    let connector = match find(&state, &id) {
        Ok(connector) => connector,
        Err(error) => return problem_page(root, Some(&viewer), error),
    };
    if action == Action::Reset && form.confirm.as_deref().map(str::trim) != Some(connector.id.as_str()) {
        return reset_page(&state, &id, &viewer, true).await;
    }
    let store = state.store.as_ref();
    let outcome: Result<Done, ApiError> = match action {
        Action::Trigger => {
            state.launcher.launch(connector, form.force.is_some()).await.map(|_| Done::Triggered).map_err(launch_error)
        }
        Action::Pause => {
            admin::set_paused(store, &connector.id, true).await.map(|()| Done::Paused).map_err(state_error)
        }
        Action::Resume => {
            admin::set_paused(store, &connector.id, false).await.map(|()| Done::Resumed).map_err(state_error)
        }
        Action::RetryFailed => {
            admin::retry_failed(store, &connector.id).await.map(|n| Done::Retried(n as u64)).map_err(state_error)
        }
        Action::Reset => state.launcher.reset(connector).await.map_err(launch_error).map(|answer| match answer {
            ResetAnswer::Done => Done::Reset,
            ResetAnswer::Accepted => Done::ResetAccepted,
        }),
    };
    match outcome {
        Ok(done) => {
            tracing::info!(connector_id = %connector.id, action = ?action, "console action");
            redirect(&format!("../{}?{}", connector.id, done.query()))
        }
        Err(error) => render_connector(&state, &id, &viewer, root, None, Some(&error)).await,
    }
}

fn launch_error(error: LaunchError) -> ApiError {
    error.into()
}

fn state_error(error: StateError) -> ApiError {
    error.into()
}

#[cfg(test)]
mod tests;
