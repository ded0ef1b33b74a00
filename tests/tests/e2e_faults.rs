//! End to end under faults: the Memory API misbehaving, LightRAG refusing,
//! the process killed mid-run, two runs at once.

use connector_core::transform::file_source;
use serde_json::{Value, json};
use sims::harness::{CliRun, ConfigSpec, Workspace, wait_until};
use sims::lightrag_sim::{LightragSim, LightragSimOptions, SimFault, SimRoute};
use sims::memory_sim::{Fault, MemorySim, MemorySimOptions};
use std::collections::BTreeMap;
use std::time::Duration;

const MEMORY_KEY: &str = "mem-key-9a7d3b";
const CTX: &str = "CTX123";

async fn memory_sim(count: usize) -> MemorySim {
    MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed: 21,
        contexts: vec![(CTX.into(), count)],
        ..Default::default()
    })
    .await
    .expect("start memory sim")
}

async fn lightrag_sim(latency: Duration) -> LightragSim {
    LightragSim::start(LightragSimOptions { latency, ..Default::default() }).await.expect("start lightrag sim")
}

fn workspace(spec: &ConfigSpec) -> Workspace {
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws
}

async fn sync(ws: &Workspace) -> CliRun {
    ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await
}

fn fault(status: u16, times: usize) -> Fault {
    Fault { status, body: String::new(), retry_after: None, delay: Duration::ZERO, times }
}

fn with_transcript(mem: &MemorySim) -> usize {
    mem.ids_with_transcript(CTX).len()
}

