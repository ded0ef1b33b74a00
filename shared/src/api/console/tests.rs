//! The console over HTTP on loopback (the router alone, with the API tests'
//! launcher): login, cookies, CSRF, escaping, the reset confirmation. The
//! browser drives it end to end in `tests/tests/e2e_console.rs`.

use super::super::openapi;
use super::super::tests::{YAML, serve_yaml};
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::json::JsonStore;
use crate::state::{Checkpoint, EntryStatus, LedgerEntry, RunCounts, RunRecord, RunStatus, StateStore, Trigger};
use reqwest::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use std::sync::Arc;

const KEY: &str = "the-key";
/// A memory id as hostile as the Memory API may send: markup, quotes, a
/// line break, a right-to-left override and a bell.
const HOSTILE_ID: &str = "<script>alert(\"id\")</script>'\"\n\u{202E}gpj.exe\u{7}";
const HOSTILE_ERROR: &str = "LightRAG: <img src=x onerror=alert(1)> \"quoted\" \u{1b}[31m red";

struct Console {
    url: String,
    http: reqwest::Client,
    store: Arc<dyn StateStore>,
    _dir: tempfile::TempDir,
}

async fn console(yaml: &str) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let url = serve_yaml(yaml, Arc::clone(&store), true).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Console { url, http, store, _dir: dir }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

impl Console {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    fn post(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(pairs))
    }

    /// Logs in; the cookie as the browser sends it back.
    async fn login(&self) -> String {
        let answer = self.post("/login", &[("key", KEY)]).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 303);
        assert_eq!(answer.headers()[LOCATION], "./");
        let cookie = answer.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// A page's text, and the CSRF token of its forms.
    async fn page(&self, path: &str, cookie: &str) -> (String, String) {
        let answer = self.get(path).header(COOKIE, cookie).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        let body = answer.text().await.unwrap();
        (body.clone(), csrf_of(&body))
    }

    async fn paused(&self) -> bool {
        self.store.connector_state(&ConnectorId::new("c1")).await.unwrap().is_some_and(|s| s.paused)
    }
}

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).map(|at| at + marker.len()).expect("a form with a CSRF token");
    body[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn login_keeps_a_session_cookie_never_the_key() {
    let c = console(YAML).await;
    let first = c.get("/").send().await.unwrap();
    assert_eq!((first.status().as_u16(), first.headers()[LOCATION].to_str().unwrap()), (303, "./login"));
    let deep = c.get("/console/c1/reset").send().await.unwrap();
    assert_eq!(deep.headers()[LOCATION], "../../login");
    let form = c.get("/login").send().await.unwrap();
    assert_eq!(form.status().as_u16(), 200);
    let csp = form.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src") && csp.contains("frame-ancestors 'none'")
    );
    assert_eq!(form.headers()["cache-control"], "no-store");
    assert!(form.text().await.unwrap().contains("type=\"password\""));

    for wrong in ["wrong-key", "", "the-key-and-more"] {
        let answer = c.post("/login", &[("key", wrong)]).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{wrong:?}");
        assert!(answer.headers().get(SET_COOKIE).is_none());
        assert!(answer.text().await.unwrap().contains("not the API key"));
    }
    let answer = c.post("/login", &[("key", KEY)]).send().await.unwrap();
    let set_cookie = answer.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("mc_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain http on loopback: {set_cookie}");
    assert!(!set_cookie.contains(KEY), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();
    let (overview, _) = c.page("/", cookie).await;
    assert!(overview.contains("href=\"./console/c1\""), "{overview}");
    assert!(!overview.contains(KEY) && !overview.contains("mem-key"));
    // The JSON API still wants the key itself, not the cookie.
    let api = c.http.get(format!("{}/connectors", c.url)).header(COOKIE, cookie).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 401);
}

#[tokio::test]
async fn the_key_is_taken_only_over_https_or_loopback() {
    let c = console(YAML).await;
    let https = c.post("/login", &[("key", KEY)]).header("x-forwarded-proto", "https").send().await.unwrap();
    let cookie = https.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-mc_session=") && cookie.ends_with("; Secure"), "{cookie}");
    let lan = c.post("/login", &[("key", KEY)]).header(HOST, "192.168.1.5:9622").send().await.unwrap();
    assert_eq!(lan.status().as_u16(), 403);
    assert!(lan.headers().get(SET_COOKIE).is_none());
    assert!(lan.text().await.unwrap().contains("clear text"));
    let form = c.get("/login").header(HOST, "192.168.1.5:9622").send().await.unwrap();
    assert!(form.text().await.unwrap().contains("ssh -L"));
}

