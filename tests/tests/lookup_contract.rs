//! From an answer back to the memories, end to end: a real `sync` of known
//! memories, then `lookup resolve`, `lookup by-entity`, `lookup by-memory`
//! and `ask` (CLI and API), each checked against what was sent. One suite,
//! run against the LightRAG simulator and against a real LightRAG 1.5.7
//! (started by `make test` through `tests/scripts/with-lightrag.sh`; its
//! test LLM names entities after the first three capitalised words of a
//! memory, as the simulator does).

use connector_core::config::{Environment, load_str};
use connector_core::memory_api::parse_page;
use connector_core::transform::{self, Rendered};
use serde_json::{Value, json};
use sims::harness::{CliRun, ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions, SimFault, SimRoute};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MEMORY_KEY: &str = "lookup-mem-key-5e1a";
const API_KEY: &str = "lookup-api-key-9b3c";
const ID: &str = "personal-memories";

/// One target LightRAG: the simulator, or the real server of `make test`.
struct Target {
    url: String,
    sim: Option<LightragSim>,
}

async fn simulator() -> Target {
    let sim = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    Target { url: sim.url(), sim: Some(sim) }
}

fn real() -> Option<Target> {
    match std::env::var("LIGHTRAG_REAL_URL") {
        Ok(url) => Some(Target { url, sim: None }),
        Err(_) => {
            eprintln!(
                "SKIPPED: LIGHTRAG_REAL_URL is not set; run `make test` to run the look-ups against a real LightRAG"
            );
            None
        }
    }
}

/// Letters only and unique per run: entity names are whole words of letters,
/// and the real server is shared by every test.
fn tag(salt: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{:x}{nanos:x}{salt}", std::process::id())
        .chars()
        .map(|c| char::from(b'a' + (c.to_digit(36).unwrap_or(0) as u8 % 26)))
        .collect()
}

/// The memories of the suite and what their documents are about.
struct Memories {
    ctx: String,
    names: [String; 5],
    raw: Vec<Value>,
}

impl Memories {
    fn new(salt: &str) -> Self {
        let t = tag(salt);
        let names = ["Quill", "Marlo", "Fenwick", "Odalys", "Brisk"].map(|n| format!("{n}{t}"));
        let [n1, n2, n3, n4, n5] = &names;
        let raw = vec![
            json!({"id": "m1", "type": "record", "audio": true, "image": false,
                   "transcript": format!("saw {n1} and {n2} at {n3} harbour, we talked about #sailing\nsecond line"),
                   "location_lat": 38.7223, "location_lon": -9.1393,
                   "created_at": "2025-12-10T09:15:00Z", "updated_at": "2025-12-10T09:20:00Z"}),
            json!({"id": "m2", "type": "note", "audio": false, "image": false,
                   "transcript": format!("dinner with {n1} near {n4} and {n5} square, grilled sardines and green wine"),
                   "created_at": "2025-12-12T18:00:00Z"}),
            json!({"id": "m3", "type": "photo", "audio": false, "image": true,
                   "transcript": format!("{n2} painted the {n3} lighthouse again"),
                   "location_lat": 38.6916, "location_lon": -9.2160, "created_at": "2025-12-14T07:30:00Z"}),
            json!({"id": "m4", "type": "record", "audio": true, "transcript": "", "created_at": "2025-12-15T10:00:00Z"}),
        ];
        Self { ctx: format!("LOOK{t}"), names, raw }
    }

    fn file_source(&self, id: &str) -> String {
        transform::file_source(&self.ctx, id)
    }

    fn sent(&self, id: &str) -> &Value {
        self.raw.iter().find(|m| m["id"] == json!(id)).expect("a memory of the suite")
    }
}

