//! End-to-end test harness: the real `memory-connector` binary, run as a
//! child process against simulators on loopback ports chosen at run time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Path of the `memory-connector` binary of this workspace, built on first
/// use when `cargo test` did not build it (it belongs to another package).
pub fn connector_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("MEMORY_CONNECTOR_BIN") {
            return PathBuf::from(path);
        }
        // `make test` builds the binary with `aws` (schedules apply): keep it so.
        let features = std::env::var("MEMORY_CONNECTOR_FEATURES").ok().filter(|f| !f.is_empty());
        workspace_bin("memory-connector", "memory-connector", features.as_deref())
    })
    .clone()
}

/// Path of the debug binary `bin` of the workspace package `package`, after
/// a `cargo build` of it (quick when it is up to date), next to the
/// running test executable.
pub fn workspace_bin(package: &str, bin: &str, features: Option<&str>) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<bin>
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    let path = dir.join(bin);
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if let Some(features) = features {
        build.args(["--features", features]);
    }
    let status = build.status().unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// How often [`wait_until`] looks again.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits until `condition` holds, looking every 10 ms; panics naming `what`
/// when it still does not hold after `timeout` (be generous: a slow, shared
/// machine must not fail a correct program). The tests wait on what they
/// need to see, never for a fixed time.
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The result of one CLI invocation.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

impl From<Output> for CliRun {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A temp folder with a config file and the environment the binary gets.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), env: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.yaml")
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).expect("write config");
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// A `Command` for the binary with `--config` and this workspace's env,
    /// run from the workspace folder.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(connector_bin());
        cmd.args(args)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.path())
            .env_remove("CONFIG_PATH")
            .env_remove("LOG_LEVEL")
            .env_remove("LOG_FORMAT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary to completion (blocking; call from `spawn_blocking`
    /// or a multi-thread runtime).
    pub fn run(&self, args: &[&str]) -> CliRun {
        self.command(args).output().expect("run memory-connector").into()
    }

    pub async fn run_async(&self, args: &[&str]) -> CliRun {
        let mut cmd = tokio::process::Command::from(self.command(args));
        cmd.output().await.expect("run memory-connector").into()
    }

    /// Starts the binary with its output discarded (for tests that kill it).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::from(self.command(args))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn memory-connector")
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// The ports a `serve` child wrote to `port_file` (`--port-file`), waiting
/// for the file; panics with the child's log (`log`) if it exits first.
pub async fn wait_port_file(child: &mut tokio::process::Child, port_file: &Path, log: &Path) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(port_file) {
            return serde_json::from_str(&text).expect("port file is JSON");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited early ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "serve did not write its port file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Options of the config the tests write.
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    pub memory_url: String,
    pub lightrag_url: Option<String>,
    pub direct_dir: Option<String>,
    pub backend: &'static str,
    pub state_path: String,
    pub context_id: String,
    pub query_limit: u32,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub strategy: &'static str,
    pub memory_timeout: u64,
    pub lightrag_key_var: bool,
    /// `lightrag.api.confirm_wait_seconds`.
    pub confirm_wait_seconds: u64,
    /// `lightrag.api.batch_inserts`.
    pub batch_inserts: bool,
    /// Extra lines under the connector's `transformation:` (indented by the caller's text as is).
    pub transformation_extra: Vec<String>,
    /// Extra top-level YAML appended to the config (e.g. an `enrichment:` section).
    pub extra_yaml: String,
    /// `ingestion.skip_empty_transcripts`.
    pub skip_empty_transcripts: bool,
}

impl ConfigSpec {
    pub fn new(memory_url: &str, lightrag_url: &str) -> Self {
        Self {
            memory_url: memory_url.into(),
            lightrag_url: Some(lightrag_url.into()),
            direct_dir: None,
            backend: "json",
            state_path: "state.json".into(),
            context_id: "CTX123".into(),
            query_limit: 1000,
            batch_size: 5,
            max_attempts: 3,
            strategy: "standard",
            memory_timeout: 5,
            lightrag_key_var: false,
            confirm_wait_seconds: 5,
            batch_inserts: true,
            transformation_extra: Vec::new(),
            extra_yaml: String::new(),
            skip_empty_transcripts: true,
        }
    }

    pub fn render(&self) -> String {
        let lightrag = match (&self.lightrag_url, &self.direct_dir) {
            (_, Some(dir)) => format!("lightrag:\n  mode: direct\n  direct:\n    working_dir: \"{dir}\"\n"),
            (Some(url), None) => {
                let key = if self.lightrag_key_var { "\n    api_key: \"${LIGHTRAG_API_KEY}\"" } else { "" };
                format!(
                    "lightrag:\n  mode: api\n  api:\n    url: \"{url}\"\n    timeout: 5\n    workspace: \"\"\n    confirm_wait_seconds: {}\n    batch_inserts: {}{key}\n",
                    self.confirm_wait_seconds, self.batch_inserts
                )
            }
            (None, None) => String::new(),
        };
        format!(
            r#"{lightrag}
memory_api:
  url: "{memory_url}"
  api_key: "${{MEMORY_API_KEY}}"
  timeout: {timeout}
  max_retries: 3
  retry_backoff: 2.0

connectors:
  - id: "personal-memories"
    context_id: "{ctx}"
    schedule:
      type: interval
      interval_hours: 1
    ingestion:
      query_range: all
      query_limit: {limit}
      batch_size: {batch}
      skip_empty_transcripts: {skip_empty}
    transformation:
      strategy: {strategy}{transformation_extra}
    retry:
      max_attempts: {attempts}
      backoff_multiplier: 2.0
      max_backoff_seconds: 0

state:
  backend: {backend}
  path: "{state}"

api:
  enabled: false

logging:
  level: DEBUG
  format: json
{extra_yaml}"#,
            memory_url = self.memory_url,
            timeout = self.memory_timeout,
            ctx = self.context_id,
            limit = self.query_limit,
            batch = self.batch_size,
            strategy = self.strategy,
            attempts = self.max_attempts,
            backend = self.backend,
            state = self.state_path,
            skip_empty = self.skip_empty_transcripts,
            transformation_extra =
                self.transformation_extra.iter().map(|line| format!("\n      {line}")).collect::<String>(),
            extra_yaml = self.extra_yaml,
        )
    }
}

/// A webhook receiver on a port-0 loopback port (alerts): its URL and the
/// JSON bodies it received, in order.
pub async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::sync::{Arc, Mutex};
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_until_returns_once_the_condition_holds() {
        let started = tokio::time::Instant::now();
        wait_until("50 ms to pass", Duration::from_secs(60), || async {
            started.elapsed() >= Duration::from_millis(50)
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for something that never happens")]
    async fn wait_until_fails_naming_what_never_came() {
        wait_until("something that never happens", Duration::from_millis(50), || async { false }).await;
    }
}
