//! The router alone, with an in-memory launcher: the OpenAPI table and the
//! routes agree, errors have one shape, the key gates everything but `/health`.

use super::*;
use crate::config::load_str;
use crate::state::json::JsonStore;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(super) struct FakeLauncher {
    launched: AtomicUsize,
    releases: bool,
    store: Arc<dyn StateStore>,
}

const LAST_ERROR: &str = "GET http://10.0.0.7:8080/memory/CTX-secret-context answered HTTP 502 (body: upstream said x)";

#[async_trait]
impl RunLauncher for FakeLauncher {
    async fn launch(&self, connector: &ConnectorConfig, _force: bool) -> Result<LaunchOutcome, LaunchError> {
        if self.launched.fetch_add(1, Ordering::SeqCst) > 0 {
            return Err(LaunchError::AlreadyRunning {
                connector: connector.id.clone(),
                owner: RunId::new("r1"),
                expires_at: None,
            });
        }
        Ok(LaunchOutcome { connector_id: connector.id.clone(), run_id: RunId::new("r1"), status: "accepted".into() })
    }

    async fn reset(&self, connector: &ConnectorConfig) -> Result<ResetAnswer, LaunchError> {
        let leases =
            if self.releases { crate::admin::AbandonedLeases::Release } else { crate::admin::AbandonedLeases::Keep };
        crate::admin::reset(self.store.as_ref(), &connector.id, leases, Utc::now()).await?;
        Ok(ResetAnswer::Done)
    }

    fn last_error(&self) -> Option<String> {
        Some(LAST_ERROR.into())
    }
}

pub(super) const YAML: &str = r#"
memory_api:
  url: "http://127.0.0.1:9"
  api_key: "mem-key"
lightrag:
  api:
    url: "http://127.0.0.1:9"
connectors:
  - id: "c1"
    context_id: "CTX"
    schedule: { type: interval, interval_hours: 1 }
api:
  enable_auth: true
  api_key: "the-key"
"#;

async fn serve() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    (serve_with(store, false).await, dir)
}

async fn serve_with(store: Arc<dyn StateStore>, releases: bool) -> String {
    serve_yaml(YAML, store, releases).await
}

pub(super) async fn serve_yaml(yaml: &str, store: Arc<dyn StateStore>, releases: bool) -> String {
    let config = load_str(yaml, "test.yaml", &crate::config::Environment::from_map(Vec::new())).unwrap();
    let launcher = FakeLauncher { launched: AtomicUsize::new(0), releases, store: Arc::clone(&store) };
    let app = router(Arc::new(config), store, Arc::new(launcher));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A killed run's lease (its process, on this host, is gone): `serve`'s
/// reset releases it; a launcher that cannot tell (Lambda) answers 409
/// until the lease expires.
#[tokio::test]
async fn reset_releases_a_dead_runs_lease_only_where_the_launcher_can_tell() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let dead = RunId::new(format!("20250101T000000000Z-00000000@{}:{}", crate::liveness::this_host(), u32::MAX - 1));
    let c1 = crate::ids::ConnectorId::new("c1");
    let client = reqwest::Client::new();
    for releases in [false, true] {
        store.try_acquire_lease(&c1, &dead, Utc::now(), std::time::Duration::from_secs(3600)).await.unwrap();
        let url = serve_with(Arc::clone(&store), releases).await;
        let answer =
            client.post(format!("{url}/connectors/c1/reset")).header("X-API-Key", "the-key").send().await.unwrap();
        let status = answer.status().as_u16();
        assert_eq!(status, if releases { 200 } else { 409 }, "releases: {releases}: {}", answer.text().await.unwrap());
    }
    assert!(store.lease(&c1).await.unwrap().is_none(), "released, then the reset's own hold is gone too");
}

