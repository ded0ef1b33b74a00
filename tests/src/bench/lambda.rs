//! Figure 5b: the Lambda `sync` bootstrap's cold start, measured against a
//! stand-in of the Lambda runtime API on loopback (the same routes the
//! real one serves: `GET /2018-06-01/runtime/invocation/next`, `POST
//! .../invocation/{id}/response` and `/error`, `POST .../init/error`), so
//! the bench needs neither Python nor `cargo lambda`.
//!
//! Init is process spawn to the bootstrap's first `GET .../next`: the
//! runtime's own start, the config file, the SDK config and one Secrets
//! Manager `GetSecretValue` (the shipped config takes `MEMORY_API_KEY` and
//! `CONNECTOR_API_KEY` from a JSON secret named by
//! `MEMORY_API_KEY_SECRET_ARN`, as `infra/template.yaml` sets it), which the
//! same stand-in answers. Then one event is sent; when the bootstrap asks
//! for the next one, its peak RSS (`VmHWM`) is read and it is killed.
//!
//! The event names a connector the config does not have: the invocation
//! fails (a visible failure, posted to `.../error`) without touching
//! DynamoDB, so no DynamoDB emulator is needed. Every other AWS endpoint points at a closed loopback port:
//! nothing leaves the machine.

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The config the functions ship (a Lambda layer in `infra/template.yaml`).
const SHIPPED_CONFIG: &str = include_str!("../../../config/lambda/memory-connector/config.yaml");
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:bench-memory-key";
/// Nothing listens there (port 9, discard): an AWS call the function
/// should not make fails at once, on this machine.
const NOWHERE: &str = "http://127.0.0.1:9";
/// A connector the shipped config does not have.
pub const EVENT: &str = r#"{"connector_id": "bench-no-such-connector"}"#;

/// What one cold start cost.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// Spawn to the first `GET .../next`.
    pub init_ms: f64,
    /// The event's `GET .../next` to its answer.
    pub invoke_ms: f64,
    /// `VmHWM` after the invoke.
    pub peak_rss_kb: u64,
    /// Secrets Manager calls during init.
    pub secret_calls: usize,
    /// The function's answer (its `/response` body, or `error: ...`).
    pub answer: String,
}

#[derive(Default)]
struct Marks {
    next: Vec<Instant>,
    answers: Vec<(Instant, String)>,
    secret_calls: usize,
}

struct Runtime {
    event: Vec<u8>,
    secret: String,
    marks: Mutex<Marks>,
    /// Told when the bootstrap asks for a second event, or fails init.
    done: Notify,
}

impl Runtime {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    let served = {
        let mut marks = rt.marks();
        marks.next.push(Instant::now());
        marks.next.len() - 1
    };
    if served > 0 {
        rt.done.notify_one();
        // The bootstrap waits here until it is killed, as in a frozen sandbox.
        std::future::pending::<()>().await;
    }
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 60_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_static("bench-0"));
    if let Ok(value) = HeaderValue::from_str(&deadline_ms.to_string()) {
        headers.insert("lambda-runtime-deadline-ms", value);
    }
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:000000000000:function:memory-connector-sync"),
    );
    headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-00000000-000000000000000000000000"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, rt.event.clone()).into_response()
}

async fn answered(
    State(rt): State<Arc<Runtime>>,
    UrlPath((_, kind)): UrlPath<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let text = String::from_utf8_lossy(&body);
    let answer = if kind == "response" { text.into_owned() } else { format!("{kind}: {text}") };
    rt.marks().answers.push((Instant::now(), answer));
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: Bytes) -> StatusCode {
    rt.marks().answers.push((Instant::now(), format!("init error: {}", String::from_utf8_lossy(&body))));
    rt.done.notify_one();
    StatusCode::ACCEPTED
}

/// Secrets Manager's `GetSecretValue` (awsJson1.1), whatever the signature.
async fn secrets_manager(State(rt): State<Arc<Runtime>>, headers: HeaderMap) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if target != "secretsmanager.GetSecretValue" {
        return (StatusCode::BAD_REQUEST, format!("not served here: {target}")).into_response();
    }
    rt.marks().secret_calls += 1;
    let body = serde_json::json!({
        "ARN": SECRET_ARN,
        "Name": "bench-memory-key",
        "SecretString": rt.secret,
        "VersionId": "00000000-0000-0000-0000-000000000000",
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1.7e9,
    });
    ([("content-type", "application/x-amz-json-1.1")], body.to_string()).into_response()
}

