//! End to end after a run that died while sending, against the LightRAG
//! simulator made slow to enqueue what it accepted (as a loaded LightRAG
//! 1.5.7 is: the names are listed, and seen by its 409 check, only once a
//! background task enqueued them): no second copy is ever sent, so LightRAG
//! never records a `dup-` document; `dup-` records made by someone else are
//! removed. The same cases run against a real LightRAG in
//! `e2e_real_lightrag.rs`.

use serde_json::{Value, json};
use sims::harness::{CliRun, ConfigSpec, Workspace, wait_until};
use sims::lightrag_sim::{LightragSim, LightragSimOptions, SimFault, SimRoute};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::time::{Duration, Instant};

const MEMORY_KEY: &str = "mem-key-5e1f0c";
const CTX: &str = "CTXREC";

async fn memory_sim(count: usize) -> MemorySim {
    MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed: 37,
        contexts: vec![(CTX.into(), count)],
        ..Default::default()
    })
    .await
    .expect("start memory sim")
}

async fn lightrag_sim() -> LightragSim {
    let options = LightragSimOptions {
        latency: Duration::from_millis(10),
        process_delay: Duration::from_millis(5),
        ..Default::default()
    };
    LightragSim::start(options).await.expect("start lightrag sim")
}

fn workspace(mem: &MemorySim, rag: &LightragSim, backend: &'static str, path: &str, confirm_wait: u64) -> Workspace {
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.context_id = CTX.into();
    spec.backend = backend;
    spec.state_path = path.into();
    spec.batch_size = 4;
    spec.confirm_wait_seconds = confirm_wait;
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws
}

async fn sync(ws: &Workspace) -> CliRun {
    ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await
}

fn spawn_sync(ws: &Workspace) -> tokio::process::Child {
    ws.spawn(&["sync", "--connector-id", "personal-memories"])
}

fn with_transcript(mem: &MemorySim) -> usize {
    mem.ids_with_transcript(CTX).len()
}

/// Waits (up to 20 s) until LightRAG has accepted an insert request it has
/// not enqueued yet.
async fn wait_accepted(rag: &LightragSim) {
    wait_until("LightRAG to accept an insert", Duration::from_secs(20), || async { rag.pending_enqueues() > 0 }).await;
}

/// Sends two texts under `name` before LightRAG enqueued the first: it
/// keeps the first and records the second as a failed `dup-` document.
async fn send_twice(rag: &LightragSim, name: &str, texts: [&str; 2]) {
    rag.slow_enqueue(name, Duration::from_millis(300));
    let http = reqwest::Client::new();
    for text in texts {
        let answer = http
            .post(format!("{}/documents/text", rag.url()))
            .json(&json!({"text": text, "file_source": name}))
            .send()
            .await
            .expect("insert");
        assert!(answer.status().is_success());
    }
    rag.slow_enqueue(name, Duration::ZERO);
}

