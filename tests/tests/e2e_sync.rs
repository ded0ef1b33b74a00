//! End to end: the real `memory-connector` binary against the Memory API and
//! LightRAG simulators on loopback ports chosen at run time.

use chrono::{DateTime, Utc};
use connector_core::ids::{ConnectorId, MemoryId, RunId};
use connector_core::state::{
    Checkpoint, ConnectorState, EntryStatus, Lease, LeaseOutcome, LedgerEntry, RunRecord, StateError, StateStore,
};
use connector_core::transform::file_source;
use serde_json::{Value, json};
use sims::harness::{ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const MEMORY_KEY: &str = "mem-key-5f0c1e";
const CTX: &str = "CTX123";

async fn memory_sim(count: usize, seed: u64) -> MemorySim {
    MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed,
        contexts: vec![(CTX.into(), count)],
        ..Default::default()
    })
    .await
    .expect("start memory sim")
}

async fn lightrag_sim() -> LightragSim {
    LightragSim::start(LightragSimOptions::default()).await.expect("start lightrag sim")
}

fn workspace(spec: &ConfigSpec) -> Workspace {
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws
}

fn raw_id(item: &Value) -> Option<String> {
    match item.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn has_transcript(item: &Value) -> bool {
    item.get("transcript").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty())
}

/// file_sources of the memories that have a transcript now.
fn expected_sources(mem: &MemorySim) -> BTreeSet<String> {
    mem.expected(CTX)
        .iter()
        .filter(|item| has_transcript(item))
        .filter_map(raw_id)
        .map(|id| file_source(CTX, &id))
        .collect()
}

/// file_path -> number of records, and the dup- records.
fn sink_names(rag: &LightragSim) -> (BTreeMap<String, usize>, usize) {
    let mut names = BTreeMap::new();
    let mut dups = 0;
    for doc in rag.documents() {
        if doc.id.starts_with("dup-") {
            dups += 1;
            continue;
        }
        *names.entry(doc.file_path.clone()).or_insert(0) += 1;
    }
    (names, dups)
}

fn assert_exactly_once(rag: &LightragSim, expected: &BTreeSet<String>) {
    let (names, dups) = sink_names(rag);
    assert_eq!(dups, 0, "duplicate-content records in LightRAG");
    let got: BTreeSet<String> = names.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
    assert!(names.values().all(|n| *n == 1), "a name stored twice: {names:?}");
}

async fn sync_async(ws: &Workspace) -> sims::harness::CliRun {
    ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await
}

fn counts(run: &sims::harness::CliRun) -> Value {
    run.json()["counts"].clone()
}

fn untidy_extras() -> Vec<Value> {
    vec![
        json!({"id": 987654321, "type": "note", "transcript": "A numeric id #numbers", "location_lat": null, "location_lon": null, "created_at": "2025-12-17T09:15:00"}),
        json!({"id": "zero-place", "type": "record", "transcript": "Somewhere unknown", "location_lat": 0.0, "location_lon": 0.0, "created_at": "2025-12-17T10:00:00.123456Z", "extra_field": {"x": 1}}),
    ]
}