#[tokio::test]
async fn every_action_needs_this_sessions_csrf_token() {
    let c = console(YAML).await;
    let cookie = c.login().await;
    let (_, token) = c.page("/console/c1", &cookie).await;
    let other_session = c.login().await;
    let (_, other_token) = c.page("/", &other_session).await;
    assert_ne!(token, other_token);
    for (pairs, headers) in [
        (vec![], vec![]),
        (vec![("csrf", "")], vec![]),
        (vec![("csrf", other_token.as_str())], vec![]),
        (vec![("csrf", token.as_str())], vec![("sec-fetch-site", "cross-site")]),
        (vec![("csrf", token.as_str())], vec![("sec-fetch-site", "same-site")]),
    ] {
        let mut request = c.post("/console/c1/pause", &pairs).header(COOKIE, &cookie);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{pairs:?} {headers:?}");
        assert!(!c.paused().await, "refused, not done: {pairs:?} {headers:?}");
    }
    // Without a session at all: the login form, nothing done.
    let anonymous = c.post("/console/c1/pause", &[("csrf", token.as_str())]).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(!c.paused().await);
    let done = c
        .post("/console/c1/pause", &[("csrf", &token)])
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!((done.status().as_u16(), done.headers()[LOCATION].to_str().unwrap()), (303, "../c1?done=paused"));
    assert!(c.paused().await);
    let (page, _) = c.page("/console/c1?done=paused", &cookie).await;
    assert!(page.contains("Paused: the schedule skips") && page.contains(">Resume<"), "{page}");
    // Logging out needs the token too, then the cookie is cleared.
    let out = c.post("/logout", &[("csrf", &token)]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(out.status().as_u16(), 303);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
}

/// The connector's page reads the failed entries it shows, not every one
/// the API's listing would (up to 10,000 on each view, into the api
/// function's memory); how many more there are comes from the counts. The
/// store is counted as DynamoDB would charge it (the cost model).
#[tokio::test]
async fn the_connector_page_reads_only_the_failed_entries_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let model = Arc::new(crate::state::cost::model::CostModel::new(inner));
    let url = serve_yaml(YAML, Arc::clone(&model) as Arc<dyn StateStore>, true).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let c = Console { url, http, store: Arc::clone(&model) as Arc<dyn StateStore>, _dir: dir };
    let now = chrono::Utc::now();
    let shown = super::pages::FAILED_SHOWN;
    let entries = (0..shown + 700)
        .map(|i| LedgerEntry::new(MemoryId::new(format!("m{i:05}")), format!("m{i}.txt"), EntryStatus::Failed, now))
        .collect();
    c.store.checkpoint(&ConnectorId::new("c1"), Checkpoint { entries, ..Default::default() }).await.unwrap();
    let cookie = c.login().await;

    model.take();
    let (page, _) = c.page("/console/c1", &cookie).await;
    let read = model.take().read_units;
    assert!(page.contains("m00000") && !page.contains(&format!("m{:05}", shown)), "the first {shown} shown");
    assert!(page.contains("… and 700 more"), "{page}");
    assert!(read < shown as u64 + 100, "read {read} units for a page that shows {shown} entries");
}

