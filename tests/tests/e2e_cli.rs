//! End to end: the CLI's commands, outputs, exit codes, and that no secret
//! reaches any output or file.

use serde_json::json;
use sims::harness::{ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};

const MEMORY_KEY: &str = "mem-secret-value-4d1f";
const LIGHTRAG_KEY: &str = "rag-secret-value-8c2e";
const CTX: &str = "CTX123";

async fn setup(lightrag_key: Option<&str>) -> (MemorySim, LightragSim, Workspace) {
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed: 99,
        contexts: vec![(CTX.into(), 25)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    let rag = LightragSim::start(LightragSimOptions { api_key: lightrag_key.map(str::to_owned), ..Default::default() })
        .await
        .expect("lightrag sim");
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.lightrag_key_var = true;
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws.set_env("LIGHTRAG_API_KEY", lightrag_key.unwrap_or(""));
    (mem, rag, ws)
}

fn assert_no_secret(label: &str, text: &str) {
    for secret in [MEMORY_KEY, LIGHTRAG_KEY] {
        assert!(!text.contains(secret), "{label} contains a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_logs_state_or_json_output() {
    let (_mem, rag, ws) = setup(Some(LIGHTRAG_KEY)).await;
    let id = ["--connector-id", "personal-memories"];
    let mut outputs = Vec::new();
    outputs.push(ws.run_async(&["sync", id[0], id[1], "--json"]).await);
    assert_eq!(outputs[0].code, 0, "{}\n{}", outputs[0].stdout, outputs[0].stderr);
    assert!(!rag.documents().is_empty());
    for args in [
        vec!["status", id[0], id[1], "--json"],
        vec!["status", id[0], id[1]],
        vec!["list", "--json"],
        vec!["list"],
        vec!["history", id[0], id[1], "--json"],
        vec!["failed", id[0], id[1], "--json"],
        vec!["validate", "--show", "--json"],
        vec!["validate", "--show"],
        vec!["sync", id[0], id[1], "--dry-run", "--json"],
    ] {
        let run = ws.run_async(&args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        outputs.push(run);
    }
    for run in &outputs {
        assert_no_secret("stdout", &run.stdout);
        assert_no_secret("stderr (DEBUG logs)", &run.stderr);
    }
    let state = std::fs::read_to_string(ws.path().join("state.json")).expect("state");
    assert_no_secret("state file", &state);
    let show = ws.run(&["validate", "--show"]);
    assert!(show.stdout.contains("***"), "secrets are shown redacted: {}", show.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_lightrag_key_stops_the_run_with_a_clear_message() {
    let (_mem, rag, mut ws) = setup(Some(LIGHTRAG_KEY)).await;
    ws.set_env("LIGHTRAG_API_KEY", "rag-wrong-key-0000");
    let run = ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let error = run.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("403") && error.contains("lightrag.api.api_key"), "{error}");
    assert!(!run.stdout.contains("rag-wrong-key-0000") && !run.stderr.contains("rag-wrong-key-0000"));
    assert!(rag.documents().is_empty());
    // Nothing was marked failed: the memories were never the problem.
    let failed = ws.run(&["failed", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(failed, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_status_history_and_reset() {
    let (_mem, rag, ws) = setup(None).await;
    let list = ws.run(&["list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.starts_with("ID                   Status    Enabled  Last Sync\n"), "{}", list.stdout);
    assert!(list.stdout.contains("personal-memories    idle      yes      -"), "{}", list.stdout);

    let run = ws.run_async(&["sync", "--connector-id", "personal-memories"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("completed"), "{}", run.stdout);

    let status = ws.run(&["status", "--connector-id", "personal-memories"]);
    for line in [
        "Connector: personal-memories\n",
        "Status: completed\n",
        "Last Sync: ",
        "Processed: ",
        "Failed: 0 memories\n",
        "Next Run: ",
    ] {
        assert!(status.stdout.contains(line), "missing {line:?} in\n{}", status.stdout);
    }
    let history = ws.run(&["history", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(history.as_array().map(Vec::len), Some(1));
    assert_eq!(history[0]["status"], json!("completed"));

    let refused = ws.run(&["reset", "--connector-id", "personal-memories"]);
    assert_eq!(refused.code, 2, "reset without --yes outside a terminal must refuse");
    let reset = ws.run(&["reset", "--connector-id", "personal-memories", "--yes", "--json"]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let status = ws.run(&["status", "--connector-id", "personal-memories", "--json"]).json();
    assert_eq!(status["processed"], json!(0));
    // After a reset everything is offered again; LightRAG's 409 says it is there.
    let before = rag.documents().len();
    let again = ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["counts"]["failed"], json!(0));
    assert_eq!(rag.documents().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_problems_exit_2_and_name_the_field() {
    let mut ws = Workspace::new();
    ws.write_config(
        "lightrag:\n  mode: htp\nmemory_api:\n  url: \"${UNSET_MEMORY_URL_VAR}\"\nconnectors:\n  - id: a\n    context_id: C\n    schedule:\n      type: cron\n      cron: \"61 * * * *\"\n    ingestin:\n      batch_size: 2\n",
    );
    ws.set_env("UNUSED", "1");
    let run = ws.run(&["validate"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    for needle in ["UNSET_MEMORY_URL_VAR", "memory_api.url", "connectors[0].ingestin", "lightrag.mode"] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }
    let json = ws.run(&["validate", "--json"]);
    assert_eq!(json.code, 2);
    assert_eq!(json.json()["error"]["code"], json!(2));

    let (_mem, _rag, ws) = setup(None).await;
    let unknown = ws.run(&["sync", "--connector-id", "nope"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("unknown connector `nope`") && unknown.stderr.contains("personal-memories"));
}

/// A config with the management API left at its defaults (enabled, auth
/// on) and no `api.api_key`: the one-shot commands work; `serve` and
/// `trigger`, which need the key, refuse with exit 2 naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_without_an_api_key_syncs_but_serve_and_trigger_refuse() {
    let (mem, rag, mut ws) = setup(None).await;
    ws.write_config(&format!(
        "memory_api:\n  url: \"{}\"\n  api_key: \"${{MEMORY_API_KEY}}\"\nlightrag:\n  mode: api\n  api:\n    url: \"{}\"\nstate:\n  backend: json\n  path: \"state.json\"\nconnectors:\n  - id: a\n    context_id: {CTX}\n",
        mem.url(),
        rag.url()
    ));
    ws.set_env("UNUSED", "1");
    let sync = ws.run_async(&["sync", "--connector-id", "a", "--json"]).await;
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    assert!(sync.json()["counts"]["new"].as_u64().is_some_and(|n| n > 0), "{}", sync.stdout);
    assert_eq!(ws.run(&["status", "--connector-id", "a"]).code, 0);

    let validate = ws.run(&["validate"]);
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    assert!(validate.stdout.contains("note:") && validate.stdout.contains("api.api_key"), "{}", validate.stdout);
    assert_eq!(ws.run(&["validate", "--json"]).json()["serve_problems"][0]["field"], json!("api.api_key"));

    for command in [vec!["serve", "--api-only"], vec!["trigger", "--connector-id", "a"]] {
        let refused = ws.run(&command);
        assert_eq!(refused.code, 2, "{command:?}: {}\n{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains("api.api_key"), "{command:?}: {}", refused.stderr);
    }
}