/// `confirm_wait_seconds: 0` (the Lambda config): the run does not wait;
/// what it sent is reported unconfirmed, and the next run confirms it.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_confirmation_wait_the_next_run_confirms() {
    let mem = memory_sim(12, 3).await;
    let rag = lightrag_sim().await;
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.confirm_wait_seconds = 0;
    let ws = workspace(&spec);
    let first = sync_async(&ws).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let sent = expected_sources(&mem).len();
    assert_eq!(counts(&first)["new"], json!(sent));
    assert_eq!(first.json()["unconfirmed"], json!(sent), "{}", first.stdout);
    assert_eq!(counts(&first)["confirmed"], json!(0));
    let second = sync_async(&ws).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(counts(&second)["confirmed"], json!(sent), "{}", second.stdout);
    assert_eq!(second.json()["unconfirmed"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_memory_once_then_rerun_sends_nothing() {
    let mem = memory_sim(60, 7).await;
    mem.add_raw(CTX, untidy_extras());
    let rag = lightrag_sim().await;
    let ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));

    let first = sync_async(&ws).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let expected = expected_sources(&mem);
    assert!(expected.contains(&file_source(CTX, "987654321")));
    assert_eq!(counts(&first)["new"], json!(expected.len()));
    assert_exactly_once(&rag, &expected);

    let inserts = rag.documents().len();
    let second = sync_async(&ws).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let c = counts(&second);
    assert_eq!((c["new"].clone(), c["updated"].clone()), (json!(0), json!(0)), "{c}");
    assert_eq!(c["unchanged"], json!(expected.len()));
    assert_eq!(rag.documents().len(), inserts);
    assert_exactly_once(&rag, &expected);

    let status = ws.run(&["status", "--connector-id", "personal-memories", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["processed"], json!(expected.len()));
    assert_eq!(status.json()["status"], json!("completed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_state_and_direct_mode_write_each_memory_once() {
    let mem = memory_sim(40, 11).await;
    mem.add_raw(CTX, untidy_extras());
    let mut spec = ConfigSpec::new(&mem.url(), "unused");
    spec.direct_dir = Some("rag".into());
    spec.backend = "sqlite";
    spec.state_path = "state.db".into();
    let ws = workspace(&spec);

    let first = sync_async(&ws).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let inputs = ws.path().join("rag/inputs");
    let files: BTreeSet<String> = std::fs::read_dir(&inputs)
        .expect("inputs folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, expected_sources(&mem));
    let second = sync_async(&ws).await;
    assert_eq!(counts(&second)["new"], json!(0));
    assert_eq!(counts(&second)["unchanged"], json!(files.len()));
}

#[tokio::test(flavor = "multi_thread")]
async fn late_transcript_then_edit_replaces_the_document() {
    let mem = memory_sim(50, 3).await;
    let rag = lightrag_sim().await;
    let ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));

    let first = sync_async(&ws).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let waiting = counts(&first)["skipped"].as_u64().expect("skipped");
    assert!(waiting > 0, "the generated data should have memories without transcript");

    let filled = mem.fill_transcripts(CTX, None);
    assert_eq!(filled as u64, waiting);
    let second = sync_async(&ws).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(counts(&second)["new"], json!(waiting));
    assert_eq!(counts(&second)["skipped"], json!(0));
    assert_exactly_once(&rag, &expected_sources(&mem));

    let ids: Vec<String> = mem.expected(CTX).iter().filter_map(raw_id).take(5).collect();
    mem.edit_transcripts(CTX, &ids, " (edited)");
    let third = sync_async(&ws).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(counts(&third)["updated"], json!(5));
    assert_eq!(counts(&third)["new"], json!(0));
    assert_exactly_once(&rag, &expected_sources(&mem));
    let docs = rag.documents();
    for id in &ids {
        let name = file_source(CTX, id);
        let doc = docs.iter().find(|d| d.file_path == name).expect("edited doc present");
        assert!(doc.text.contains("(edited)"), "document {name} was not replaced");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_writes_nothing_and_force_resends_everything() {
    let mem = memory_sim(20, 5).await;
    let rag = lightrag_sim().await;
    let ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));

    let dry = ws.run_async(&["sync", "--connector-id", "personal-memories", "--dry-run", "--json"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let expected = expected_sources(&mem);
    assert_eq!(dry.json()["counts"]["new"], json!(expected.len()));
    assert!(dry.json()["plan"].as_array().is_some_and(|p| !p.is_empty()));
    assert!(rag.documents().is_empty(), "dry run sent documents");
    assert!(!ws.path().join("state.json").exists(), "dry run wrote state");

    assert_eq!(sync_async(&ws).await.code, 0);
    let forced = ws.run_async(&["sync", "--connector-id", "personal-memories", "--force", "--json"]).await;
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(forced.json()["counts"]["updated"], json!(expected.len()));
    assert_exactly_once(&rag, &expected);
}

/// A store whose listing by status lags behind its writes, as DynamoDB's
/// index does: everything else is the SQLite store's.
#[derive(Debug)]
struct LaggingListing(std::sync::Arc<dyn StateStore>);

#[async_trait::async_trait]
impl StateStore for LaggingListing {
    async fn try_acquire_lease(
        &self,
        c: &ConnectorId,
        o: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        self.0.try_acquire_lease(c, o, now, ttl).await
    }
    async fn release_lease(&self, c: &ConnectorId, o: &RunId) -> Result<(), StateError> {
        self.0.release_lease(c, o).await
    }
    async fn lease(&self, c: &ConnectorId) -> Result<Option<Lease>, StateError> {
        self.0.lease(c).await
    }
    async fn connector_state(&self, c: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        self.0.connector_state(c).await
    }
    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.0.connectors().await
    }
    async fn entries(&self, c: &ConnectorId, ids: &[MemoryId]) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        self.0.entries(c, ids).await
    }
    async fn entries_with_status_after(
        &self,
        _: &ConnectorId,
        _: &[EntryStatus],
        _: Option<&MemoryId>,
        _: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        Ok(Vec::new()) // the index has not caught up yet
    }
    async fn status_counts(&self, c: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        self.0.status_counts(c).await
    }
    async fn checkpoint(&self, c: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        self.0.checkpoint(c, checkpoint).await
    }
    async fn ledger_view(&self, c: &ConnectorId) -> Result<connector_core::state::LedgerView, StateError> {
        self.0.ledger_view(c).await
    }
    async fn digest_shards(
        &self,
        c: &ConnectorId,
        shards: &[u16],
    ) -> Result<Vec<connector_core::state::DigestShard>, StateError> {
        self.0.digest_shards(c, shards).await
    }
    async fn runs(&self, c: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.0.runs(c, limit).await
    }
    async fn reset(&self, c: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        self.0.reset(c, now).await
    }
    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        self.0.prune_runs(connector, before).await
    }
}

/// The end-of-run wait reads this run's own entries back (consistently);
/// it does not depend on a listing that may lag (DynamoDB's index), which
/// would end the wait at once and report nothing unconfirmed.
#[tokio::test(flavor = "multi_thread")]
async fn the_end_of_run_wait_does_not_depend_on_a_lagging_listing() {
    let mem = memory_sim(6, 5).await;
    let rag =
        LightragSim::start(LightragSimOptions { process_delay: Duration::from_millis(150), ..Default::default() })
            .await
            .expect("lightrag sim");
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.confirm_wait_seconds = 30;
    let env = connector_core::config::Environment::from_map([("MEMORY_API_KEY".to_owned(), MEMORY_KEY.to_owned())]);
    let config = connector_core::config::load_str(&spec.render(), "test.yaml", &env).expect("config");
    let connector = config.connectors.first().expect("a connector").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = connector_core::state::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite");
    let store = std::sync::Arc::new(LaggingListing(std::sync::Arc::new(sqlite)));
    let engine = connector_core::sync::SyncEngine::new(
        connector,
        Duration::from_secs(600),
        std::sync::Arc::new(connector_core::memory_api::MemoryApiClient::new(&config.memory_api).expect("client")),
        connector_core::lightrag::open(&config.lightrag).expect("sink"),
        store,
    )
    .with_lightrag_settings(&config.lightrag);
    let report = engine.run(connector_core::sync::RunOptions::default()).await.expect("run");
    let sent = expected_sources(&mem).len() as u64;
    assert!(sent > 0);
    assert_eq!(report.counts.new, sent);
    assert_eq!(report.counts.confirmed, sent, "the wait saw this run's documents processed: {report:?}");
    assert_eq!(report.unconfirmed, 0);
}