async fn setup(target: &Target, memories: &Memories) -> (MemorySim, Workspace, ConfigSpec) {
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        contexts: vec![(memories.ctx.clone(), 0)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    mem.add_raw(&memories.ctx, memories.raw.clone());
    let mut spec = ConfigSpec::new(&mem.url(), &target.url);
    spec.context_id = memories.ctx.clone();
    spec.confirm_wait_seconds = 120;
    let mut ws = Workspace::new();
    ws.write_config(&with_api(&spec.render()));
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws.set_env("CONNECTOR_API_KEY", API_KEY);
    (mem, ws, spec)
}

fn with_api(yaml: &str) -> String {
    yaml.replace(
        "api:\n  enabled: false\n",
        "api:\n  enabled: true\n  host: \"127.0.0.1\"\n  port: 0\n  enable_auth: true\n  api_key: \"${CONNECTOR_API_KEY}\"\n",
    )
}

async fn cli(ws: &Workspace, args: &[&str]) -> Value {
    let run: CliRun = ws.run_async(args).await;
    assert_eq!(run.code, 0, "{args:?}:\n{}\n{}", run.stdout, run.stderr);
    run.json()
}

/// The (connector, memory id) pairs of an answer's `memories`.
fn keys(answer: &Value) -> Vec<String> {
    answer["memories"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{}/{}", m["connector_id"].as_str().unwrap_or("?"), m["memory_id"].as_str().unwrap_or("?")))
        .collect()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|id| format!("{ID}/{id}")).collect()
}

/// A shown memory says what was sent.
fn assert_memory(shown: &Value, memories: &Memories, mem: &MemorySim) {
    let id = shown["memory_id"].as_str().expect("memory_id");
    let sent = memories.sent(id);
    assert_eq!(shown["connector_id"], json!(ID));
    assert_eq!(shown["context_id"], json!(memories.ctx));
    assert_eq!(shown["file_source"], json!(memories.file_source(id)));
    assert_eq!(shown["status"], json!("processed"), "{shown}");
    assert_eq!(shown["recorded"], json!(true));
    let at = |v: &Value| v.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    assert_eq!(at(&shown["created_at"]), at(&sent["created_at"]), "{shown}");
    assert_eq!(shown["kind"], sent["type"]);
    let transcript = sent["transcript"].as_str().unwrap_or_default();
    assert_eq!(shown["headline"], json!(connector_core::provenance::record::headline(transcript)));
    match sent.get("location_lat") {
        Some(lat) => assert_eq!(shown["location"], json!({"lat": lat, "lon": sent["location_lon"]})),
        None => assert_eq!(shown["location"], Value::Null),
    }
    let tags: Vec<String> = connector_core::transform::extract_tags(transcript);
    assert_eq!(shown["tags"], json!(tags));
    let link = |kind: &str| json!(format!("{}/memory/{}/{id}/{kind}", mem.url(), memories.ctx));
    let expected_link = |flag: &str, kind: &str| if sent[flag] == json!(true) { link(kind) } else { Value::Null };
    assert_eq!(shown["audio_url"], expected_link("audio", "audio"), "{shown}");
    assert_eq!(shown["image_url"], expected_link("image", "image"), "{shown}");
}

/// The exact text the connector sent for memory `id` (a question that is a
/// document's text retrieves that document, on the real server too).
fn document_text(spec: &ConfigSpec, memories: &Memories, id: &str) -> String {
    let env = Environment::from_map([("MEMORY_API_KEY".to_owned(), MEMORY_KEY.to_owned())]);
    let config = load_str(&spec.render(), "test.yaml", &env).expect("config");
    let connector = config.connectors.first().expect("a connector");
    let body = json!({"memories": [memories.sent(id)]}).to_string();
    let page = parse_page(body.as_bytes(), 1000).expect("parse");
    match transform::render(&memories.ctx, &page.memories[0], &connector.transformation, true, None) {
        Rendered::Document(doc) => doc.text.trim().to_owned(),
        Rendered::WaitingForTranscript => panic!("memory {id} has no text"),
    }
}

macro_rules! contract {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn simulator() {
                super::$case(&super::simulator().await, "s").await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn real_lightrag() {
                if let Some(target) = super::real() {
                    super::$case(&target, "r").await;
                }
            }
        }
    };
}

