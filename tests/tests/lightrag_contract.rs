//! The sink contract: one suite, run against the LightRAG simulator and
//! against a real LightRAG 1.5.7 server (started by `make test` through
//! `tests/scripts/with-lightrag.sh`). Whatever the real server does that the
//! simulator does not is a simulator bug.
//!
//! Each case talks HTTP as the connector does and checks the connector's
//! sink (`ApiSink`) on top. Names are unique per case and run, so the cases
//! share one real server.

use connector_core::config::LightragApiConfig;
use connector_core::lightrag::api::ApiSink;
use connector_core::lightrag::{
    DocumentSink, InsertOutcome, RemoteStatus, Removal, ReplaceOutcome, SinkErrorKind, TrackedDoc, doc_id,
};
use connector_core::secrets::Secret;
use connector_core::transform::Document;
use serde_json::{Value, json};
use sims::harness::wait_until;
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use std::time::{Duration, Instant};

struct Target {
    url: String,
    key: Option<String>,
    sim: Option<LightragSim>,
    http: reqwest::Client,
    run: String,
}

impl Target {
    fn is_real(&self) -> bool {
        self.sim.is_none()
    }

    /// A name no other case or run uses.
    fn name(&self, case: &str, n: u32) -> String {
        format!("contract_{case}_{}_{n}.txt", self.run)
    }

    fn sink(&self, key: Option<&str>) -> ApiSink {
        let config = LightragApiConfig {
            url: self.url.clone(),
            api_key: key.map(Secret::new),
            timeout: 10,
            confirm_wait_seconds: 0,
            ..Default::default()
        };
        ApiSink::new(&config)
            .expect("sink")
            .with_first_retry_delay(Duration::from_millis(50))
            .with_replace_wait(Duration::from_secs(60))
    }