/// One cold start of `bootstrap` and one invoke of [`EVENT`]; `scratch`
/// holds its config and its stderr.
pub async fn cold_start(bootstrap: &Path, scratch: &Path, memory_key: &str) -> anyhow::Result<ColdStart> {
    let runtime = Arc::new(Runtime {
        event: EVENT.as_bytes().to_vec(),
        // One JSON secret may carry several keys (the template's way).
        secret: serde_json::json!({ "MEMORY_API_KEY": memory_key, "CONNECTOR_API_KEY": "bench-api-key" }).to_string(),
        marks: Mutex::new(Marks::default()),
        done: Notify::new(),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answered))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/", post(secrets_manager))
        .with_state(Arc::clone(&runtime));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let config = scratch.join("lambda-config.yaml");
    std::fs::write(&config, SHIPPED_CONFIG)?;
    let stderr_path = scratch.join(format!("lambda-{:016x}.log", fastrand::u64(..)));
    let mut cmd = tokio::process::Command::new(bootstrap);
    cmd.env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "memory-connector-sync".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/memory-connector-sync".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "bench".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench".into()),
            ("AWS_SESSION_TOKEN", "bench".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL", NOWHERE.into()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", format!("http://{addr}")),
            ("CONFIG_PATH", config.display().to_string()),
            ("STATE_TABLE", "bench-state".into()),
            ("MEMORY_API_KEY_SECRET_ARN", SECRET_ARN.into()),
            ("MEMORY_API_URL", NOWHERE.into()),
            ("LIGHTRAG_URL", NOWHERE.into()),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path)?)
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {}", bootstrap.display()))?;
    let pid = child.id();
    let outcome = tokio::select! {
        () = runtime.done.notified() => Ok(()),
        status = child.wait() => Err(format!("the bootstrap exited ({:?}) before asking for a second event", status.ok())),
        () = tokio::time::sleep(Duration::from_secs(60)) => Err("no second GET /next within 60 s".into()),
    };
    let peak_rss_kb = pid.and_then(vm_hwm_kb).unwrap_or(0);
    let _ = child.kill().await;
    server.abort();
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    if let Err(message) = outcome {
        bail!("{message}; its output:\n{}", tail(&log));
    }
    let marks = runtime.marks();
    let (first, (answered_at, answer)) = match (marks.next.first(), marks.answers.first()) {
        (Some(first), Some(answer)) => (*first, answer.clone()),
        _ => bail!("the bootstrap answered no event; its output:\n{}", tail(&log)),
    };
    if answer.starts_with("init error") {
        bail!("{answer}\nits output:\n{}", tail(&log));
    }
    Ok(ColdStart {
        init_ms: first.duration_since(spawned).as_secs_f64() * 1e3,
        invoke_ms: answered_at.duration_since(first).as_secs_f64() * 1e3,
        peak_rss_kb,
        secret_calls: marks.secret_calls,
        answer,
    })
}

/// Peak resident set of a live process (Linux `/proc/PID/status`).
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Bytes of `path` compressed with deflate (zip's method, level 6): the
/// deployment zip's size to within its ~100 bytes of headers.
pub fn deflated_size(path: &Path) -> anyhow::Result<u64> {
    use std::io::Write as _;
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let mut encoder = flate2::write::DeflateEncoder::new(Counter(0), flate2::Compression::new(6));
    encoder.write_all(&data)?;
    Ok(encoder.finish()?.0)
}

/// A writer that only counts.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_counts_the_compressed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeros");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let size = deflated_size(&path).unwrap();
        assert!(size > 0 && size < 10_000, "{size}");
    }

    #[test]
    fn peak_rss_of_this_process_is_read() {
        assert!(vm_hwm_kb(std::process::id()).is_some_and(|kb| kb > 0));
    }
}