#[tokio::test]
async fn every_documented_route_exists_and_answers_json() {
    let (url, _dir) = serve().await;
    let client = reqwest::Client::new();
    for (method, path, _, ok, secured) in openapi::ROUTES {
        // The look-ups need a name, and LightRAG (nothing listens at its
        // URL here): they answer their documented errors, in the error shape.
        let (query, body, expected) = match *path {
            "/lookup/resolve" => ("?name=memory_CTX_1.txt", None, 404),
            "/lookup/by-memory" => ("?connector_id=c1&memory_id=1", None, 404),
            "/lookup/by-entity" => ("?name=Anna", None, 502),
            "/connectors/{id}/ask" => ("", Some(serde_json::json!({"question": "Who is Anna?"})), 502),
            _ => ("", None, *ok),
        };
        let path = path.replace("{id}", "c1");
        let request = if *method == "get" {
            client.get(format!("{url}{path}{query}"))
        } else {
            client.post(format!("{url}{path}{query}")).json(&body.unwrap_or_default())
        };
        let answer = request.header("X-API-Key", "the-key").send().await.unwrap();
        assert_eq!(answer.status().as_u16(), expected, "{method} {path}");
        let answer: serde_json::Value = answer.json().await.unwrap();
        if expected != *ok {
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{method} {path}: {answer}");
            if expected == 502 {
                assert!(message.contains("http://127.0.0.1:9"), "names LightRAG: {message}");
            }
        }
        if *secured {
            let request =
                if *method == "get" { client.get(format!("{url}{path}")) } else { client.post(format!("{url}{path}")) };
            assert_eq!(request.send().await.unwrap().status().as_u16(), 401, "{method} {path} without key");
        }
    }
}

#[tokio::test]
async fn errors_have_one_shape() {
    let (url, _dir) = serve().await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{url}{path}")).bearer_auth("the-key").send();
    let answer = get("/connectors/zz/status").await.unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let answer = get("/connectors/c1/history?limit=abc").await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let trigger = |_: ()| client.post(format!("{url}/connectors/c1/trigger")).bearer_auth("the-key").send();
    assert_eq!(trigger(()).await.unwrap().status().as_u16(), 202);
    let conflict = trigger(()).await.unwrap();
    assert_eq!(conflict.status().as_u16(), 409);
    let body: serde_json::Value = conflict.json().await.unwrap();
    assert_eq!(body["error"]["code"], "already_running");
    // The look-ups: bad input is a 400 naming what is wrong, before any call to LightRAG.
    let ask = |id: &str, body: serde_json::Value| {
        client.post(format!("{url}/connectors/{id}/ask")).bearer_auth("the-key").json(&body).send()
    };
    for (answer, status, needle) in [
        (get("/lookup/resolve").await.unwrap(), 400, "name"),
        (get("/lookup/resolve?name=%3CSEP%3E").await.unwrap(), 400, "name is empty"),
        (get("/lookup/by-memory?connector_id=c1").await.unwrap(), 400, "memory_id"),
        (get("/lookup/by-entity?name=%20").await.unwrap(), 400, "name is empty"),
        (ask("c1", serde_json::json!({"qestion": "Who is Anna?"})).await.unwrap(), 400, "qestion"),
        (ask("c1", serde_json::json!({"question": "Who is Anna?", "mode": "fast"})).await.unwrap(), 400, "mix"),
        (ask("c1", serde_json::json!({"question": " a "})).await.unwrap(), 400, "3 to 65536"),
        (ask("zz", serde_json::json!({"question": "Who is Anna?"})).await.unwrap(), 404, "unknown connector `zz`"),
    ] {
        assert_eq!(answer.status().as_u16(), status);
        let body: serde_json::Value = answer.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{needle}: {body}");
    }
    let text =
        client.get(format!("{url}/connectors/c1")).bearer_auth("the-key").send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("mem-key") && !text.contains("the-key"), "{text}");
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let (url, _dir) = serve().await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{url}/connectors"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "x-api-key")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(
        allowed.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("http://localhost:3000")
    );
    let denied = preflight("http://evil.example").await.unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());
}

/// Whatever reached the router as a health endpoint (validation refuses
/// these, the router must not trust that): it never panics, `/health`
/// answers and every API route still routes.
#[tokio::test]
async fn the_router_never_panics_on_a_health_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let base = load_str(YAML, "test.yaml", &crate::config::Environment::from_map(Vec::new())).unwrap();
    let client = reqwest::Client::new();
    let endpoints = [
        "/connectors",
        "/connectors/{id}",
        "/openapi.json",
        "/:id",
        "/{*rest}",
        "/*x",
        "/a//b",
        "x",
        "/",
        "/login",
        "/console/x",
    ];
    for endpoint in endpoints {
        let mut config = base.clone();
        config.monitoring.health_check.endpoint = endpoint.to_owned();
        let launcher =
            Arc::new(FakeLauncher { launched: AtomicUsize::new(0), releases: false, store: Arc::clone(&store) });
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            router(Arc::new(config), Arc::clone(&store), launcher)
        }));
        let app = built.unwrap_or_else(|_| panic!("the router panicked on the health endpoint {endpoint:?}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        assert_eq!(client.get(format!("{url}/health")).send().await.unwrap().status().as_u16(), 200, "{endpoint}");
        let listed = client.get(format!("{url}/connectors")).bearer_auth("the-key").send().await.unwrap();
        assert_eq!(listed.status().as_u16(), 200, "{endpoint}");
    }
}

