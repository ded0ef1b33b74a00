//! End to end against a real LightRAG 1.5.7 (started by `make test` through
//! `tests/scripts/with-lightrag.sh`): LightRAG's own document list must match
//! the ledger one to one, every document `processed`, none duplicated.
//! The cases share one server, so they run one at a time, each with its own
//! context id (its own document names).

use connector_core::ids::ConnectorId;
use connector_core::state::json::JsonStore;
use connector_core::state::{EntryStatus, StateStore, Watch};
use serde_json::{Value, json};
use sims::harness::{CliRun, ConfigSpec, Workspace, wait_until};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MEMORY_KEY: &str = "real-mem-key-71c2";
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn real_url() -> Option<String> {
    let test = std::thread::current().name().unwrap_or("e2e_real_lightrag").to_owned();
    connector_core::test_support::required_var(
        "LIGHTRAG_REAL_URL",
        &test,
        "run `make test` (tests/scripts/with-lightrag.sh) to run this against a real LightRAG 1.5.7",
    )
}

fn context(case: &str) -> String {
    format!("{case}{:x}", std::process::id())
}

async fn memory_sim(ctx: &str, count: usize, seed: u64) -> MemorySim {
    MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed,
        contexts: vec![(ctx.into(), count)],
        ..Default::default()
    })
    .await
    .expect("memory sim")
}

fn workspace(mem: &MemorySim, url: &str, ctx: &str, batch_size: u32) -> Workspace {
    let mut spec = ConfigSpec::new(&mem.url(), url);
    spec.context_id = ctx.into();
    spec.batch_size = batch_size;
    spec.confirm_wait_seconds = 240;
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws
}

async fn sync(ws: &Workspace) -> CliRun {
    ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await
}

/// LightRAG's records whose name belongs to context `ctx`.
async fn lightrag_docs(url: &str, ctx: &str) -> Vec<Value> {
    let prefix = format!("memory_{ctx}_");
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for page in 1..=200 {
        let body: Value = http
            .post(format!("{url}/documents/paginated"))
            .json(&json!({"page": page, "page_size": 200, "sort_field": "id", "sort_direction": "asc"}))
            .send()
            .await
            .expect("paginated")
            .json()
            .await
            .expect("json");
        let docs = body["documents"].as_array().cloned().unwrap_or_default();
        out.extend(docs.into_iter().filter(|d| d["file_path"].as_str().is_some_and(|p| p.starts_with(&prefix))));
        if body["pagination"]["has_next"] != json!(true) {
            break;
        }
    }
    out
}

/// Asserts LightRAG and the ledger agree one to one, everything processed;
/// returns the number of documents.
async fn assert_one_to_one(url: &str, ctx: &str, ws: &Workspace) -> usize {
    let docs = lightrag_docs(url, ctx).await;
    let dups: Vec<&Value> = docs.iter().filter(|d| d["id"].as_str().is_some_and(|id| id.starts_with("dup-"))).collect();
    assert!(dups.is_empty(), "duplicate records in LightRAG: {dups:?}");
    let not_processed: Vec<(String, String)> = docs
        .iter()
        .filter(|d| d["status"] != json!("processed"))
        .map(|d| (d["file_path"].to_string(), d["status"].to_string()))
        .collect();
    assert!(not_processed.is_empty(), "not processed in LightRAG: {not_processed:?}");
    let names: Vec<String> = docs.iter().filter_map(|d| d["file_path"].as_str().map(str::to_owned)).collect();
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(unique.len(), names.len(), "a name stored twice");

    let store = JsonStore::open(&ws.path().join("state.json")).await.expect("state");
    let entries = store
        .entries_with_status(&ConnectorId::new("personal-memories"), &EntryStatus::ALL, 1_000_000)
        .await
        .expect("ledger");
    // A processed document keeps its `submitted` entry; the watch says
    // whether LightRAG's confirmation is still awaited (decision 0029).
    let watch = Watch::of(&store, &ConnectorId::new("personal-memories")).await.expect("watch");
    let processed: BTreeSet<String> = entries
        .iter()
        .filter(|e| watch.status_of(e) == EntryStatus::Processed)
        .map(|e| e.file_source.clone())
        .collect();
    let others: Vec<String> = entries
        .iter()
        .filter(|e| !matches!(watch.status_of(e), EntryStatus::Processed | EntryStatus::WaitingTranscript))
        .map(|e| format!("{} {}", e.memory_id, e.status))
        .collect();
    assert!(others.is_empty(), "ledger entries not processed: {others:?}");
    assert_eq!(processed, unique, "ledger and LightRAG differ");
    unique.len()
}