fn names_once(rag: &LightragSim) -> BTreeMap<String, usize> {
    rag.assert_names_once()
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_429_with_retry_after_and_503_bursts() {
    let mem = memory_sim(10).await;
    let rag = lightrag_sim(Duration::ZERO).await;
    let ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));
    mem.inject(Fault { retry_after: Some("1".into()), ..fault(429, 1) });
    mem.inject(fault(503, 2));
    let started = std::time::Instant::now();
    let run = sync(&ws).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");
    assert_eq!(mem.list_requests(), 4);
    assert_eq!(names_once(&rag).len(), with_transcript(&mem));
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_a_timeout_and_a_garbage_body() {
    let mem = memory_sim(10).await;
    let rag = lightrag_sim(Duration::ZERO).await;
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.memory_timeout = 1;
    let ws = workspace(&spec);
    mem.inject(Fault { delay: Duration::from_millis(2500), ..fault(200, 1) });
    mem.inject(Fault { body: "<html>upstream hiccup".into(), ..fault(200, 1) });
    let run = sync(&ws).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(names_once(&rag).len(), with_transcript(&mem));
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_garbage_fails_the_run_and_writes_no_ledger() {
    let mem = memory_sim(10).await;
    let rag = lightrag_sim(Duration::ZERO).await;
    let ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));
    mem.inject(Fault { body: "not json at all".into(), ..fault(200, 10) });
    let run = sync(&ws).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["status"], json!("failed"));
    assert!(report["error"].as_str().is_some_and(|e| e.contains("JSON")), "{report}");
    assert!(rag.documents().is_empty());
    let status = ws.run(&["status", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(status["processed"], json!(0));
    assert_eq!(status["consecutive_failures"], json!(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_memory_api_key_is_a_clear_error_and_nothing_is_written() {
    let mem = memory_sim(10).await;
    let rag = lightrag_sim(Duration::ZERO).await;
    let mut ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));
    ws.set_env("MEMORY_API_KEY", "wrong-key-31337");
    let run = sync(&ws).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let error = run.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("401"), "{error}");
    assert!(error.contains(&format!("{}/memory/{CTX}", mem.url())), "{error}");
    assert!(error.contains("memory_api.api_key"), "{error}");
    assert!(!run.stdout.contains("wrong-key-31337") && !run.stderr.contains("wrong-key-31337"));
    assert_eq!(mem.list_requests(), 1, "401 must not be retried");
    assert!(rag.documents().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_sent_before_a_crash_is_recognised_by_its_409() {
    let mem = memory_sim(8).await;
    let rag = lightrag_sim(Duration::ZERO).await;
    let ws = workspace(&ConfigSpec::new(&mem.url(), &rag.url()));
    // The memory was sent by a run that died before its checkpoint.
    let id = mem
        .expected(CTX)
        .iter()
        .find(|m| m.get("transcript").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty()))
        .and_then(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
        .expect("a memory with a transcript");
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{}/documents/text", rag.url()))
        .json(&json!({"text": "sent before the crash", "file_source": file_source(CTX, &id)}))
        .send()
        .await
        .expect("pre-insert");
    assert!(answer.status().is_success());
    let run = sync(&ws).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["counts"]["failed"], json!(0));
    assert_eq!(names_once(&rag).len(), with_transcript(&mem));
}

/// A workspace on `backend` (state file `path`) with this batch size.
fn backend_workspace(
    mem: &MemorySim,
    rag: &LightragSim,
    backend: &'static str,
    path: &str,
    batch_size: u32,
) -> Workspace {
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.backend = backend;
    spec.state_path = path.into();
    spec.batch_size = batch_size;
    workspace(&spec)
}

/// A `sync` child process, output discarded (the tests kill it).
fn spawn_sync(ws: &Workspace) -> tokio::process::Child {
    ws.spawn(&["sync", "--connector-id", "personal-memories"])
}

/// Waits (up to 20 s) until LightRAG holds `n` documents.
async fn wait_for_documents(rag: &LightragSim, n: usize) {
    wait_until(&format!("{n} documents in LightRAG"), Duration::from_secs(60), || async { rag.documents().len() >= n })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_then_rerun_sends_each_memory_once() {
    for (backend, path) in [("json", "state.json"), ("sqlite", "state.db")] {
        let mem = memory_sim(120).await;
        let rag = lightrag_sim(Duration::from_millis(15)).await;
        let ws = backend_workspace(&mem, &rag, backend, path, 4);
        let total = with_transcript(&mem);
        for round in 1..=3usize {
            let mut child = spawn_sync(&ws);
            // Kill once this run has sent a few more documents: mid-batch, mid-checkpoint.
            wait_for_documents(&rag, (round * total / 4).max(1) + round).await;
            child.kill().await.expect("SIGKILL");
            assert!(rag.documents().len() < total, "{backend}: round {round} finished before it was killed");
            let status = ws.run_async(&["status", "--connector-id", "personal-memories", "--json"]).await;
            assert_eq!(status.code, 0, "{backend}: state unreadable after SIGKILL: {}", status.stderr);
        }
        if backend == "json" {
            let text = std::fs::read_to_string(ws.path().join(path)).expect("state file");
            serde_json::from_str::<Value>(&text).expect("state file is valid JSON after SIGKILL");
        }
        // The killed run's lease names a process of this host that is gone:
        // the rerun takes it over instead of waiting for it to expire.
        let rerun = sync(&ws).await;
        assert_eq!(rerun.code, 0, "{backend}: {}\n{}", rerun.stdout, rerun.stderr);
        assert_eq!(names_once(&rag).len(), with_transcript(&mem), "{backend}");
    }
}

/// A run killed mid-run leaves its lease behind; `reset` sees that its
/// process is gone (reaped or not) and does not wait for the lease to expire.
#[tokio::test(flavor = "multi_thread")]
async fn reset_after_a_killed_run_does_not_wait_for_its_lease() {
    for (backend, path) in [("json", "state.json"), ("sqlite", "state.db")] {
        let mem = memory_sim(40).await;
        let rag = lightrag_sim(Duration::from_millis(20)).await;
        let ws = backend_workspace(&mem, &rag, backend, path, 2);
        let mut child = spawn_sync(&ws);
        wait_for_documents(&rag, 4).await;
        // SIGKILL without reaping: the holder is a zombie until wait().
        child.start_kill().expect("SIGKILL");
        let status = ws.run_async(&["status", "--connector-id", "personal-memories", "--json"]).await.json();
        assert!(status["processed"].as_u64().is_some_and(|n| n > 0), "{backend}: {status}");
        let reset = ws.run_async(&["reset", "--connector-id", "personal-memories", "--yes"]).await;
        assert_eq!(reset.code, 0, "{backend}: {}", reset.stderr);
        let status = ws.run_async(&["status", "--connector-id", "personal-memories", "--json"]).await.json();
        assert_eq!(status["processed"], json!(0), "{backend}: {status}");
        child.wait().await.expect("reap");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_while_one_runs_gets_already_running() {
    let mem = memory_sim(60).await;
    let rag = lightrag_sim(Duration::from_millis(20)).await;
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.batch_size = 2;
    let ws = workspace(&spec);
    let first =
        tokio::process::Command::from(ws.command(&["sync", "--connector-id", "personal-memories", "--json"])).output();
    let first = tokio::spawn(first);
    // The first run holds the lease once it delivers (30 batches to go).
    wait_for_documents(&rag, 2).await;
    let second = sync(&ws).await;
    assert_eq!(second.code, 1, "{}\n{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("already running"), "{}", second.stderr);
    let reset = ws.run_async(&["reset", "--connector-id", "personal-memories", "--yes"]).await;
    assert_eq!(reset.code, 1, "a reset under a live run is refused: {}", reset.stdout);
    assert!(reset.stderr.contains("is running"), "{}", reset.stderr);
    let first: CliRun = first.await.expect("join").expect("first run").into();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(names_once(&rag).len(), with_transcript(&mem));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_memory_is_retried_then_dead_then_replayed() {
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        contexts: vec![(CTX.into(), 0)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    mem.add_raw(
        CTX,
        (1..=3)
            .map(|i| json!({"id": format!("m{i}"), "type": "note", "transcript": format!("memory number {i}")}))
            .collect(),
    );
    let rag = lightrag_sim(Duration::ZERO).await;
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.batch_size = 1;
    spec.max_attempts = 2;
    let ws = workspace(&spec);

    rag.inject(SimFault {
        route: SimRoute::Insert,
        status: 422,
        body: r#"{"detail":"bad text"}"#.into(),
        retry_after: None,
        times: 1,
    });
    let first = sync(&ws).await;
    assert_eq!(first.code, 3, "partial: {}\n{}", first.stdout, first.stderr);
    assert_eq!(first.json()["counts"]["failed"], json!(1));
    assert_eq!(first.json()["errors"][0]["memory_id"], json!("m1"));
    assert!(first.json()["errors"][0]["message"].as_str().is_some_and(|m| m.contains("422") && m.contains("bad text")));

    rag.inject(SimFault {
        route: SimRoute::Insert,
        status: 422,
        body: r#"{"detail":"bad text"}"#.into(),
        retry_after: None,
        times: 1,
    });
    let second = sync(&ws).await;
    assert_eq!(second.code, 3);
    assert_eq!(second.json()["counts"]["dead"], json!(1));
    let failed = ws.run(&["failed", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(failed[0]["memory_id"], json!("m1"));
    assert_eq!(failed[0]["status"], json!("dead"));

    // Dead stays dead until replayed; a run that meets it again has
    // nothing failing in it: completed, the memory counted as still dead.
    let third = sync(&ws).await;
    assert_eq!(third.json()["counts"]["still_dead"], json!(1), "dead stays dead until replayed");
    assert_eq!(third.json()["counts"]["dead"], json!(0));
    assert_eq!(third.code, 0, "{}", third.stdout);

    let replay = ws.run(&["retry-failed", "--connector-id", "personal-memories", "--json"]);
    assert_eq!(replay.json()["replayed"], json!(1));
    let fourth = sync(&ws).await;
    assert_eq!(fourth.code, 0, "{}", fourth.stderr);
    assert_eq!(fourth.json()["counts"]["new"], json!(1));
    assert_eq!(names_once(&rag).len(), 3);
}

/// The health check and the fetch run at the same time. Both failing: the
/// run reports LightRAG's error and keeps the Memory API's as a warning.
/// LightRAG failing while the fetch still waits: the run ends without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_health_check_reports_the_fetch_error_too_and_never_waits_for_it() {
    let mem = memory_sim(6).await;
    let rag = lightrag_sim(Duration::from_millis(300)).await;
    let spec = ConfigSpec::new(&mem.url(), &rag.url());
    let ws = workspace(&spec);
    // 401 is not retried: the fetch fails well before the slow health answer.
    mem.inject(Fault { status: 401, body: r#"{"detail":"bad key"}"#.into(), ..fault(401, 1) });
    rag.inject(SimFault { route: SimRoute::Health, status: 500, body: "down".into(), retry_after: None, times: 100 });
    let both = sync(&ws).await;
    assert_eq!(both.code, 1, "{}\n{}", both.stdout, both.stderr);
    let report = both.json();
    assert!(report["error"].as_str().is_some_and(|e| e.contains("500")), "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("fetching memories failed too") && warnings.contains("401"), "{report}");

    // A fetch that would hang for a minute is dropped once the health check failed.
    mem.inject(Fault { delay: Duration::from_secs(60), ..fault(200, 1) });
    let started = std::time::Instant::now();
    let down =
        tokio::time::timeout(Duration::from_secs(45), sync(&ws)).await.expect("the run waited for the hanging fetch");
    assert_eq!(down.code, 1, "{}", down.stdout);
    assert!(started.elapsed() < Duration::from_secs(45));
    assert!(
        down.json()["warnings"].as_array().is_some_and(|w| w.iter().all(|w| !w.to_string().contains("fetching"))),
        "{}",
        down.stdout
    );
    assert!(rag.documents().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn lightrag_unreachable_keeps_memories_for_the_next_run() {
    let mem = memory_sim(6).await;
    let rag = lightrag_sim(Duration::ZERO).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let mut spec = ConfigSpec::new(&mem.url(), &closed);
    let ws = workspace(&spec);
    let down = sync(&ws).await;
    assert_eq!(down.code, 1, "{}\n{}", down.stdout, down.stderr);
    let expected = with_transcript(&mem);
    assert!(
        down.json()["error"].as_str().is_some_and(|e| e.contains("nothing was sent") && e.contains(&closed)),
        "{}",
        down.stdout
    );
    // Not the memories' fault: none is charged an attempt.
    assert_eq!(down.json()["counts"]["failed"], json!(0));
    let failed = ws.run(&["failed", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(failed, json!([]));

    spec.lightrag_url = Some(rag.url());
    ws.write_config(&spec.render());
    let up = sync(&ws).await;
    assert_eq!(up.code, 0, "{}\n{}", up.stdout, up.stderr);
    assert_eq!(up.json()["counts"]["new"], json!(expected));
    assert_eq!(names_once(&rag).len(), expected);
}