/// The routes validation keeps the health endpoint away from are the
/// router's, the console's among them.
#[test]
fn every_api_route_is_under_a_reserved_prefix() {
    let console = openapi::CONSOLE_ROUTES.iter().map(|(_, path)| path);
    for path in openapi::ROUTES.iter().map(|(_, path, ..)| path).chain(console) {
        let reserved =
            crate::config::API_ROUTE_PREFIXES.iter().any(|p| path == p || path.starts_with(&format!("{p}/")));
        assert!(reserved || ["/health", "/"].contains(path), "{path} is not in config::API_ROUTE_PREFIXES");
        assert_eq!(crate::config::health_endpoint_problem(path).is_some(), *path != "/health", "{path}");
    }
}

/// Issue 15, item 10: `/health` needs no key and gave away `last_error`
/// (internal URLs, context ids, upstream bodies). Without a key it now says
/// only up/down and the version; the details need the key.
#[tokio::test]
async fn health_without_a_key_says_only_up_and_version() {
    let (url, _dir) = serve().await;
    let client = reqwest::Client::new();
    let open: serde_json::Value = client.get(format!("{url}/health")).send().await.unwrap().json().await.unwrap();
    let fields: Vec<&str> = open.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["status", "version"], "{open}");
    assert_eq!(open["status"], "healthy");
    for wrong in ["wrong-key", ""] {
        let answer = client.get(format!("{url}/health")).header("X-API-Key", wrong).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "a probe with a wrong key is still answered");
        assert!(!answer.text().await.unwrap().contains("10.0.0.7"));
    }
    let keyed: serde_json::Value =
        client.get(format!("{url}/health")).bearer_auth("the-key").send().await.unwrap().json().await.unwrap();
    assert_eq!(keyed["last_error"], LAST_ERROR, "{keyed}");
    assert!(keyed["uptime_seconds"].is_u64() && keyed["active_jobs"].is_u64(), "{keyed}");
}

/// Issue 15, item 12: the rate limiter sat before the key check, so a
/// client without a key at 5 requests/s locked the operator out. Keyed
/// requests now have the budget to themselves; unkeyed ones get a smaller
/// one of their own.
#[tokio::test]
async fn an_unkeyed_flood_does_not_lock_out_the_key_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let yaml = format!("{YAML}  rate_limit:\n    enabled: true\n    requests_per_minute: 8\n");
    let url = serve_yaml(&yaml, store, false).await;
    let client = reqwest::Client::new();
    let mut unkeyed = Vec::new();
    for _ in 0..20 {
        unkeyed.push(client.get(format!("{url}/connectors")).send().await.unwrap().status().as_u16());
    }
    assert_eq!(unkeyed.iter().filter(|s| **s == 401).count(), 2, "a quarter of the budget: {unkeyed:?}");
    assert!(unkeyed[2..].iter().all(|s| *s == 429), "{unkeyed:?}");
    for i in 0..8 {
        let answer = client.get(format!("{url}/connectors")).header("X-API-Key", "the-key").send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "keyed request {i}");
    }
    let over = client.get(format!("{url}/connectors")).header("X-API-Key", "the-key").send().await.unwrap();
    assert_eq!(over.status().as_u16(), 429, "the keyed budget still holds");
    assert!(over.headers().contains_key("retry-after"));
}

/// Issue 15, item 12, by another method: with CORS off (the packaged
/// production config), an `OPTIONS` request reached the gate and was let
/// through on the key holder's budget without a key, so a client without a
/// key locked the operator out with `OPTIONS` instead of `GET`.
#[tokio::test]
async fn an_unkeyed_options_flood_does_not_lock_out_the_key_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let yaml =
        format!("{YAML}  cors:\n    enabled: false\n  rate_limit:\n    enabled: true\n    requests_per_minute: 8\n");
    let url = serve_yaml(&yaml, store, false).await;
    let client = reqwest::Client::new();
    let mut unkeyed = Vec::new();
    for _ in 0..20 {
        let answer = client.request(reqwest::Method::OPTIONS, format!("{url}/connectors")).send().await.unwrap();
        unkeyed.push(answer.status().as_u16());
    }
    assert!(unkeyed.iter().all(|s| *s == 401 || *s == 429), "no key, no answer but a refusal: {unkeyed:?}");
    for i in 0..8 {
        let answer = client.get(format!("{url}/connectors")).header("X-API-Key", "the-key").send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "keyed request {i}");
    }
}
