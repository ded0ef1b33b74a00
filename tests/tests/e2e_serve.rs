//! End to end: `memory-connector serve` against the simulators — the
//! schedule fires, a trigger while running is refused (409), metrics count
//! the runs, alerts fire and recover, SIGTERM mid-run exits cleanly with the
//! ledger consistent, every route but `/health` needs the key, rate limiting.

use serde_json::{Value, json};
use sims::harness::{ConfigSpec, Workspace, wait_until, webhook};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{Fault, MemorySim, MemorySimOptions};
use sims::serve::{Serve, finished};
use std::time::{Duration, Instant};

const MEMORY_KEY: &str = "mem-secret-value-77aa";
const API_KEY: &str = "api-key-for-tests-0b9c";
const CTX: &str = "CTX123";
const ID: &str = "personal-memories";

async fn sims(count: usize, latency: Duration) -> (MemorySim, LightragSim) {
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed: 7,
        contexts: vec![(CTX.into(), count)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    let rag = LightragSim::start(LightragSimOptions { latency, ..Default::default() }).await.expect("lightrag sim");
    (mem, rag)
}

/// The harness config, with a schedule, the API and monitoring for `serve`.
fn config(mem: &MemorySim, rag: &LightragSim, schedule: &str, batch: u32, extra: &str) -> String {
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.batch_size = batch;
    spec.render()
        .replace("      type: interval\n      interval_hours: 1\n", schedule)
        .replace(
            "api:\n  enabled: false\n",
            &format!(
                "api:\n  enabled: true\n  host: \"127.0.0.1\"\n  port: 0\n  enable_auth: true\n  api_key: \"${{CONNECTOR_API_KEY}}\"\n{extra}"
            ),
        )
}

fn workspace(yaml: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.write_config(yaml);
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws.set_env("CONNECTOR_API_KEY", API_KEY);
    ws
}

/// The number of memories with a transcript (the ones that become documents).
fn with_transcript(mem: &MemorySim) -> usize {
    mem.expected(CTX)
        .iter()
        .filter(|m| m.get("transcript").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty()))
        .count()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schedule_fires_and_metrics_count_the_runs() {
    let (mem, rag) = sims(25, Duration::ZERO).await;
    let monitoring = "\nmonitoring:\n  prometheus:\n    enabled: true\n    port: 0\n    path: /metrics\n";
    let yaml = config(&mem, &rag, "      type: interval\n      interval_minutes: 0.02\n", 5, "") + monitoring;
    let ws = workspace(&yaml);
    let serve = Serve::start(&ws, &[]).await;
    // Interval 1.2 s: the first run starts at once (never ran), the next on schedule.
    let history = serve
        .wait_history("two scheduled runs", Duration::from_secs(40), |h| h.iter().filter(|r| finished(r)).count() >= 2)
        .await;
    assert!(history.iter().all(|r| r["trigger"] == json!("schedule")), "{history:?}");
    let docs = with_transcript(&mem);
    assert_eq!(rag.documents().len(), docs);
    let text = serve.metrics_text().await;
    // A completed run is `status="success"`, the label the reference's queries select.
    let succeeded = metric(&text, &format!("memory_connector_syncs_total{{connector_id=\"{ID}\",status=\"success\"}}"))
        .unwrap_or(0.0);
    assert!(succeeded >= 2.0, "{text}");
    assert_eq!(
        metric(&text, &format!("memory_connector_memories_new_total{{connector_id=\"{ID}\"}}")),
        Some(docs as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("memory_connector_memories_processed{{connector_id=\"{ID}\"}}")),
        Some(docs as f64),
        "{text}"
    );
    assert!(
        metric(&text, &format!("memory_connector_sync_run_duration_seconds_count{{connector_id=\"{ID}\"}}"))
            .unwrap_or(0.0)
            >= 2.0
    );
    assert!(
        metric(&text, &format!("memory_connector_sync_duration_seconds{{connector_id=\"{ID}\"}}")).is_some(),
        "{text}"
    );
    assert!(text.contains("memory_connector_lightrag_request_duration_seconds_bucket{operation=\"insert_batch\",outcome=\"ok\",le=\"+Inf\"}"), "{text}");
    assert!(text.contains("memory_connector_memory_api_request_duration_seconds_count{connector_id=\"personal-memories\",operation=\"list\",outcome=\"ok\"}"), "{text}");
    check_with_promtool(&ws, &text);
}

/// `promtool check metrics`, when `tests/scripts/promtool.sh` could provide it.
fn check_with_promtool(ws: &Workspace, text: &str) {
    let Some(promtool) = sims::tools::require("promtool", "promtool check metrics", "tests/scripts/promtool.sh") else {
        return;
    };
    let file = ws.path().join("metrics.txt");
    std::fs::write(&file, text).expect("write metrics");
    let out = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("metrics file"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_while_running_is_409_and_the_cli_says_so() {
    let (mem, rag) = sims(20, Duration::from_millis(300)).await;
    let ws = workspace(&config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 1, ""));

    // No service yet: the CLI says so clearly.
    let none = ws.run_async(&["trigger", "--connector-id", ID, "--port", "1"]).await;
    assert_eq!(none.code, 1, "{}", none.stderr);
    assert!(none.stderr.contains("no memory-connector service answers"), "{}", none.stderr);

    let serve = Serve::start(&ws, &["--api-only"]).await;
    let (status, first) = serve.post(&format!("/connectors/{ID}/trigger")).await;
    assert_eq!(status, 202, "{first}");
    let run_id = first["run_id"].as_str().expect("run id").to_owned();
    let (status, second) = serve.post(&format!("/connectors/{ID}/trigger")).await;
    assert_eq!(status, 409, "{second}");
    assert_eq!(second["error"]["code"], json!("already_running"));
    let port = serve.api.expect("api port").to_string();
    let health = ws.run_async(&["health", "--port", &port, "--json"]).await;
    assert_eq!(health.code, 0, "{}", health.stderr);
    assert_eq!(health.json()["active_jobs"], json!(1));
    let cli = ws.run_async(&["trigger", "--connector-id", ID, "--port", &port]).await;
    assert_eq!(cli.code, 1, "{}\n{}", cli.stdout, cli.stderr);
    assert!(cli.stderr.contains("409") && cli.stderr.contains("already running"), "{}", cli.stderr);
    // A one-shot `sync` from another process is refused by the lease too.
    let sync = ws.run_async(&["sync", "--connector-id", ID]).await;
    assert_eq!(sync.code, 1, "{}", sync.stderr);
    assert!(sync.stderr.contains("already running"), "{}", sync.stderr);

    let history = serve.wait_history("the triggered run", Duration::from_secs(40), |h| h.iter().any(finished)).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["run_id"], json!(run_id));
    assert_eq!(history[0]["trigger"], json!("api"));
    assert_eq!(history[0]["status"], json!("completed"));
    assert_eq!(rag.documents().len(), with_transcript(&mem));
    // Once finished, the CLI trigger starts the next one.
    let cli = ws.run_async(&["trigger", "--connector-id", ID, "--port", &port, "--json"]).await;
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    assert!(cli.json()["run_id"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_health_needs_the_key_and_secrets_stay_hidden() {
    let (mem, rag) = sims(5, Duration::ZERO).await;
    let ws = workspace(&config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 5, ""));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.config_path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let serve = Serve::start(&ws, &["--api-only"]).await;
    let log = std::fs::read_to_string(ws.path().join("serve.log")).expect("serve log");
    assert!(
        log.contains("readable by other users") && log.contains("config.yaml"),
        "a 0644 config is warned about:\n{log}"
    );
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/connectors".into()),
        ("GET", format!("/connectors/{ID}")),
        ("GET", format!("/connectors/{ID}/status")),
        ("GET", format!("/connectors/{ID}/history")),
        ("GET", format!("/connectors/{ID}/failed")),
        ("POST", format!("/connectors/{ID}/trigger")),
        ("POST", format!("/connectors/{ID}/reset")),
        ("POST", format!("/connectors/{ID}/pause")),
        ("POST", format!("/connectors/{ID}/resume")),
        ("POST", format!("/connectors/{ID}/retry-failed")),
        ("GET", "/openapi.json".into()),
        ("GET", "/connectors/nope".into()),
        ("GET", "/no/such/route".into()),
    ];
    for (method, path) in &routes {
        for key in [None, Some("wrong-key")] {
            let mut request = serve.http.request(method.parse().expect("method"), serve.url(path));
            if let Some(key) = key {
                request = request.header("X-API-Key", key);
            }
            let answer = request.send().await.expect("request");
            assert_eq!(answer.status().as_u16(), 401, "{method} {path} with {key:?}");
            let body: Value = answer.json().await.expect("JSON error");
            assert_eq!(body["error"]["code"], json!("unauthorized"), "{body}");
        }
    }
    let health = serve.http.get(serve.url("/health")).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let health: Value = health.json().await.expect("health JSON");
    assert_eq!(health.as_object().map(|o| o.len()), Some(2), "up/down and version only without the key: {health}");
    assert_eq!(health["status"], json!("healthy"));
    let (status, health) = serve.get("/health").await;
    assert_eq!(status, 200);
    for field in ["status", "version", "uptime_seconds", "active_jobs", "last_error"] {
        assert!(health.get(field).is_some(), "{field} in {health}");
    }

    let (status, body) = serve.get("/connectors/nope/status").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], json!("not_found"));
    let (status, body) = serve.get(&format!("/connectors/{ID}")).await;
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(!text.contains(MEMORY_KEY) && !text.contains(API_KEY), "{text}");
    let (status, body) = serve.post(&format!("/connectors/{ID}/pause")).await;
    assert_eq!((status, body["paused"].clone()), (200, json!(true)));
    let (_, body) = serve.get(&format!("/connectors/{ID}/status")).await;
    assert_eq!(body["paused"], json!(true), "{body}");
    let (status, body) = serve.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(body["paths"]["/connectors/{id}/trigger"]["post"].is_object(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limiting_answers_429_with_retry_after() {
    let (mem, rag) = sims(5, Duration::ZERO).await;
    let extra = "  rate_limit:\n    enabled: true\n    requests_per_minute: 3\n";
    let ws = workspace(&config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 5, extra));
    let serve = Serve::start(&ws, &["--api-only"]).await;
    for _ in 0..3 {
        assert_eq!(serve.get("/connectors").await.0, 200);
    }
    let answer = serve.http.get(serve.url("/connectors")).header("X-API-Key", API_KEY).send().await.expect("GET");
    assert_eq!(answer.status().as_u16(), 429);
    let retry_after: u64 = answer.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], json!("rate_limited"));
    // Probes are never limited.
    assert_eq!(serve.http.get(serve.url("/health")).send().await.expect("health").status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_fire_after_n_failures_and_recover_once() {
    let (mem, rag) = sims(5, Duration::ZERO).await;
    let (hook, received) = webhook().await;
    mem.inject(Fault::status(400).with_times(3));
    let monitoring = format!(
        "\nmonitoring:\n  alerts:\n    enabled: true\n    webhook_url: \"{hook}\"\n    alert_on:\n      - consecutive_failures: 2\n"
    );
    let yaml = config(&mem, &rag, "      type: interval\n      interval_minutes: 0.01\n", 5, "") + &monitoring;
    let ws = workspace(&yaml);
    let serve = Serve::start(&ws, &[]).await;
    serve
        .wait_history("three failures and a success", Duration::from_secs(40), |h| {
            h.iter().filter(|r| r["status"] == json!("failed")).count() >= 3
                && h.iter().any(|r| r["status"] == json!("completed"))
        })
        .await;
    wait_until("the recovery alert", Duration::from_secs(30), || async { received.lock().expect("lock").len() >= 2 })
        .await;
    let alerts = received.lock().expect("lock").clone();
    assert_eq!(alerts.len(), 2, "one alert per incident, then one recovery: {alerts:?}");
    assert_eq!(alerts[0]["state"], json!("firing"));
    assert_eq!(alerts[0]["alert"], json!("consecutive_failures"));
    assert_eq!(alerts[0]["connector_id"], json!(ID));
    assert_eq!(alerts[0]["consecutive_failures"], json!(2));
    assert!(alerts[0]["text"].as_str().is_some_and(|t| t.contains(ID)));
    assert_eq!(alerts[1]["state"], json!("resolved"));
    drop(serve);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_run_checkpoints_and_exits_cleanly() {
    let (mem, rag) = sims(30, Duration::from_millis(200)).await;
    let ws = workspace(&config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 2, ""));
    let mut serve = Serve::start(&ws, &["--api-only"]).await;
    let (status, body) = serve.post(&format!("/connectors/{ID}/trigger")).await;
    assert_eq!(status, 202, "{body}");
    let started = Instant::now();
    while rag.documents().len() < 4 {
        assert!(started.elapsed() < Duration::from_secs(20), "the run did not start delivering");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.signal("TERM");
    let stopping = Instant::now();
    let code = serve.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "{}", std::fs::read_to_string(ws.path().join("serve.log")).unwrap_or_default());
    assert!(stopping.elapsed() < Duration::from_secs(10), "took {:?}", stopping.elapsed());
    let delivered = rag.documents().len();
    let total = with_transcript(&mem);
    assert!(delivered < total, "the run was stopped early ({delivered} of {total})");

    // The ledger matches the sink exactly, and the lease is gone.
    let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await.json();
    assert_eq!(status["processed"], json!(delivered), "{status}");
    assert_eq!(status["lease"], Value::Null, "{status}");
    let history = ws.run_async(&["history", "--connector-id", ID, "--json"]).await.json();
    assert_eq!(history[0]["status"], json!("partial"), "{history}");
    // The next run finishes the job without sending anything twice.
    let rerun = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(rerun.json()["counts"]["new"], json!(total - delivered));
    assert_eq!(rag.documents().len(), total);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_backup_and_restore_work_for_both_backends_while_serving() {
    for (backend, path) in [("json", "state.json"), ("sqlite", "state.db")] {
        let (mem, rag) = sims(12, Duration::from_millis(100)).await;
        let yaml = config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 1, "")
            .replace("backend: json", &format!("backend: {backend}"))
            .replace("path: \"state.json\"", &format!("path: \"{path}\""));
        let ws = workspace(&yaml);
        let first = ws.run_async(&["sync", "--connector-id", ID]).await;
        assert_eq!(first.code, 0, "{backend}: {}", first.stderr);
        let total = with_transcript(&mem);

        let mut serve = Serve::start(&ws, &["--api-only"]).await;
        // A forced run re-sends everything slowly: back up and try to restore meanwhile.
        let (status, body) = serve.post(&format!("/connectors/{ID}/trigger?force=true")).await;
        assert_eq!(status, 202, "{body}");
        let backup = ws.path().join("backup.bin");
        let run = ws.run_async(&["state", "backup", "--to", backup.to_str().expect("utf-8")]).await;
        assert_eq!(run.code, 0, "{backend}: {}", run.stderr);
        let refused = ws.run_async(&["state", "restore", "--from", backup.to_str().expect("utf-8")]).await;
        assert_eq!(refused.code, 1, "{backend}: restore under a running run must be refused");
        assert!(refused.stderr.contains("is running"), "{backend}: {}", refused.stderr);
        serve.wait_history("the forced run", Duration::from_secs(40), |h| h.len() >= 2 && h.iter().all(finished)).await;
        serve.signal("TERM");
        assert_eq!(serve.wait_exit(Duration::from_secs(30)).await, 0, "{backend}: serve stops cleanly");

        // Forget everything, then restore: the ledger is back.
        let reset = ws.run_async(&["reset", "--connector-id", ID, "--yes"]).await;
        assert_eq!(reset.code, 0, "{backend}: {}", reset.stderr);
        let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await.json();
        assert_eq!(status["processed"], json!(0), "{backend}");
        let run = ws.run_async(&["state", "restore", "--from", backup.to_str().expect("utf-8")]).await;
        assert_eq!(run.code, 0, "{backend}: {}", run.stderr);
        let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await.json();
        assert_eq!(status["processed"], json!(total), "{backend}: {status}");
        // And the restored ledger knows every memory: nothing is new.
        let again = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
        assert_eq!(again.json()["counts"]["new"], json!(0), "{backend}");

        let garbage = ws.path().join("garbage.bin");
        std::fs::write(&garbage, "not a state").expect("write");
        let bad = ws.run_async(&["state", "restore", "--from", garbage.to_str().expect("utf-8")]).await;
        assert_eq!(bad.code, 1, "{backend}: a broken backup is refused");
        let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await.json();
        assert_eq!(status["processed"], json!(total), "{backend}: a refused restore changes nothing");
    }
}

/// Schemathesis (from `tests/scripts/schemathesis.sh`) fuzzes every operation
/// of `/openapi.json`: no answer may be a 5xx.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_fuzz_finds_no_server_errors() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let st = root.join(".local/venv/bin/schemathesis");
    if !st.exists() {
        connector_core::test_support::skip(
            "schemathesis not installed (tests/scripts/schemathesis.sh installs it): the OpenAPI fuzz run not run",
        );
        return;
    }
    let (mem, rag) = sims(5, Duration::ZERO).await;
    let ws = workspace(&config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 5, ""));
    let serve = Serve::start(&ws, &["--api-only"]).await;
    let out = tokio::process::Command::new(st)
        .arg("run")
        .arg(serve.url("/openapi.json"))
        .args(["--checks", "not_a_server_error", "--max-examples", "25", "--seed", "1", "--workers", "1", "--no-color"])
        .args(["--header", &format!("X-API-Key: {API_KEY}")])
        .current_dir(ws.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "schemathesis found problems:\n{report}");
    // The look-ups answer 404 for the names the fuzzer makes up, which
    // schemathesis reports as "missing test data": the only warning allowed.
    let warnings: Vec<&str> = report.lines().filter(|l| l.contains("⚠️")).collect();
    assert!(
        report.contains("Tested: 15")
            && (report.contains("No issues found") || warnings.iter().all(|w| w.contains("Missing test data"))),
        "every operation was tested:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_json_state_is_unreadable_without_the_key() {
    let (mem, rag) = sims(8, Duration::ZERO).await;
    let security = "\nadvanced:\n  security:\n    encrypt_secrets: true\n    encryption_key: \"${ENCRYPTION_KEY}\"\n";
    let yaml = config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 5, "") + security;
    let mut ws = workspace(&yaml);
    ws.set_env("ENCRYPTION_KEY", "the-right-32-character-key-000000");
    let run = ws.run_async(&["sync", "--connector-id", ID]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let file = ws.path().join("state.json");
    let sealed = std::fs::read(&file).expect("state file");
    assert!(sealed.starts_with(b"MCSTATE-ENC1\n"));
    let text = String::from_utf8_lossy(&sealed);
    assert!(
        !text.contains("connectors") && !text.contains(CTX) && !text.contains("memory_"),
        "plain text in the state"
    );
    let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await;
    assert_eq!(status.json()["processed"], json!(with_transcript(&mem)));

    ws.set_env("ENCRYPTION_KEY", "a-wrong-32-character-key-11111111");
    let wrong = ws.run_async(&["sync", "--connector-id", ID]).await;
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("wrong ENCRYPTION_KEY"), "{}", wrong.stderr);

    let plain = config(&mem, &rag, "      type: interval\n      interval_hours: 1\n", 5, "");
    ws.write_config(&plain);
    let missing = ws.run_async(&["status", "--connector-id", ID]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("encrypted but no key"), "{}", missing.stderr);
    assert_eq!(std::fs::read(&file).expect("state file"), sealed, "failed opens never touch the file");

    ws.write_config(&yaml.replace("backend: json", "backend: sqlite"));
    ws.set_env("ENCRYPTION_KEY", "the-right-32-character-key-000000");
    let sqlite = ws.run_async(&["status", "--connector-id", ID]).await;
    assert_eq!(sqlite.code, 1);
    assert!(sqlite.stderr.contains("sqlite cannot be encrypted"), "{}", sqlite.stderr);
}