contract!(lookups_return_the_memories_that_were_sent);
async fn lookups_return_the_memories_that_were_sent(target: &Target, salt: &str) {
    let memories = Memories::new(salt);
    let (mem, ws, spec) = setup(target, &memories).await;
    let [n1, n2, n3, n4, n5] = &memories.names;
    let sync = cli(&ws, &["sync", "--connector-id", ID, "--json"]).await;
    assert_eq!(sync["counts"]["new"], json!(3), "{sync}");
    assert_eq!(sync["counts"]["confirmed"], json!(3), "processed in LightRAG before the run ended: {sync}");

    // resolve: names (several, LightRAG's way) -> memories, from the ledger.
    let names = [memories.file_source("m1"), memories.file_source("m3"), "nope.txt".into()].join("<SEP>");
    let resolved = cli(&ws, &["lookup", "resolve", &names, "--json"]).await;
    assert_eq!(keys(&resolved), ids(&["m1", "m3"]), "{resolved}");
    assert_eq!(resolved["unresolved"], json!(["nope.txt"]));
    for shown in resolved["memories"].as_array().into_iter().flatten() {
        assert_memory(shown, &memories, &mem);
    }
    let fetched = cli(&ws, &["lookup", "resolve", &memories.file_source("m2"), "--fetch", "--json"]).await;
    assert_eq!(fetched["memories"][0]["live"]["transcript"], memories.sent("m2")["transcript"], "{fetched}");
    let unknown = ws.run_async(&["lookup", "resolve", "nope.txt", "--json"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.json()["error"]["message"].as_str().is_some_and(|m| m.contains("`nope.txt`")),
        "{}",
        unknown.stdout
    );

    // by-entity: n1 is in m1 and m2; the relation n2-n3 in m1 and m3.
    let entity = cli(&ws, &["lookup", "by-entity", n1, "--json"]).await;
    assert_eq!(keys(&entity), ids(&["m1", "m2"]), "oldest first: {entity}");
    assert_eq!((entity["memory_count"].clone(), entity["mentions"].clone()), (json!(2), json!(2)));
    assert_eq!(entity["first_mentioned"], json!("2025-12-10T09:15:00Z"));
    assert_eq!(entity["last_mentioned"], json!("2025-12-12T18:00:00Z"));
    let relations: BTreeSet<(String, usize)> = entity["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let other = if r["source"] == json!(n1) { &r["target"] } else { &r["source"] };
            (other.as_str().unwrap_or_default().to_owned(), r["memory_count"].as_u64().unwrap_or(0) as usize)
        })
        .collect();
    assert_eq!(relations, [(n2.clone(), 1), (n4.clone(), 1)].into_iter().collect(), "{entity}");
    let relation = cli(&ws, &["lookup", "by-entity", n3, "--target", n2, "--json"]).await;
    assert_eq!(keys(&relation), ids(&["m1", "m3"]), "{relation}");
    let close = ws.run_async(&["lookup", "by-entity", &n1.to_lowercase(), "--json"]).await;
    assert_eq!(close.code, 1);
    let message = close.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("no entity named") && message.contains(&format!("`{n1}`")), "{message}");

    // by-memory: exactly what the LLM extracted from each memory.
    let extracted = cli(&ws, &["lookup", "by-memory", "--connector-id", ID, "--memory-id", "m2", "--json"]).await;
    assert_eq!(keys(&extracted), ids(&["m2"]));
    assert_eq!(extracted["complete"], json!(true), "{extracted}");
    let entities: BTreeSet<&str> =
        extracted["entities"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(entities, [n1.as_str(), n4, n5].into_iter().collect(), "{extracted}");
    let pairs: BTreeSet<BTreeSet<&str>> = extracted["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| [r["source"].as_str().unwrap_or_default(), r["target"].as_str().unwrap_or_default()].into())
        .collect();
    assert_eq!(pairs, [[n1.as_str(), n4].into(), [n4.as_str(), n5].into()].into_iter().collect(), "{extracted}");
    let waiting = cli(&ws, &["lookup", "by-memory", "--connector-id", ID, "--memory-id", "m4", "--json"]).await;
    assert_eq!(
        (waiting["entities"].clone(), waiting["memories"][0]["status"].clone()),
        (json!([]), json!("waiting_transcript"))
    );

    // ask: the answer's references resolved to the memories sent.
    let question = document_text(&spec, &memories, "m2");
    let answer = cli(&ws, &["ask", "--connector-id", ID, &question, "--json"]).await;
    assert_eq!(answer["mode"], json!("mix"), "LightRAG's recommended mode by default");
    assert!(answer["answer"].as_str().is_some_and(|a| !a.is_empty()), "{answer}");
    assert!(keys(&answer).contains(&format!("{ID}/m2")), "the memory asked about is cited: {answer}");
    for shown in answer["memories"].as_array().into_iter().flatten() {
        assert_memory(shown, &memories, &mem);
    }
    let cited = answer["references"].as_array().cloned().unwrap_or_default();
    assert!(
        cited.iter().any(
            |r| r["file_path"] == json!(memories.file_source("m2")) && r["memories"][0]["memory_id"] == json!("m2")
        ),
        "{answer}"
    );
    let human = ws.run_async(&["ask", "--connector-id", ID, &question]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("References:")
            && human.stdout.contains("2025-12-12 18:00 UTC")
            && human.stdout.contains("dinner with"),
        "date and first line of the cited memory:\n{}",
        human.stdout
    );

    // The API answers the same, under its key.
    let serve = Serve::start(&ws).await;
    let (status, api) = serve.get(&format!("/lookup/resolve?name={}", urlencode(&names))).await;
    assert_eq!((status, keys(&api)), (200, ids(&["m1", "m3"])), "{api}");
    assert_eq!(api["memories"], resolved["memories"], "API and CLI agree");
    let (status, api) = serve.get(&format!("/lookup/by-entity?name={n1}")).await;
    assert_eq!((status, keys(&api)), (200, ids(&["m1", "m2"])));
    let (status, api) = serve.get(&format!("/lookup/by-entity?name={n3}&target={n2}")).await;
    assert_eq!((status, keys(&api)), (200, ids(&["m1", "m3"])));
    let (status, api) = serve.get(&format!("/lookup/by-memory?connector_id={ID}&memory_id=m2")).await;
    assert_eq!((status, &api["entities"]), (200, &extracted["entities"]));
    let (status, api) =
        serve.post(&format!("/connectors/{ID}/ask"), json!({"question": question, "mode": "mix"})).await;
    assert_eq!(status, 200, "{api}");
    assert!(keys(&api).contains(&format!("{ID}/m2")), "{api}");
    let (status, api) = serve.get("/lookup/resolve?name=nope.txt").await;
    assert_eq!((status, &api["error"]["code"]), (404, &json!("not_found")));
    let unauthorized =
        reqwest::Client::new().get(serve.url("/lookup/resolve?name=nope.txt")).send().await.expect("GET");
    assert_eq!(unauthorized.status().as_u16(), 401);
}

contract!(a_lightrag_that_is_down_is_named_and_the_ledger_still_answers);
async fn a_lightrag_that_is_down_is_named_and_the_ledger_still_answers(target: &Target, salt: &str) {
    let memories = Memories::new(&format!("{salt}d"));
    let (_mem, mut ws, spec) = setup(target, &memories).await;
    let sync = cli(&ws, &["sync", "--connector-id", ID, "--json"]).await;
    assert_eq!(sync["counts"]["new"], json!(3), "{sync}");
    // Nothing listens on port 1.
    let down = "http://127.0.0.1:1";
    ws.write_config(&with_api(&spec.render().replace(&target.url, down)));
    ws.set_env("CONNECTOR_API_KEY", API_KEY);
    let serve = Serve::start(&ws).await;
    let (status, api) = serve.get(&format!("/lookup/resolve?name={}", memories.file_source("m1"))).await;
    assert_eq!((status, keys(&api)), (200, ids(&["m1"])), "resolving needs the ledger only: {api}");
    // At once: each waits out the client's retries.
    let (entity_path, memory_path) = (
        format!("/lookup/by-entity?name={}", memories.names[0]),
        format!("/lookup/by-memory?connector_id={ID}&memory_id=m1"),
    );
    let ask_path = format!("/connectors/{ID}/ask");
    let cli_args = ["lookup", "by-entity", memories.names[0].as_str(), "--json"];
    let (entity, memory, ask, cli_down) = tokio::join!(
        serve.get(&entity_path),
        serve.get(&memory_path),
        serve.post(&ask_path, json!({"question": "Where was the harbour?"})),
        ws.run_async(&cli_args),
    );
    for (status, api) in [entity, memory, ask] {
        assert_eq!(status, 502, "{api}");
        assert_eq!(api["error"]["code"], json!("lightrag_unavailable"));
        assert!(api["error"]["message"].as_str().is_some_and(|m| m.contains(down)), "names LightRAG: {api}");
    }
    assert_eq!(cli_down.code, 1);
    assert!(cli_down.stderr.contains(down), "{}", cli_down.stderr);
    // A LightRAG that answers 5xx is named the same way (simulator faults).
    if let Some(sim) = &target.sim {
        ws.write_config(&with_api(&spec.render()));
        drop(serve);
        let serve = Serve::start(&ws).await;
        sim.inject(SimFault::new(SimRoute::Query, 503).times(10));
        let (status, api) =
            serve.post(&format!("/connectors/{ID}/ask"), json!({"question": "Where was the harbour?"})).await;
        assert_eq!(status, 502, "{api}");
        assert!(api["error"]["message"].as_str().is_some_and(|m| m.contains(&sim.url()) && m.contains("503")), "{api}");
    }
}

/// `by-memory` reads LightRAG's whole graph; a server that returns only
/// part of it (`MAX_GRAPH_NODES`) makes the answer say it is incomplete.
#[tokio::test(flavor = "multi_thread")]
async fn by_memory_says_when_lightrag_cut_its_graph() {
    let sim = LightragSim::start(LightragSimOptions { max_graph_nodes: 2, ..Default::default() }).await.expect("sim");
    let target = Target { url: sim.url(), sim: Some(sim) };
    let memories = Memories::new("t");
    let (_mem, ws, _spec) = setup(&target, &memories).await;
    cli(&ws, &["sync", "--connector-id", ID, "--json"]).await;
    let answer = cli(&ws, &["lookup", "by-memory", "--connector-id", ID, "--memory-id", "m2", "--json"]).await;
    assert_eq!((answer["complete"].clone(), answer["max_graph_nodes"].clone()), (json!(false), json!(2)), "{answer}");
    assert!(answer["notes"][0].as_str().is_some_and(|n| n.contains("MAX_GRAPH_NODES")), "{answer}");
    let human = ws.run_async(&["lookup", "by-memory", "--connector-id", ID, "--memory-id", "m2"]).await;
    assert!(human.stdout.contains("note: LightRAG returned its 2 most connected entities"), "{}", human.stdout);
}

/// A ledger written before provenance records existed resolves with what
/// it has (the name, the status); the next run adds the records, sending
/// nothing again.
#[tokio::test(flavor = "multi_thread")]
async fn entries_from_before_provenance_get_their_record_on_the_next_run() {
    let target = simulator().await;
    let memories = Memories::new("b");
    let (mem, ws, _spec) = setup(&target, &memories).await;
    cli(&ws, &["sync", "--connector-id", ID, "--json"]).await;
    let path = ws.path().join("state.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    for entry in state["connectors"][ID]["entries"].as_object_mut().expect("entries").values_mut() {
        let entry = entry.as_object_mut().expect("entry");
        entry.remove("provenance");
        // Such a version recorded LightRAG's confirmation on the entry (decision 0029).
        if entry.get("status") == Some(&json!("submitted")) {
            entry.insert("status".into(), json!("processed"));
        }
    }
    // Such a ledger is from before the ledger digest too (decision 0026): it has none.
    state["connectors"][ID].as_object_mut().expect("connector").remove("digest");
    std::fs::write(&path, state.to_string()).expect("write state");
    let name = memories.file_source("m1");
    let old = cli(&ws, &["lookup", "resolve", &name, "--json"]).await;
    let shown = &old["memories"][0];
    assert_eq!((shown["recorded"].clone(), shown["created_at"].clone()), (json!(false), Value::Null), "{old}");
    assert_eq!((shown["memory_id"].clone(), shown["status"].clone()), (json!("m1"), json!("processed")));
    let rerun = cli(&ws, &["sync", "--connector-id", ID, "--json"]).await;
    assert_eq!((rerun["counts"]["new"].clone(), rerun["counts"]["updated"].clone()), (json!(0), json!(0)), "{rerun}");
    let now = cli(&ws, &["lookup", "resolve", &name, "--json"]).await;
    assert_memory(&now["memories"][0], &memories, &mem);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `memory-connector serve --api-only` on a free port; killed on drop.
struct Serve {
    _child: tokio::process::Child,
    port: u16,
    http: reqwest::Client,
}

impl Serve {
    async fn start(ws: &Workspace) -> Serve {
        let port_file = ws.path().join("ports.json");
        let _ = std::fs::remove_file(&port_file);
        let port_arg = port_file.to_string_lossy().into_owned();
        let mut command = tokio::process::Command::from(ws.command(&["serve", "--api-only", "--port-file", &port_arg]));
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true);
        let mut child = command.spawn().expect("spawn serve");
        let started = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["api"].as_u64())
            {
                break port as u16;
            }
            assert!(child.try_wait().ok().flatten().is_none(), "serve exited early");
            assert!(started.elapsed() < Duration::from_secs(30), "serve wrote no port file");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Serve { _child: child, port, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let answer = self.http.get(self.url(path)).header("X-API-Key", API_KEY).send().await.expect("GET");
        (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let answer = self.http.post(self.url(path)).bearer_auth(API_KEY).json(&body).send().await.expect("POST");
        (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
    }
}