fn count(run: &CliRun, field: &str) -> u64 {
    run.json()["counts"][field].as_u64().unwrap_or_else(|| panic!("no {field}: {}\n{}", run.stdout, run.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_memories_rerun_edits_and_late_transcripts() {
    let Some(url) = real_url() else { return };
    let _serial = SERIAL.lock().await;
    let ctx = context("REALA");
    let mem = memory_sim(&ctx, 300, 17).await;
    let ws = workspace(&mem, &url, &ctx, 25);

    let started = Instant::now();
    let first = sync(&ws).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let sent = count(&first, "new");
    let stored = assert_one_to_one(&url, &ctx, &ws).await;
    assert_eq!(stored as u64, sent);
    eprintln!(
        "real LightRAG: {sent} documents submitted and processed in {:.1} s ({:.1} docs/s)",
        started.elapsed().as_secs_f64(),
        sent as f64 / started.elapsed().as_secs_f64()
    );

    let rerun = sync(&ws).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!((count(&rerun, "new"), count(&rerun, "updated")), (0, 0));
    assert_eq!(lightrag_docs(&url, &ctx).await.len(), stored);

    let edited: Vec<String> = mem.ids_with_transcript(&ctx).into_iter().take(10).collect();
    assert_eq!(mem.edit_transcripts(&ctx, &edited, " (edited later)"), 10);
    let mut updated = 0;
    for _ in 0..6 {
        let run = sync(&ws).await;
        assert!(run.code == 0 || run.code == 3, "{}\n{}", run.stdout, run.stderr);
        updated += count(&run, "updated");
        if updated >= 10 {
            break;
        }
    }
    assert_eq!(updated, 10, "every edit replaces its document (busy deletes are retried on later runs)");
    assert_eq!(assert_one_to_one(&url, &ctx, &ws).await, stored);

    let filled = mem.fill_transcripts(&ctx, None) as u64;
    assert!(filled > 0);
    let late = sync(&ws).await;
    assert_eq!(late.code, 0, "{}", late.stderr);
    assert_eq!(count(&late, "new"), filled);
    assert_eq!(assert_one_to_one(&url, &ctx, &ws).await as u64, stored as u64 + filled);
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_failed_by_the_llm_are_reported_then_processed_after_recovery() {
    let Some(url) = real_url() else { return };
    let llm = std::env::var("FAKE_LLM_URL").expect("FAKE_LLM_URL comes with LIGHTRAG_REAL_URL");
    let _serial = SERIAL.lock().await;
    let ctx = context("REALB");
    let marker = format!("Zyxfail{}", std::process::id());
    let mem = memory_sim(&ctx, 0, 1).await;
    mem.add_raw(
        &ctx,
        (0..12)
            .map(|i| {
                let text = if i % 3 == 0 { format!("Olga met Pavel in Prague, {marker} number {i}") } else { format!("Quentin rode to Rouen, note {i}") };
                json!({"id": format!("m{i:02}"), "type": "note", "transcript": text, "created_at": "2025-12-18T10:00:00Z"})
            })
            .collect(),
    );
    let ws = workspace(&mem, &url, &ctx, 4);
    let http = reqwest::Client::new();
    http.post(format!("{llm}/_control/fail")).json(&json!({"marker": marker})).send().await.expect("fail on");

    let first = sync(&ws).await;
    assert_eq!(first.code, 3, "failed in LightRAG makes the run partial: {}\n{}", first.stdout, first.stderr);
    assert_eq!(count(&first, "lightrag_failed"), 4, "{}", first.stdout);
    let failed = ws.run(&["failed", "--connector-id", "personal-memories", "--json"]).json();
    let listed: Vec<&str> = failed.as_array().expect("list").iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(listed, vec!["lightrag_failed"; 4], "{failed}");
    let status = ws.run(&["status", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(status["ledger"]["lightrag_failed"], json!(4), "{status}");

    http.delete(format!("{llm}/_control/fail")).send().await.expect("fail off");
    let second = sync(&ws).await;
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(count(&second, "updated"), 4, "the failed ones are sent again");
    assert_eq!(assert_one_to_one(&url, &ctx, &ws).await, 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_run_then_rerun_leaves_nothing_missing_or_duplicated() {
    let Some(url) = real_url() else { return };
    let _serial = SERIAL.lock().await;
    let ctx = context("REALC");
    let mem = memory_sim(&ctx, 120, 23).await;
    let ws = workspace(&mem, &url, &ctx, 5);
    let mut child = spawn_sync(&ws);
    let waited = Instant::now();
    while lightrag_docs(&url, &ctx).await.len() < 20 && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.expect("SIGKILL");
    let sent_before = lightrag_docs(&url, &ctx).await.len();
    assert!(sent_before >= 20, "the run was killed before it sent anything");
    let rerun = sync(&ws).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert!(rerun.stderr.contains("the previous run was interrupted"), "the rerun must notice the interrupted run");
    let stored = assert_one_to_one(&url, &ctx, &ws).await;
    assert_eq!(stored, with_text(&mem, &ctx), "no memory missing");
}

/// A `sync` child process, output discarded (the tests kill it).
fn spawn_sync(ws: &Workspace) -> tokio::process::Child {
    ws.spawn(&["sync", "--connector-id", "personal-memories"])
}

fn with_text(mem: &MemorySim, ctx: &str) -> usize {
    mem.ids_with_transcript(ctx).len()
}

fn fake_llm() -> String {
    std::env::var("FAKE_LLM_URL").expect("FAKE_LLM_URL comes with LIGHTRAG_REAL_URL")
}

/// Makes the real servers wait `seconds` before they enqueue what they
/// accepted for names containing `marker` (0 switches it off): LightRAG has
/// answered 200, but the names are neither listed nor seen by its 409 check
/// until then (`tests/lightrag/serve.py`).
async fn slow_enqueue(marker: &str, seconds: u64) {
    let answer = reqwest::Client::new()
        .post(format!("{}/_control/slow_enqueue", fake_llm()))
        .json(&json!({"marker": marker, "seconds": seconds}))
        .send()
        .await
        .expect("slow_enqueue");
    assert!(answer.status().is_success());
}

/// How many enqueues of names containing `marker` the servers held back.
async fn held_enqueues(marker: &str) -> u64 {
    let stats: Value = reqwest::Client::new()
        .get(format!("{}/_control/stats", fake_llm()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    stats["gated"][marker].as_u64().unwrap_or(0)
}

/// Waits (up to 60 s) until LightRAG accepted `n` requests for `marker`
/// whose documents it has not enqueued yet.
async fn wait_held(marker: &str, n: u64) {
    let what = format!("LightRAG to accept {n} requests for {marker}");
    wait_until(&what, Duration::from_secs(60), || async { held_enqueues(marker).await >= n }).await;
}

/// How long the servers hold an accepted request before enqueueing it in
/// the kill tests: longer than any rerun needs to decide what to send.
const HELD_SECONDS: u64 = 8;

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_lightrag_accepted_a_batch_then_reruns_send_no_second_copy() {
    let Some(url) = real_url() else { return };
    let _serial = SERIAL.lock().await;
    let ctx = context("REALD");
    let mem = memory_sim(&ctx, 40, 29).await;
    let ws = workspace(&mem, &url, &ctx, 5);
    slow_enqueue(&ctx, HELD_SECONDS).await;

    // 1: killed once LightRAG has accepted a batch it does not list yet.
    let mut first = spawn_sync(&ws);
    wait_held(&ctx, 1).await;
    first.kill().await.expect("SIGKILL");
    assert!(lightrag_docs(&url, &ctx).await.is_empty(), "the accepted documents must not be listed yet");

    // 2: the rerun is killed a second after it started, still deciding.
    let mut second = spawn_sync(&ws);
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.kill().await.expect("SIGKILL");

    // 3: a rerun that finishes; then LightRAG must hold each memory once.
    let third = sync(&ws).await;
    slow_enqueue(&ctx, 0).await;
    assert_eq!(third.code, 0, "{}\n{}", third.stdout, third.stderr);
    assert!(third.stderr.contains("the previous run was interrupted"), "{}", third.stderr);
    let stored = assert_one_to_one(&url, &ctx, &ws).await;
    assert_eq!(stored, with_text(&mem, &ctx), "no memory missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_replacing_then_rerun_sends_no_second_copy() {
    let Some(url) = real_url() else { return };
    let _serial = SERIAL.lock().await;
    let ctx = context("REALE");
    let mem = memory_sim(&ctx, 20, 31).await;
    let ws = workspace(&mem, &url, &ctx, 5);
    let first = sync(&ws).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let stored = assert_one_to_one(&url, &ctx, &ws).await;
    let lengths = |docs: Vec<Value>| -> std::collections::BTreeMap<String, u64> {
        docs.iter()
            .map(|d| {
                (d["file_path"].as_str().unwrap_or_default().to_owned(), d["content_length"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    let before = lengths(lightrag_docs(&url, &ctx).await);

    let edited: Vec<String> = mem.ids_with_transcript(&ctx).into_iter().take(6).collect();
    assert_eq!(mem.edit_transcripts(&ctx, &edited, " (edited later)"), 6);
    slow_enqueue(&ctx, HELD_SECONDS).await;
    // Killed once LightRAG accepted the new texts of a replace (the old
    // documents deleted, the new ones not listed yet).
    let mut replacing = spawn_sync(&ws);
    wait_held(&ctx, 1).await;
    replacing.kill().await.expect("SIGKILL");

    let rerun = sync(&ws).await;
    slow_enqueue(&ctx, 0).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(assert_one_to_one(&url, &ctx, &ws).await, stored);
    let longer =
        lengths(lightrag_docs(&url, &ctx).await).into_iter().filter(|(name, n)| before.get(name) < Some(n)).count();
    assert_eq!(longer, 6, "LightRAG holds the edited texts");
    let after = sync(&ws).await;
    assert_eq!((count(&after, "new"), count(&after, "updated")), (0, 0), "{}", after.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_record_of_one_of_its_names_is_removed_and_reported() {
    let Some(url) = real_url() else { return };
    let _serial = SERIAL.lock().await;
    let ctx = context("REALF");
    let mem = memory_sim(&ctx, 6, 41).await;
    let ws = workspace(&mem, &url, &ctx, 5);
    // Another writer (or an older connector) sent one of this connector's
    // names twice before LightRAG had enqueued the first copy.
    let id = mem.ids_with_transcript(&ctx).into_iter().next().expect("a memory with a transcript");
    let name = connector_core::transform::file_source(&ctx, &id);
    slow_enqueue(&name, 2).await;
    let http = reqwest::Client::new();
    for copy in ["Yara wrote the first copy in Quito.", "Yara wrote the second copy in Quito."] {
        let answer = http
            .post(format!("{url}/documents/text"))
            .json(&json!({"text": copy, "file_source": name}))
            .send()
            .await
            .expect("insert");
        assert!(answer.status().is_success(), "{answer:?}");
    }
    slow_enqueue(&name, 0).await;
    let both = || async { lightrag_docs(&url, &ctx).await.len() >= 2 };
    wait_until("LightRAG to enqueue the two copies", Duration::from_secs(60), both).await;
    assert!(lightrag_docs(&url, &ctx).await.iter().any(|d| d["id"].as_str().is_some_and(|i| i.starts_with("dup-"))));

    let run = sync(&ws).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(count(&run, "duplicates_removed"), 1, "{}", run.stdout);
    assert!(run.json()["warnings"].to_string().contains("removed 1 duplicate record"), "{}", run.stdout);
    assert_eq!(assert_one_to_one(&url, &ctx, &ws).await, with_text(&mem, &ctx));
    let kept = lightrag_docs(&url, &ctx).await.into_iter().find(|d| d["file_path"] == json!(name)).expect("kept");
    assert_eq!(kept["content_summary"], json!("Yara wrote the first copy in Quito."), "the original is kept");
}
