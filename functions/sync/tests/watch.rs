//! The real `sync` and `api` functions as a developer runs them locally:
//! `cargo lambda watch` (the Lambda runtime emulator runs each function's
//! binary under the runtime API), invoked with `cargo lambda invoke` and the
//! sample events (`config/events/sync-scheduled.json`, the constant input of
//! a schedule rule; `api-get-health.json` and `api-list-connectors.json`,
//! API Gateway HTTP API requests), against the Memory API and LightRAG
//! simulators, moto (Secrets Manager) and DynamoDB Local; the state is read
//! back from the table, the API answers from it.
//!
//! Needs `CARGO_LAMBDA_BIN` (`tests/scripts/aws-emulators.sh run` installs
//! cargo-lambda from PyPI and sets it) and the emulators; without them the
//! test says loudly that it is SKIPPED.
//!
//! Each binary is built first with the same `cargo build` that `cargo lambda
//! watch` runs (same target dir, same package and features), so the watch
//! finds it fresh and the build time is measured on its own. One watch per
//! function (`--package` picks the target it runs).

mod common;

use common::{AwsState, CONNECTOR, MEMORY_KEY, assert_no_duplicates, delivered, emulators};
use connector_core::aws::record;
use connector_core::ids::ConnectorId;
use connector_core::state::{RunStatus, StateStore};
use serde_json::{Value, json};
use sims::harness::ConfigSpec;
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The management key in the sample API requests (config/events/api-*.json).
const API_KEY: &str = "sample-connector-api-key";

/// The workspace root: where `cargo lambda watch` finds the `sync` package.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// `cargo` with the folder of `cargo-lambda` first on PATH, so that
/// `cargo lambda ...` is the installed cargo-lambda.
fn cargo(cargo_lambda: &Path) -> Command {
    let bin_dir = cargo_lambda.parent().expect("cargo-lambda folder");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(std::env::split_paths(&path))).expect("PATH");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.env("PATH", path).current_dir(workspace_root()).stdin(Stdio::null());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `cargo lambda watch` in its own process group, with its output in a