fn ledger(ws: &Workspace) -> Value {
    ws.run(&["status", "--connector-id", "personal-memories", "--json"]).json()["ledger"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_lightrag_accepted_then_reruns_send_no_second_copy() {
    for (backend, path) in [("json", "state.json"), ("sqlite", "state.db")] {
        let mem = memory_sim(40).await;
        let rag = lightrag_sim().await;
        rag.slow_enqueue(CTX, Duration::from_secs(3));
        let ws = workspace(&mem, &rag, backend, path, 30);

        let mut first = spawn_sync(&ws);
        wait_accepted(&rag).await;
        first.kill().await.expect("SIGKILL");
        assert!(rag.documents().is_empty(), "{backend}: accepted but not enqueued yet");
        assert!(ledger(&ws)["sending"].as_u64().is_some_and(|n| n > 0), "{backend}: the killed run left its marks");

        // Killed again while it waits for LightRAG to list what the first sent.
        let mut second = spawn_sync(&ws);
        tokio::time::sleep(Duration::from_millis(700)).await;
        second.kill().await.expect("SIGKILL");

        let third = sync(&ws).await;
        assert_eq!(third.code, 0, "{backend}: {}\n{}", third.stdout, third.stderr);
        // What the first run had accepted and recorded is unchanged; what it
        // had in flight is found in LightRAG (or, if LightRAG never got it,
        // sent now): either way once.
        assert!(third.stderr.contains("the previous run was interrupted"), "{backend}: {}", third.stderr);
        assert_eq!(rag.assert_names_once().len(), with_transcript(&mem), "{backend}");
        assert_eq!(ledger(&ws)["sending"], json!(0), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_replacing_then_rerun_sends_no_second_copy() {
    let mem = memory_sim(16).await;
    let rag = lightrag_sim().await;
    let ws = workspace(&mem, &rag, "json", "state.json", 30);
    let first = sync(&ws).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let edited: Vec<String> = mem.ids_with_transcript(CTX).into_iter().take(6).collect();
    assert_eq!(mem.edit_transcripts(CTX, &edited, " (edited later)"), 6);
    rag.slow_enqueue(CTX, Duration::from_secs(3));
    let mut replacing = spawn_sync(&ws);
    wait_accepted(&rag).await;
    replacing.kill().await.expect("SIGKILL");

    let rerun = sync(&ws).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(rag.assert_names_once().len(), with_transcript(&mem));
    let edited_texts = rag.documents().iter().filter(|d| d.text.contains("(edited later)")).count();
    assert_eq!(edited_texts, 6, "LightRAG holds the edited texts");
    let after = sync(&ws).await;
    assert_eq!(
        (after.json()["counts"]["new"].clone(), after.json()["counts"]["updated"].clone()),
        (json!(0), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_lightrag_is_still_enqueuing_are_held_back_to_a_later_run() {
    let mem = memory_sim(12).await;
    let rag = lightrag_sim().await;
    rag.slow_enqueue(CTX, Duration::from_secs(6));
    let ws = workspace(&mem, &rag, "json", "state.json", 1);
    let mut first = spawn_sync(&ws);
    wait_accepted(&rag).await;
    first.kill().await.expect("SIGKILL");

    let rerun = sync(&ws).await;
    assert_eq!(rerun.code, 3, "partial: {}\n{}", rerun.stdout, rerun.stderr);
    let report = rerun.json();
    let held = report["counts"]["held_back"].as_u64().unwrap_or(0);
    assert!(held > 0, "{report}");
    assert!(report["warnings"].to_string().contains("not sent again by this run"), "{report}");
    assert_eq!(ledger(&ws)["sending"], json!(held), "held back documents stay marked");

    // Once LightRAG enqueued them, a later run finds them.
    wait_until("LightRAG to enqueue them", Duration::from_secs(20), || async { rag.pending_enqueues() == 0 }).await;
    let later = sync(&ws).await;
    assert_eq!(later.code, 0, "{}\n{}", later.stdout, later.stderr);
    // A held mark is either found (LightRAG enqueued it) or, when the killed
    // request never reached LightRAG whole, sent once now: each exactly once.
    let counts = &later.json()["counts"];
    let settled = counts["recovered"].as_u64().unwrap_or(0) + counts["new"].as_u64().unwrap_or(0);
    assert_eq!(settled, held, "{}", later.stdout);
    // What was sent again is enqueued as slowly as the first copies were.
    wait_until("LightRAG to enqueue the rest", Duration::from_secs(20), || async { rag.pending_enqueues() == 0 }).await;
    assert_eq!(rag.assert_names_once().len(), with_transcript(&mem));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mark_whose_request_never_left_is_sent_once_lightrag_had_time_to_take_it_up() {
    let mem = memory_sim(6).await;
    let rag = lightrag_sim().await;
    let ws = workspace(&mem, &rag, "sqlite", "state.db", 30);
    // LightRAG refuses the first request outright: the run stops, its marks stay.
    rag.inject(SimFault::new(SimRoute::InsertBatch, 401).times(10));
    let refused = sync(&ws).await;
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    let marked = ledger(&ws)["sending"].as_u64().unwrap_or(0);
    assert!(marked > 0, "{}", refused.stdout);
    rag.clear_faults();

    let started = Instant::now();
    let rerun = sync(&ws).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert!(started.elapsed() >= Duration::from_secs(3), "a fresh mark is given time to show up in LightRAG");
    assert!(rerun.stderr.contains("they never reached it"), "{}", rerun.stderr);
    assert_eq!(rerun.json()["counts"]["recovered"], json!(0));
    assert_eq!(rag.assert_names_once().len(), with_transcript(&mem));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_record_someone_else_made_is_removed_and_reported() {
    let mem = memory_sim(6).await;
    let rag = lightrag_sim().await;
    let ws = workspace(&mem, &rag, "json", "state.json", 30);
    // Another writer sent one of this connector's names twice before
    // LightRAG had enqueued the first copy.
    let id = mem.ids_with_transcript(CTX).into_iter().next().expect("a memory with a transcript");
    let name = connector_core::transform::file_source(CTX, &id);
    send_twice(&rag, &name, ["first copy", "second copy"]).await;
    wait_until("both copies in LightRAG", Duration::from_secs(10), || async { rag.documents().len() >= 2 }).await;
    // A record of another context is not this connector's to remove.
    let other = connector_core::transform::file_source("OTHERCTX", &id);
    send_twice(&rag, &other, ["other a", "other b"]).await;

    let run = sync(&ws).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["counts"]["duplicates_removed"], json!(1), "{report}");
    assert!(report["warnings"].to_string().contains("removed 1 duplicate record"), "{report}");
    let ours: Vec<_> = rag.documents().into_iter().filter(|d| !d.file_path.contains("OTHERCTX")).collect();
    assert!(ours.iter().all(|d| !d.id.starts_with("dup-")), "{ours:?}");
    let kept = ours.iter().find(|d| d.file_path == name).expect("the original is kept");
    assert_eq!(kept.text, "first copy");
    assert_eq!(ours.len(), with_transcript(&mem));
    let others = rag.documents().into_iter().filter(|d| d.file_path.contains("OTHERCTX")).count();
    assert_eq!(others, 2, "another context's records are left alone");
}