#[tokio::test]
async fn hostile_ids_errors_and_descriptions_are_shown_escaped() {
    let yaml = YAML
        .replace("    context_id: \"CTX\"\n", "    context_id: \"CTX\"\n    description: \"<b>desc</b> \\u202E\"\n");
    let c = console(&yaml).await;
    let c1 = ConnectorId::new("c1");
    let now = chrono::Utc::now();
    let mut entry = LedgerEntry::new(MemoryId::new(HOSTILE_ID), "x.txt".into(), EntryStatus::Dead, now);
    entry.last_error = Some(HOSTILE_ERROR.into());
    let run = RunRecord {
        run_id: RunId::new("r\"1"),
        connector_id: c1.clone(),
        trigger: Trigger::Api,
        started_at: now,
        finished_at: Some(now),
        status: RunStatus::Failed,
        counts: RunCounts { new: 3, failed: 1, ..Default::default() },
        possibly_truncated: false,
        error: Some(HOSTILE_ERROR.into()),
    };
    c.store.checkpoint(&c1, Checkpoint { entries: vec![entry], run: Some(run), ..Default::default() }).await.unwrap();
    let cookie = c.login().await;
    for path in ["/", "/console/c1"] {
        let (page, _) = c.page(path, &cookie).await;
        for raw in ["<script", "<img", "<b>", "\u{202E}", "\u{7}", "\u{1b}"] {
            assert!(!page.contains(raw), "{raw:?} reached {path} unescaped");
        }
        assert!(page.contains("&lt;b&gt;desc&lt;/b&gt; \\u{202e}"), "{page}");
    }
    let (page, _) = c.page("/console/c1", &cookie).await;
    assert!(
        page.contains("&lt;script&gt;alert(&quot;id&quot;)&lt;/script&gt;'&quot;\\n\\u{202e}gpj.exe\\u{7}"),
        "{page}"
    );
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot; \\u{1b}[31m red"), "{page}");
    assert!(page.contains("title=\"r&quot;1\""), "{page}");
    assert!(page.contains("<svg class=\"chart\""), "{page}");
}

#[tokio::test]
async fn a_reset_needs_the_connector_id_typed() {
    let c = console(YAML).await;
    let c1 = ConnectorId::new("c1");
    let entry = LedgerEntry::new(MemoryId::new("m1"), "m1.txt".into(), EntryStatus::Failed, chrono::Utc::now());
    c.store.checkpoint(&c1, Checkpoint { entries: vec![entry], ..Default::default() }).await.unwrap();
    let cookie = c.login().await;
    let (confirm, token) = c.page("/console/c1/reset", &cookie).await;
    assert!(confirm.contains("action=\"../../console/c1/reset\"") && confirm.contains("1 memories"), "{confirm}");
    for typed in [None, Some("c2"), Some("")] {
        let mut pairs = vec![("csrf", token.as_str())];
        pairs.extend(typed.map(|t| ("confirm", t)));
        let answer = c.post("/console/c1/reset", &pairs).header(COOKIE, &cookie).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 400, "{typed:?}");
        assert!(answer.text().await.unwrap().contains("does not match"));
        assert_eq!(c.store.status_counts(&c1).await.unwrap().values().sum::<u64>(), 1, "kept");
    }
    let retried = c.post("/console/c1/retry-failed", &[("csrf", &token)]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(retried.headers()[LOCATION], "../c1?done=retried&count=1");
    let answer = c
        .post("/console/c1/reset", &[("csrf", &token), ("confirm", " c1 ")])
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!((answer.status().as_u16(), answer.headers()[LOCATION].to_str().unwrap()), (303, "../c1?done=reset"));
    assert_eq!(c.store.status_counts(&c1).await.unwrap().values().sum::<u64>(), 0);
}

/// A refused action shows the connector's page with why, its links still
/// right from the action's path.
#[tokio::test]
async fn a_refused_trigger_says_why_on_the_connectors_page() {
    let c = console(YAML).await;
    let cookie = c.login().await;
    let (_, token) = c.page("/console/c1", &cookie).await;
    let first = c.post("/console/c1/trigger", &[("csrf", &token)]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(first.headers()[LOCATION], "../c1?done=triggered");
    let second = c.post("/console/c1/trigger", &[("csrf", &token)]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 409);
    let page = second.text().await.unwrap();
    assert!(page.contains("Not done (HTTP 409)") && page.contains("already running"), "{page}");
    assert!(page.contains("action=\"../../console/c1/pause\""), "{page}");
    let unknown = c.post("/console/nope/trigger", &[("csrf", &token)]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn with_auth_off_every_visitor_gets_a_session_for_the_token() {
    let c = console(&YAML.replace("enable_auth: true", "enable_auth: false")).await;
    let answer = c.get("/").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let cookie = answer.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = csrf_of(&answer.text().await.unwrap());
    assert_eq!(c.get("/login").send().await.unwrap().status().as_u16(), 303);
    let refused = c.post("/console/c1/pause", &[]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let done = c.post("/console/c1/pause", &[("csrf", &token)]).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(done.status().as_u16(), 303);
    assert!(c.paused().await);
}

/// The routes the OpenAPI document leaves out are the console's, and each
/// answers a page (or the stylesheet), never the API's JSON.
#[tokio::test]
async fn the_undocumented_routes_are_the_consoles_pages() {
    let c = console(YAML).await;
    let cookie = c.login().await;
    let (_, token) = c.page("/", &cookie).await;
    for (method, path) in openapi::CONSOLE_ROUTES {
        assert!(!openapi::ROUTES.iter().any(|(m, p, ..)| m == method && p == path), "{method} {path} is in both");
        let path = path.replace("{id}", "c1");
        let request = if *method == "get" {
            c.get(&path)
        } else {
            let pairs = [("csrf", token.as_str()), ("confirm", "c1"), ("key", KEY)];
            c.post(&path, &pairs)
        };
        let answer = request.header(COOKIE, &cookie).send().await.unwrap();
        assert!([200, 303].contains(&answer.status().as_u16()), "{method} {path}: {}", answer.status());
        let kind = answer.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(answer.status().as_u16() == 303 || kind.starts_with("text/"), "{method} {path}: {kind}");
        assert!(answer.headers().contains_key("content-security-policy"), "{method} {path}");
    }
}