/// file. Dropping it (also when the test panics) ends the whole group: the
/// watcher, the cargo it started and the function's process.
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn start(cargo_lambda: &Path, function: &str, port: u16, env_file: &Path, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("watch log");
        let err = out.try_clone().expect("watch log");
        let child = cargo(cargo_lambda)
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .args(["--ignore-changes", "--package", function, "--bin", function, "--env-file"])
            .arg(env_file)
            .env("NO_COLOR", "1")
            .env("CARGO_TERM_COLOR", "never")
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch");
        Self { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn group_alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Until the runtime emulator accepts connections.
    fn wait_ready(&mut self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cargo lambda watch exited ({status}):\n{}", self.output());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cargo lambda watch did not listen on {port} within {within:?}:\n{}", self.output());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.group_alive() && Instant::now() < deadline {
            let _ = self.child.try_wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

/// `cargo lambda invoke <function>` with `event`; the function's answer and
/// how long the invoke took. The emulator never answers an invoke whose
/// function failed at init, so the invoke is bounded and the watch's
/// output is shown.
async fn invoke(
    cargo_lambda: &Path,
    (function, port): (&str, u16),
    event: &Path,
    watch: &Watch,
    within: Duration,
) -> (Value, Duration) {
    let started = Instant::now();
    let mut command = tokio::process::Command::from(cargo(cargo_lambda));
    command
        .args(["lambda", "invoke", function, "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .args(["--output-format", "json", "--data-file"])
        .arg(event)
        .env("CARGO_LAMBDA_COLOR", "never")
        .kill_on_drop(true);
    let output = match tokio::time::timeout(within, command.output()).await {
        Ok(output) => output.expect("run cargo lambda invoke"),
        Err(_) => panic!("cargo lambda invoke: no answer within {within:?}; the watch said:\n{}", watch.output()),
    };
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo lambda invoke failed ({}):\n{stdout}\n{}\nthe watch said:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        watch.output()
    );
    let answer = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}):\n{stdout}\nthe watch said:\n{}", watch.output()));
    (answer, took)
}

/// The build `cargo lambda watch --package <function>` would start on the first invoke.
fn build(cargo_lambda: &Path, function: &str) {
    let started = Instant::now();
    let build = cargo(cargo_lambda)
        .args(["build", "--package", function, "--bin", function])
        .output()
        .unwrap_or_else(|e| panic!("cargo build -p {function}: {e}"));
    assert!(build.status.success(), "cargo build -p {function} failed:\n{}", String::from_utf8_lossy(&build.stderr));
    eprintln!("cargo lambda watch test: cargo build -p {function} --bin {function} took {:.1?}", started.elapsed());
}

/// An API Gateway answer (`statusCode`, JSON `body`) from `cargo lambda invoke api`.
fn api_answer(answer: &Value) -> (u64, Value) {
    let body = answer["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    (answer["statusCode"].as_u64().unwrap_or_default(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_lambda_watch_runs_the_scheduled_sync_into_dynamodb() {
    const TEST: &str = "cargo lambda watch: cargo_lambda_watch_runs_the_scheduled_sync_into_dynamodb";
    let Some(cargo_lambda) = connector_core::aws::emulator_endpoint("CARGO_LAMBDA_BIN", TEST) else {
        return;
    };
    if !emulators(TEST) {
        return;
    }
    let cargo_lambda = PathBuf::from(cargo_lambda);
    let event = workspace_root().join("config/events/sync-scheduled.json");
    let sample: Value = serde_json::from_str(&std::fs::read_to_string(&event).expect("sample event")).expect("JSON");
    assert_eq!(sample["connector_id"], CONNECTOR, "the sample event names the connector of the config");

    let memory = MemorySim::start(MemorySimOptions { api_key: Some(MEMORY_KEY.into()), ..MemorySimOptions::default() })
        .await
        .expect("memory sim");
    let lightrag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ConfigSpec::new(&memory.url(), &lightrag.url());
    spec.backend = "dynamodb";
    spec.batch_inserts = false;
    let config_path = dir.path().join("config.yaml");
    let api = "api:\n  enabled: true\n  enable_auth: true\n  api_key: \"${CONNECTOR_API_KEY}\"\n";
    std::fs::write(&config_path, spec.render().replace("api:\n  enabled: false\n", api)).expect("write config");
    // One JSON secret with both keys; the sample API requests carry this key.
    let aws = AwsState::create(&json!({"MEMORY_API_KEY": MEMORY_KEY, "CONNECTOR_API_KEY": API_KEY})).await;

    // The function's environment, as the SAM template sets it (the Memory
    // API key only in Secrets Manager); AWS credentials and region come
    // from the environment of the watch (the emulator script's).
    let mut vars = aws.vars();
    vars.insert("CONFIG_PATH".into(), config_path.display().to_string());
    for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_REGION", record::RECORD_ENV] {
        if let Ok(value) = std::env::var(name) {
            vars.insert(name.into(), value);
        }
    }
    let env_file = dir.path().join("function.env");
    let lines: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    std::fs::write(&env_file, lines.join("\n") + "\n").expect("env file");

    build(&cargo_lambda, "sync");
    build(&cargo_lambda, "api");

    let port = free_port();
    let started = Instant::now();
    let mut watch = Watch::start(&cargo_lambda, "sync", port, &env_file, dir.path().join("watch.log"));
    watch.wait_ready(port, Duration::from_secs(60));
    eprintln!("cargo lambda watch test: the emulator listened after {:.1?}", started.elapsed());
    let api_port = free_port();
    let mut api_watch = Watch::start(&cargo_lambda, "api", api_port, &env_file, dir.path().join("api-watch.log"));
    api_watch.wait_ready(api_port, Duration::from_secs(60));

    let (first, took) = invoke(&cargo_lambda, ("sync", port), &event, &watch, Duration::from_secs(600)).await;
    eprintln!("cargo lambda watch test: first invoke (start of the function, one sync) took {took:.1?}");
    assert_eq!(first["status"], "completed", "{first:#}\nthe watch said:\n{}", watch.output());
    assert_eq!(first["trigger"], "schedule", "{first:#}");
    assert!(first["counts"]["new"].as_u64().unwrap_or(0) > 0, "{first:#}");
    assert!(memory.list_requests() >= 1, "the function called the Memory API with the key from Secrets Manager");

    // The state, read from DynamoDB Local.
    let store = aws.store();
    let c = ConnectorId::new(CONNECTOR);
    let sent = delivered(&store).await;
    assert_eq!(Some(sent), first["counts"]["new"].as_u64(), "every new memory is delivered in the ledger: {first:#}");
    assert_eq!(sent, lightrag.documents().len() as u64, "the ledger in DynamoDB matches LightRAG");
    let runs = store.runs(&c, 10).await.expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].run_id.to_string(), first["run_id"].as_str().unwrap_or_default());
    assert_eq!((runs[0].trigger.as_str(), runs[0].status), ("schedule", RunStatus::Completed));
    assert_eq!(store.lease(&c).await.expect("lease"), None, "the lease is released");
    assert_eq!(store.connector_state(&c).await.expect("state").map(|s| s.status), Some(RunStatus::Completed));

    // The same schedule again, on the warm function: nothing new, nothing re-sent.
    let (second, took) = invoke(&cargo_lambda, ("sync", port), &event, &watch, Duration::from_secs(120)).await;
    eprintln!("cargo lambda watch test: second invoke (warm) took {took:.1?}");
    assert_eq!(second["status"], "completed", "{second:#}");
    assert_eq!(second["counts"]["new"], 0, "{second:#}");
    assert_eq!(second["counts"]["unchanged"].as_u64(), Some(sent), "{second:#}");
    assert_no_duplicates(&lightrag);
    assert_eq!(delivered(&store).await, sent);
    assert_eq!(store.runs(&c, 10).await.expect("runs").len(), 2);

    // The api function, as API Gateway calls it, answers from the same table.
    let events = workspace_root().join("config/events");
    let within = Duration::from_secs(120);
    let (health, _) =
        invoke(&cargo_lambda, ("api", api_port), &events.join("api-get-health.json"), &api_watch, within).await;
    let (status, body) = api_answer(&health);
    assert_eq!((status, body["status"].as_str()), (200, Some("healthy")), "{health:#}\n{}", api_watch.output());
    let list = events.join("api-list-connectors.json");
    let (listed, _) = invoke(&cargo_lambda, ("api", api_port), &list, &api_watch, within).await;
    let (status, body) = api_answer(&listed);
    assert_eq!(status, 200, "{listed:#}");
    assert_eq!(body[0]["connector_id"], CONNECTOR, "{body:#}");
    assert!(body[0]["last_sync"].is_string(), "the API reads the state the sync wrote: {body:#}");

    // One metric line per sync invocation, on the function's stdout.
    let output = watch.output();
    let metric_lines = output.lines().filter(|l| l.contains("\"_aws\"") && l.contains("\"Runs\":1")).count();
    assert_eq!(metric_lines, 2, "one EMF line per invocation:\n{output}");
    assert!(output.contains("sync function ready"), "the function started under the emulator:\n{output}");
    let api_output = api_watch.output();
    assert!(api_output.contains("api function ready"), "{api_output}");
    assert!(!api_output.contains("Compiling api"), "the watch rebuilt the api function:\n{api_output}");
    assert!(!api_output.contains(API_KEY), "the key never reaches the logs:\n{api_output}");
    drop(api_watch);
    assert!(
        !output.contains("Compiling sync"),
        "the watch rebuilt the function: its build differs from `cargo build -p sync --bin sync`:\n{output}"
    );
    assert!(!output.contains(MEMORY_KEY), "the secret's value never reaches the logs:\n{output}");
    let group = watch.child.id();
    drop(watch);
    let left = Command::new("kill").args(["-0", "--", &format!("-{group}")]).stderr(Stdio::null()).status();
    assert!(!left.is_ok_and(|s| s.success()), "a process of the watch's group outlived it");
}
