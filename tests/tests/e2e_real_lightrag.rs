//! End to end against a real LightRAG 1.5.7 (started by `make test` through
//! `tests/scripts/with-lightrag.sh`): LightRAG's own document list must match
//! the ledger one to one, every document `processed`, none duplicated.
//! The cases share one server, so they run one at a time, each with its own
//! context id (its own document names).

use connector_core::ids::ConnectorId;
use connector_core::state::json::JsonStore;
use connector_core::state::{EntryStatus, StateStore};
use serde_json::{Value, json};
use sims::harness::{CliRun, ConfigSpec, Workspace};
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
    let processed: BTreeSet<String> =
        entries.iter().filter(|e| e.status == EntryStatus::Processed).map(|e| e.file_source.clone()).collect();
    let others: Vec<String> = entries
        .iter()
        .filter(|e| !matches!(e.status, EntryStatus::Processed | EntryStatus::WaitingTranscript))
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

    let edited: Vec<String> = mem
        .expected(&ctx)
        .iter()
        .filter(|m| m["transcript"].as_str().is_some_and(|t| !t.trim().is_empty()))
        .filter_map(|m| m["id"].as_str().map(str::to_owned).or_else(|| m["id"].as_u64().map(|n| n.to_string())))
        .take(10)
        .collect();
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
    let mut child = tokio::process::Command::from(ws.command(&["sync", "--connector-id", "personal-memories"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
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
    let expected =
        mem.expected(&ctx).iter().filter(|m| m["transcript"].as_str().is_some_and(|t| !t.trim().is_empty())).count();
    assert_eq!(stored, expected, "no memory missing");
}