    fn own_sink(&self) -> ApiSink {
        self.sink(self.key.as_deref())
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>, key: Option<&str>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let answer = request.send().await.expect("request");
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body), self.key.as_deref()).await
    }

    /// Inserts; a 409 "clearing or deleting" (another case's deletion is
    /// running on the shared server) is waited out, as the connector does.
    async fn insert(&self, text: &str, file_source: &str) -> (u16, Value) {
        self.post_waiting("/documents/text", json!({"text": text, "file_source": file_source})).await
    }

    /// `post`, waiting out a 409 "clearing or deleting" of another case.
    async fn post_waiting(&self, path: &str, request: Value) -> (u16, Value) {
        let started = Instant::now();
        loop {
            let (status, body) = self.post(path, request.clone()).await;
            let deleting = status == 409 && body["detail"].as_str().is_some_and(|d| d.contains("clearing or deleting"));
            if !deleting || started.elapsed() > Duration::from_secs(30) {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Enqueues inserts of names containing `marker` `seconds` after their
    /// 200 (0: at once again): the simulator's switch, or the real servers'
    /// hook through the fake LLM (`tests/lightrag/serve.py`).
    async fn slow_enqueue(&self, marker: &str, seconds: u64) {
        match &self.sim {
            Some(sim) => sim.slow_enqueue(marker, Duration::from_secs(seconds)),
            None => {
                let llm = std::env::var("FAKE_LLM_URL").expect("FAKE_LLM_URL comes with the real servers");
                let answer = self
                    .http
                    .post(format!("{llm}/_control/slow_enqueue"))
                    .json(&json!({"marker": marker, "seconds": seconds}))
                    .send()
                    .await
                    .expect("slow_enqueue");
                assert!(answer.status().is_success());
            }
        }
    }

    /// All documents whose file_path starts with `prefix`, via the paginated list.
    async fn listed(&self, prefix: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1..=50 {
            let (status, body) = self
                .post(
                    "/documents/paginated",
                    json!({"status_filters": null, "page": page, "page_size": 200, "sort_field": "id", "sort_direction": "asc"}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let docs = body["documents"].as_array().cloned().unwrap_or_default();
            out.extend(docs.into_iter().filter(|d| d["file_path"].as_str().is_some_and(|p| p.starts_with(prefix))));
            if body["pagination"]["has_next"] != json!(true) {
                break;
            }
        }
        out
    }

    /// Waits until the document named `file_path` has one of `statuses`.
    async fn wait_status(&self, file_path: &str, statuses: &[&str]) -> Value {
        let started = Instant::now();
        loop {
            if let Some(doc) = self.listed(file_path).await.into_iter().find(|d| d["file_path"] == json!(file_path))
                && statuses.iter().any(|s| doc["status"] == json!(s))
            {
                return doc;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{file_path} never reached {statuses:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn run_tag() -> String {
    format!("{:x}{:04x}", std::process::id(), fastrand_u16())
}

fn fastrand_u16() -> u16 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) & 0xffff)
        as u16
}

async fn simulator(keyed: bool) -> Target {
    let key = keyed.then(|| "sim-contract-key".to_owned());
    let sim = LightragSim::start(LightragSimOptions { api_key: key.clone(), ..Default::default() }).await.expect("sim");
    Target { url: sim.url(), key, sim: Some(sim), http: reqwest::Client::new(), run: run_tag() }
}

/// The real server `make test` started, or `None` (said loudly) without it.
fn real(keyed: bool) -> Option<Target> {
    let var = if keyed { "LIGHTRAG_REAL_KEYED_URL" } else { "LIGHTRAG_REAL_URL" };
    let test = std::thread::current().name().unwrap_or("lightrag_contract").to_owned();
    let url = connector_core::test_support::required_var(
        var,
        &test,
        "run `make test` (tests/scripts/with-lightrag.sh) to test against a real LightRAG",
    )?;
    let key = if keyed { std::env::var("LIGHTRAG_REAL_KEY").ok() } else { None };
    Some(Target { url, key, sim: None, http: reqwest::Client::new(), run: run_tag() })
}

macro_rules! contract {
    ($case:ident, keyed = $keyed:expr) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn simulator() {
                super::$case(&super::simulator($keyed).await).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn real_lightrag() {
                if let Some(target) = super::real($keyed) {
                    super::$case(&target).await;
                }
            }
        }
    };
}

contract!(insert_and_identity, keyed = false);
async fn insert_and_identity(t: &Target) {
    let name = t.name("insert", 1);
    let (status, body) =
        t.insert("Ada met Grace in London to talk about engines.", &format!("memories/2024/{name}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("success"));
    let track = body["track_id"].as_str().expect("track id").to_owned();
    assert!(track.starts_with("insert_"), "{track}");
    let doc = t.wait_status(&name, &["processed"]).await;
    assert_eq!(doc["id"], json!(doc_id(&name).as_str()), "the id is doc- + md5(basename)");
    // track_status reports it; the connector's sink reads that.
    let tracked = [TrackedDoc { doc_id: doc_id(&name), track_id: Some(track.as_str().into()), submitted_at: None }];
    let statuses = t.own_sink().statuses(&tracked).await.expect("statuses");
    assert_eq!(statuses.get(&doc_id(&name)), Some(&RemoteStatus::Processed));
}

contract!(reinsert_conflicts, keyed = false);
async fn reinsert_conflicts(t: &Target) {
    let name = t.name("reinsert", 1);
    assert_eq!(t.insert("Bruno sailed from Lisbon.", &name).await.0, 200);
    t.wait_status(&name, &["pending", "processing", "processed"]).await;
    let (status, body) = t.insert("Entirely different text.", &format!("other/folder/{name}")).await;
    assert_eq!(status, 409, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with(&format!("Document storage already contains '{name}' (Status: ")), "{detail}");
    let doc = Document::new(name.clone(), "Bruno sailed from Lisbon again.".into());
    match t.own_sink().insert(&doc).await {
        Ok(InsertOutcome::AlreadyStored { .. }) => {}
        other => panic!("expected AlreadyStored, got {other:?}"),
    }
}

contract!(same_text_other_name, keyed = false);
async fn same_text_other_name(t: &Target) {
    let (a, b) = (t.name("dup", 1), t.name("dup", 2));
    let text = format!("Carla visited Kyoto with Daniel ({}).", t.run);
    assert_eq!(t.insert(&text, &a).await.0, 200);
    t.wait_status(&a, &["processed", "processing", "pending"]).await;
    let (status, body) = t.insert(&text, &b).await;
    assert_eq!(status, 200, "{body}");
    let dup = t.wait_status(&b, &["failed"]).await;
    assert!(dup["id"].as_str().is_some_and(|id| id.starts_with("dup-")), "{dup}");
    assert!(
        dup["error_msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Identical content already exists under another filename")),
        "{dup}"
    );
}

contract!(batch_with_one_stored_name, keyed = false);
async fn batch_with_one_stored_name(t: &Target) {
    let (stored, fresh, fresh2) = (t.name("batch", 1), t.name("batch", 2), t.name("batch", 3));
    assert_eq!(t.insert("Dora planted tomatoes in Valencia.", &stored).await.0, 200);
    // LightRAG enqueues asynchronously: a name becomes known a moment after
    // its 200 (a re-insert inside that window is accepted).
    t.wait_status(&stored, &["pending", "processing", "processed"]).await;
    let (status, body) = t
        .post(
            "/documents/texts",
            json!({"texts": ["Emil baked in Vienna.", "Other text."], "file_sources": [fresh, stored]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // Another case's deletion on the shared server answers 409 meanwhile: waited out.
    let (status, body) =
        t.post_waiting("/documents/texts", json!({"texts": ["a b", "c d"], "file_sources": [fresh, fresh]})).await;
    assert_eq!(status, 400, "duplicate names in one batch: {body}");
    // The connector's batch insert works out which one is stored and sends the rest.
    let docs = [
        Document::new(fresh2.clone(), "Fritz hiked near Zermatt.".into()),
        Document::new(stored.clone(), "Dora planted tomatoes in Valencia!".into()),
    ];
    let outcomes = t.own_sink().insert_batch(&docs).await;
    assert!(matches!(outcomes[0], Ok(InsertOutcome::Accepted { .. })), "{outcomes:?}");
    assert!(matches!(outcomes[1], Ok(InsertOutcome::AlreadyStored { .. })), "{outcomes:?}");
    t.wait_status(&fresh2, &["processed", "processing", "pending"]).await;
    // A later insert is known by now, so an enqueued refused batch would be too.
    assert!(t.listed(&fresh).await.is_empty(), "a refused batch (409, 400) must insert nothing");
}

contract!(delete_then_reinsert, keyed = false);
async fn delete_then_reinsert(t: &Target) {
    let name = t.name("replace", 1);
    assert_eq!(t.insert("Gustav drew maps of Riga.", &name).await.0, 200);
    t.wait_status(&name, &["processed"]).await;
    let doc = Document::new(name.clone(), "Gustav drew new maps of Tallinn.".into());
    let started = Instant::now();
    loop {
        match t.own_sink().replace(&doc).await.expect("replace") {
            ReplaceOutcome::Replaced { .. } => break,
            ReplaceOutcome::Deferred { reason } => {
                assert!(started.elapsed() < Duration::from_secs(60), "replace never went through: {reason}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let after = t.wait_status(&name, &["processed"]).await;
    assert_eq!(after["id"], json!(doc_id(&name).as_str()), "same name, same id");
    assert!(after["content_summary"].as_str().is_some_and(|s| s.contains("Tallinn")), "{after}");
    assert_eq!(t.listed(&name).await.len(), 1);
}

contract!(a_name_accepted_twice_before_it_is_enqueued, keyed = false);
async fn a_name_accepted_twice_before_it_is_enqueued(t: &Target) {
    let name = t.name("held", 1);
    t.slow_enqueue(&name, 3).await;
    let sink = t.own_sink();
    let (status, body) = t.insert("Hedda rowed across Lake Bled.", &name).await;
    assert_eq!(status, 200, "{body}");
    // Accepted, not enqueued: counted as pending, not listed, not seen by the 409 check.
    let pipeline = sink.pipeline().await.expect("pipeline status").expect("LightRAG has one");
    assert!(pipeline.pending_enqueues.is_some_and(|n| n >= 1), "{pipeline:?}");
    assert!(!pipeline.enqueued_everything(), "{pipeline:?}");
    assert!(t.listed(&name).await.is_empty(), "listed before it was enqueued");
    let (status, body) = t.insert("Hedda rowed across Lake Bled, once more.", &name).await;
    assert_eq!(status, 200, "the 409 check does not see a name before it is enqueued: {body}");

    wait_until("both copies listed", Duration::from_secs(60), || async { t.listed(&name).await.len() >= 2 }).await;
    let docs = t.listed(&name).await;
    t.slow_enqueue(&name, 0).await;
    let original = doc_id(&name);
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert!(docs.iter().any(|d| d["id"] == json!(original.as_str())), "{docs:?}");
    let dup = docs.iter().find(|d| d["id"].as_str().is_some_and(|id| id.starts_with("dup-"))).expect("a dup- record");
    assert_eq!(dup["status"], json!("failed"), "{dup}");
    let message = format!("File name already exists. Original doc_id: {original}, Status: ");
    assert!(dup["error_msg"].as_str().is_some_and(|m| m.starts_with(&message)), "{dup}");
    assert_eq!(dup["metadata"]["duplicate_kind"], json!("filename"), "{dup}");

    // The connector's sink finds the record and deletes it; the original stays.
    let found: Vec<_> =
        sink.duplicates().await.expect("duplicates").into_iter().filter(|d| d.file_path == name).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].id.as_str(), found[0].original.as_ref()),
        (dup["id"].as_str().unwrap_or_default(), Some(&original))
    );
    let removed = sink.remove(&[found[0].id.clone()], Duration::from_secs(60)).await.expect("remove");
    assert_eq!(removed, Removal::Removed);
    let left = t.listed(&name).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], json!(original.as_str()));
}

contract!(delete_while_busy, keyed = false);
async fn delete_while_busy(t: &Target) {
    let name = t.name("busy", 0);
    assert_eq!(t.insert("Hanna kept bees in Graz.", &name).await.0, 200);
    t.wait_status(&name, &["processed"]).await;
    let id = doc_id(&name);
    let mut saw_busy = false;
    for round in 0..5 {
        // Keep the pipeline busy: an insert in flight (real) / busy flag (simulator).
        match &t.sim {
            Some(sim) => sim.set_busy(true),
            None => {
                let texts: Vec<String> =
                    (0..12).map(|i| format!("Busy filler {round}-{i} about Oslo and Bergen {}", t.run)).collect();
                let names: Vec<String> = (0..12).map(|i| t.name(&format!("filler{round}"), i)).collect();
                assert_eq!(
                    t.post_waiting("/documents/texts", json!({"texts": texts, "file_sources": names})).await.0,
                    200
                );
            }
        }
        let (status, body) = t
            .send(
                reqwest::Method::DELETE,
                "/documents/delete_document",
                Some(json!({"doc_ids": [id.as_str()], "delete_file": false, "delete_llm_cache": false})),
                t.key.as_deref(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if let Some(sim) = &t.sim {
            sim.set_busy(false);
        }
        if body["status"] == json!("busy") {
            saw_busy = true;
            break;
        }
        assert_eq!(body["status"], json!("deletion_started"), "{body}");
        // It was deleted after all: once it is gone, put it back for the next round.
        wait_until("the deleted document gone", Duration::from_secs(60), || async { t.listed(&name).await.is_empty() })
            .await;
        let _ = t.insert("Hanna kept bees in Graz.", &name).await;
        t.wait_status(&name, &["processed"]).await;
    }
    assert!(saw_busy, "never saw a busy answer to a delete");
    assert_eq!(t.listed(&name).await.len(), 1, "a busy delete deletes nothing");
    // The connector defers such an update instead of failing it.
    if let Some(sim) = &t.sim {
        sim.set_busy(true);
        let sink = t.own_sink().with_replace_wait(Duration::from_millis(300));
        let outcome = sink.replace(&Document::new(name.clone(), "new".into())).await.expect("replace");
        assert!(matches!(outcome, ReplaceOutcome::Deferred { .. }), "{outcome:?}");
        sim.set_busy(false);
    }
}

contract!(api_key_on, keyed = true);
async fn api_key_on(t: &Target) {
    let key = t.key.clone().expect("keyed target");
    let name = t.name("key", 1);
    let body = json!({"text": "Ines read in Porto.", "file_source": name});
    let (status, answer) = t.send(reqwest::Method::POST, "/documents/text", Some(body.clone()), None).await;
    assert_eq!((status, answer["detail"].clone()), (403, json!("API Key required")));
    let (status, answer) =
        t.send(reqwest::Method::POST, "/documents/text", Some(body.clone()), Some("wrong-key")).await;
    assert_eq!((status, answer["detail"].clone()), (403, json!("Invalid API Key")));
    assert_eq!(t.send(reqwest::Method::GET, "/health", None, None).await.0, 200, "/health stays open");
    assert_eq!(t.send(reqwest::Method::POST, "/documents/text", Some(body), Some(&key)).await.0, 200);
    let error =
        t.sink(Some("wrong-key")).insert(&Document::new(t.name("key", 2), "x y".into())).await.expect_err("refused");
    assert_eq!(error.kind, SinkErrorKind::Fatal);
    assert!(error.message.contains("403") && error.message.contains("lightrag.api.api_key"), "{}", error.message);
    assert!(!error.message.contains("wrong-key"));
}

contract!(api_key_off, keyed = false);
async fn api_key_off(t: &Target) {
    // No key configured on the server: any key (or none) is accepted.
    let body = json!({"text": "Jon fished off Bergen.", "file_source": t.name("nokey", 1)});
    assert_eq!(t.send(reqwest::Method::POST, "/documents/text", Some(body), Some("anything")).await.0, 200);
    let (status, auth) = t.send(reqwest::Method::GET, "/auth-status", None, None).await;
    assert_eq!(status, 200);
    if t.is_real() {
        assert_eq!(auth["auth_configured"], json!(false), "{auth}");
    }
}

contract!(bad_text, keyed = false);
async fn bad_text(t: &Target) {
    let name = t.name("bad", 1);
    assert_eq!(t.insert("", &name).await.0, 422);
    assert_eq!(t.insert("   \n ", &name).await.0, 422);
    let (status, body) = t.post("/documents/text", json!({"text": "no name"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["detail"], json!("A valid file_source is required for text insertion"));
    assert_eq!(t.insert("empty name", "").await.0, 400);
    assert_eq!(t.insert("control char", "a\nb.txt").await.0, 422);
    let error = t.own_sink().insert(&Document::new(name, "  ".into())).await.expect_err("rejected");
    assert_eq!(error.kind, SinkErrorKind::Rejected, "{}", error.message);
    assert!(error.message.contains("422"), "{}", error.message);
}

contract!(listing_rules, keyed = false);
async fn listing_rules(t: &Target) {
    let (status, body) = t.send(reqwest::Method::GET, "/documents/track_status/insert_unknown", None, None).await;
    assert_eq!((status, body["documents"].clone()), (200, json!([])), "unknown track ids are an empty list");
    assert_eq!(t.post("/documents/paginated", json!({"page": 1, "page_size": 5})).await.0, 422);
    assert_eq!(t.send(reqwest::Method::GET, "/documents", None, None).await.0, 405);
    let (status, health) = t.send(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(status, 200);
    assert!(health["configuration"]["workspace"].is_string(), "{health}");
    let preflight = t.own_sink().preflight("memories").await.expect("preflight").expect("api mode");
    if t.is_real() {
        assert_eq!(preflight.core_version.as_deref(), Some("1.5.7"));
    }
}

/// Servers with login accounts (`AUTH_ACCOUNTS`) want a bearer token from
/// `POST /login`. Real server only: the simulator has no accounts.
#[tokio::test(flavor = "multi_thread")]
async fn login_accounts_real_lightrag() {
    let (Ok(url), Ok(user), Ok(password)) = (
        std::env::var("LIGHTRAG_REAL_LOGIN_URL"),
        std::env::var("LIGHTRAG_REAL_LOGIN_USER"),
        std::env::var("LIGHTRAG_REAL_LOGIN_PASSWORD"),
    ) else {
        connector_core::test_support::skip(
            "LIGHTRAG_REAL_LOGIN_URL is not set; run `make test` to test logins against a real LightRAG",
        );
        return;
    };
    let config = |password: &str| LightragApiConfig {
        url: url.clone(),
        username: Some(user.clone()),
        password: Some(Secret::new(password)),
        timeout: 10,
        ..Default::default()
    };
    let doc = Document::new(format!("contract_login_{}.txt", run_tag()), "Karl wrote from Bonn.".into());
    let sink = ApiSink::new(&config(&password)).expect("sink");
    assert!(matches!(sink.insert(&doc).await, Ok(InsertOutcome::Accepted { .. })), "login then insert");
    let wrong = ApiSink::new(&config("not-the-password")).expect("sink");
    let error = wrong.insert(&doc).await.expect_err("refused");
    assert_eq!(error.kind, SinkErrorKind::Fatal);
    assert!(error.message.contains("login") && error.message.contains("lightrag.api.password"), "{}", error.message);
    assert!(!error.message.contains("not-the-password"));
    let anonymous =
        ApiSink::new(&LightragApiConfig { url: url.clone(), timeout: 10, ..Default::default() }).expect("sink");
    let error = anonymous.insert(&doc).await.expect_err("no account");
    assert!(error.message.contains("lightrag.api.username"), "{}", error.message);
}

/// Letters only (entity names are whole words of ASCII letters), unique per run.
fn letters(tag: &str) -> String {
    tag.chars().map(|c| char::from(b'a' + (c.to_digit(16).unwrap_or(0) as u8 % 26))).collect()
}

contract!(graph_and_query, keyed = false);
async fn graph_and_query(t: &Target) {
    let tag = letters(&t.run);
    let [x, y, z, w] = ["Xavi", "Yuna", "Zeno", "Wren"].map(|n| format!("{n}{tag}"));
    let (a, b) = (t.name("graph", 1), t.name("graph", 2));
    let text_a = format!("Memory 1\nType: note\nContext: C\n\nmet {x} and {y} in {z} on a windy day");
    let text_b = format!("Memory 2\nType: note\nContext: C\n\n{x} with {w} at the market");
    assert_eq!(t.insert(&text_a, &a).await.0, 200);
    assert_eq!(t.insert(&text_b, &b).await.0, 200);
    t.wait_status(&a, &["processed"]).await;
    t.wait_status(&b, &["processed"]).await;

    let get = |path: String| t.send(reqwest::Method::GET, Box::leak(path.into_boxed_str()), None, None);
    let (status, graph) = get(format!("/graphs?label={x}&max_depth=1&max_nodes=1000")).await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["is_truncated"], json!(false), "{graph}");
    let node = graph["nodes"].as_array().and_then(|n| n.iter().find(|n| n["id"] == json!(x))).expect("the entity");
    assert_eq!(node["labels"], json!([x]));
    assert_eq!(node["properties"]["entity_type"], json!("concept"), "{node}");
    let parts = |v: &Value| -> std::collections::BTreeSet<String> {
        v.as_str().unwrap_or_default().split("<SEP>").map(str::to_owned).collect()
    };
    assert_eq!(parts(&node["properties"]["file_path"]), [a.clone(), b.clone()].into_iter().collect());
    let chunks = parts(&node["properties"]["source_id"]);
    for name in [&a, &b] {
        let prefix = format!("{}-chunk-", doc_id(name).as_str());
        assert!(chunks.iter().any(|c| c.starts_with(&prefix)), "a chunk of {name} in {chunks:?}");
    }
    let mut edges: Vec<(String, String, String)> = graph["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let (s, t) = (e["source"].as_str().unwrap_or_default(), e["target"].as_str().unwrap_or_default());
            assert!(s <= t, "LightRAG orders an edge's ends: {e}");
            assert_eq!(e["id"], json!(format!("{s}-{t}")));
            (s.to_owned(), t.to_owned(), e["properties"]["file_path"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    edges.sort();
    let pair = |p: &str, q: &str, f: &str| {
        let (p, q) = if p <= q { (p, q) } else { (q, p) };
        (p.to_owned(), q.to_owned(), f.to_owned())
    };
    let mut expected = vec![pair(&x, &y, &a), pair(&x, &w, &b)];
    expected.sort();
    assert_eq!(edges, expected, "the relations of {x} (edges among its neighbours too: none here)");
    let (status, empty) = get(format!("/graphs?label={}&max_depth=1", x.to_lowercase())).await;
    assert_eq!((status, empty), (200, json!({"nodes": [], "edges": [], "is_truncated": false})), "names match exactly");
    assert_eq!(get("/graphs".into()).await.0, 422, "label is required");
    assert_eq!(get(format!("/graphs?label={x}&max_depth=0")).await.0, 422);
    let (status, close) = get(format!("/graph/label/search?q={}&limit=5", x.to_lowercase())).await;
    assert_eq!(status, 200);
    assert!(close.as_array().is_some_and(|l| l.contains(&json!(x))), "{close}");

    // A question that is a document's text finds that document (real: its
    // chunk's vector; simulator: the words it shares).
    let (status, answer) = t.post("/query", json!({"query": text_a})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["response"].is_string() && answer["llm_generated"].is_boolean(), "{answer}");
    let references = answer["references"].as_array().cloned().unwrap_or_default();
    assert!(references.iter().any(|r| r["file_path"] == json!(a) && r["reference_id"].is_string()), "{answer}");
    assert_eq!(t.post("/query", json!({"query": "ab"})).await.0, 422, "too short");
    assert_eq!(t.post("/query", json!({"query": "who is it", "mode": "fast"})).await.0, 422, "unknown mode");

    // The connector's client reads the same.
    let sink = t.own_sink();
    let read = sink.graph(&x, 1, 1000).await.expect("graph");
    let node = read.nodes.iter().find(|n| n.name == x).expect("node");
    assert!(node.sources.mention(&a, &doc_id(&a)) && node.sources.mention(&b, &doc_id(&b)));
    assert_eq!(read.edges.iter().filter(|e| e.joins(&x, None)).count(), 2);
    let asked = sink.query(&text_a, "mix").await.expect("query");
    assert!(asked.references.iter().any(|r| r.file_path == a), "{asked:?}");
    assert!(sink.search_labels(&x.to_lowercase(), 5).await.expect("search").contains(&x));
}
