//! A running `memory-connector serve` for the end-to-end tests: started
//! against a [`Workspace`]'s config with `--port-file`, its API and metrics
//! ports read back, killed on drop.

use crate::harness::Workspace;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The connector of [`crate::harness::ConfigSpec`]'s config.
const CONNECTOR: &str = "personal-memories";

/// A running `serve` child; killed on drop.
pub struct Serve {
    pub child: tokio::process::Child,
    pub api: Option<u16>,
    pub metrics: Option<u16>,
    pub http: reqwest::Client,
    /// The workspace's `CONNECTOR_API_KEY`, sent with [`Serve::get`] and [`Serve::post`].
    key: String,
}

impl Serve {
    /// Starts `serve` with `extra_args` and waits for its port file; a
    /// child that exits first fails the test with its log.
    pub async fn start(ws: &Workspace, extra_args: &[&str]) -> Serve {
        let port_file = ws.path().join("ports.json");
        let _ = std::fs::remove_file(&port_file);
        let port_file_arg = port_file.to_string_lossy().into_owned();
        let mut args = vec!["serve", "--port-file", port_file_arg.as_str()];
        args.extend_from_slice(extra_args);
        let log = std::fs::File::create(ws.path().join("serve.log")).expect("log file");
        let mut command = tokio::process::Command::from(ws.command(&args));
        command.stdout(std::process::Stdio::null()).stderr(log).kill_on_drop(true);
        let mut child = command.spawn().expect("spawn serve");
        let ports = crate::harness::wait_port_file(&mut child, &port_file, &ws.path().join("serve.log")).await;
        let port = |name: &str| ports.get(name).and_then(Value::as_u64).map(|p| p as u16);
        let key = ws.env.iter().find(|(k, _)| k == "CONNECTOR_API_KEY").map(|(_, v)| v.clone()).unwrap_or_default();
        Serve { child, api: port("api"), metrics: port("metrics"), http: reqwest::Client::new(), key }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api.expect("api port"))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).header("X-API-Key", &self.key).send().await.expect("GET");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let r = self.http.post(self.url(path)).bearer_auth(&self.key).send().await.expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn metrics_text(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics.expect("metrics port"));
        self.http.get(url).send().await.expect("GET metrics").text().await.expect("metrics body")
    }

    /// The connector's run history, newest first.
    pub async fn history(&self) -> Vec<Value> {
        let (status, body) = self.get(&format!("/connectors/{CONNECTOR}/history?limit=100")).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Waits until `done(history)` holds.
    pub async fn wait_history(&self, what: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let history = self.history().await;
            if done(&history) {
                return history;
            }
            assert!(started.elapsed() < timeout, "timed out waiting for {what}; history: {history:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("pid").to_string();
        let status = std::process::Command::new("kill").args(["-s", name, &pid]).status().expect("kill");
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let status =
            tokio::time::timeout(timeout, self.child.wait()).await.expect("serve did not exit in time").expect("wait");
        status.code().unwrap_or(-1)
    }
}

/// A finished run of a history.
pub fn finished(run: &Value) -> bool {
    run["status"] != "running"
}
