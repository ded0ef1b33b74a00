//! The Memory API client against the simulator over real HTTP: success,
//! retries (429 with Retry-After, 5xx bursts, timeouts, garbage bodies,
//! network errors), permanent failures (401, 404) and untidy pages.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

use connector_core::config::{MemoryApiConfig, QueryRange};
use connector_core::memory_api::{MemoryApiClient, MemoryApiError};
use connector_core::secrets::Secret;
use serde_json::json;
use sims::hostile_http::EndlessServer;
use sims::memory_sim::{Fault, MemorySim, MemorySimOptions};
use std::time::{Duration, Instant};

const KEY: &str = "sim-key-4f1c2a";

async fn sim() -> MemorySim {
    MemorySim::start(MemorySimOptions { api_key: Some(KEY.into()), ..MemorySimOptions::default() }).await.unwrap()
}

fn client(url: &str, key: &str, max_retries: u32, timeout: u64) -> MemoryApiClient {
    let config = MemoryApiConfig {
        url: url.into(),
        api_key: Some(Secret::new(key)),
        timeout,
        max_retries,
        retry_backoff: 2.0,
        ..MemoryApiConfig::default()
    };
    MemoryApiClient::new(&config).unwrap().with_first_retry_delay(Duration::from_millis(10))
}

fn ctx_client(sim: &MemorySim) -> MemoryApiClient {
    client(&sim.url(), KEY, 3, 5)
}

#[tokio::test]
async fn lists_the_week_of_a_context() {
    let sim = sim().await;
    let page = ctx_client(&sim).list("CTX123", QueryRange::Week, 100).await.unwrap();
    assert_eq!(page.attempts, 1);
    assert!(!page.possibly_truncated);
    assert!(page.rejected.is_empty());
    let week_start = sim.now() - chrono::Duration::days(7);
    let expected = sim
        .expected("CTX123")
        .iter()
        .filter(|item| {
            let created = connector_core::memory_api::parse_timestamp(item["created_at"].as_str().unwrap());
            created.unwrap() >= week_start
        })
        .count();
    assert!(expected > 0);
    assert_eq!(page.memories.len(), expected);
    assert!(page.memories.iter().all(|m| m.created_at.is_some_and(|at| at >= week_start)));

    // A full page says so.
    let page = ctx_client(&sim).list("CTX123", QueryRange::All, 10).await.unwrap();
    assert_eq!(page.memories.len(), 10);
    assert!(page.possibly_truncated);
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let sim = sim().await;
    sim.inject(Fault::status(429).with_retry_after("1"));
    let started = Instant::now();
    let page = ctx_client(&sim).list("CTX123", QueryRange::Week, 100).await.unwrap();
    // The backoff alone would have waited 10-20 ms.
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    assert_eq!(page.attempts, 2);
    assert_eq!(sim.list_requests(), 2);
    assert!(!page.memories.is_empty());
}

#[tokio::test]
async fn a_burst_of_503_is_retried_until_it_passes() {
    let sim = sim().await;
    sim.inject(Fault::status(503).with_times(3));
    let page = ctx_client(&sim).list("CTX123", QueryRange::Week, 100).await.unwrap();
    assert_eq!(page.attempts, 4);
    assert_eq!(sim.list_requests(), 4);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let sim = sim().await;
    sim.inject(Fault::slow(Duration::from_secs(3)));
    let started = Instant::now();
    let page = client(&sim.url(), KEY, 2, 1).list("CTX123", QueryRange::Week, 100).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(3), "waited for the slow answer: {:?}", started.elapsed());
    assert_eq!(page.attempts, 2);
}

#[tokio::test]
async fn only_timeouts_until_the_retries_run_out() {
    let sim = sim().await;
    sim.inject(Fault::slow(Duration::from_secs(3)).with_times(2));
    let err = client(&sim.url(), KEY, 1, 1).list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    let MemoryApiError::RetriesExhausted { attempts: 2, last } = &err else { panic!("{err:?}") };
    assert!(matches!(**last, MemoryApiError::Timeout { timeout_secs: 1, .. }), "{last:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("memory_api.timeout"), "{err}");
}

#[tokio::test]
async fn a_garbage_body_is_retried_then_reported_clearly() {
    let sim = sim().await;
    sim.inject(Fault::garbage("<html><body>Bad gateway (cached)</body></html>"));
    let page = ctx_client(&sim).list("CTX123", QueryRange::Week, 100).await.unwrap();
    assert_eq!(page.attempts, 2);

    sim.inject(Fault::garbage("<html>\n  <body>Bad gateway</body>\n</html>").with_times(10));
    let err = client(&sim.url(), KEY, 2, 5).list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, MemoryApiError::RetriesExhausted { attempts: 3, last }
        if matches!(**last, MemoryApiError::GarbageBody { status: 200, .. })),
        "{err:?}"
    );
    assert!(message.contains("not JSON"), "{message}");
    assert!(message.contains("<html> <body>Bad gateway</body> </html>"), "{message}");
    assert!(message.contains(&format!("{}/memory/CTX123?limit=100&range=week", sim.url())), "{message}");
    assert_eq!(err.status(), Some(200));
}

#[tokio::test]
async fn json_without_a_memory_list_is_not_retried() {
    let sim = sim().await;
    sim.inject(Fault::garbage(r#"{"items": []}"#));
    let err = ctx_client(&sim).list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    assert!(matches!(err, MemoryApiError::InvalidPage { .. }), "{err:?}");
    assert!(err.to_string().contains("no `memories` array"), "{err}");
    assert_eq!(sim.list_requests(), 1);
}

#[tokio::test]
async fn a_401_is_not_retried_and_names_the_url_not_the_key() {
    let sim = sim().await;
    let wrong_key = "wrong-key-9d8e7f";
    let err = client(&sim.url(), wrong_key, 3, 5).list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    assert_eq!(sim.list_requests(), 1);
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(401));
    let message = err.to_string();
    assert!(message.contains(&format!("{}/memory/CTX123", sim.url())), "{message}");
    assert!(message.contains("401") && message.contains("memory_api.api_key"), "{message}");
    assert!(message.contains("Invalid or missing API key"), "{message}");
    assert!(!message.contains(wrong_key) && !format!("{err:?}").contains(wrong_key), "{message}");

    // A server that echoes the key back does not get it into the message.
    sim.inject(Fault::status(403).with_body(format!("<p>key {KEY} is not allowed here</p>")));
    let err = ctx_client(&sim).list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!err.to_string().contains(KEY), "{err}");
    assert!(err.to_string().contains("key *** is not allowed"), "{err}");
}

#[tokio::test]
async fn an_unknown_context_is_a_404_and_not_retried() {
    let sim = sim().await;
    let err = ctx_client(&sim).list("NO/SUCH ctx", QueryRange::Day, 5).await.unwrap_err();
    assert_eq!(sim.list_requests(), 1);
    assert!(matches!(&err, MemoryApiError::UnknownContext { context_id, .. } if context_id == "NO/SUCH ctx"));
    assert_eq!(err.status(), Some(404));
    let message = err.to_string();
    assert!(message.contains(&format!("{}/memory/NO%2FSUCH%20ctx?limit=5&range=day", sim.url())), "{message}");
    assert!(message.contains("unknown"), "{message}");
}

#[tokio::test]
async fn exhausted_retries_give_the_last_error_and_the_attempt_count() {
    let sim = sim().await;
    sim.inject(Fault::status(502).with_body("").with_times(10));
    let err = client(&sim.url(), KEY, 2, 5).list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    assert_eq!(sim.list_requests(), 3);
    assert!(matches!(err, MemoryApiError::RetriesExhausted { attempts: 3, .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(502));
    let message = err.to_string();
    assert!(message.starts_with("gave up after 3 attempts: GET "), "{message}");
    assert!(message.contains("HTTP 502") && message.contains("(empty body)"), "{message}");
}

#[tokio::test]
async fn network_errors_are_retried() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err =
        client(&format!("http://127.0.0.1:{port}"), KEY, 2, 5).list("CTX123", QueryRange::Week, 10).await.unwrap_err();
    let MemoryApiError::RetriesExhausted { attempts: 3, last } = &err else { panic!("{err:?}") };
    assert!(matches!(**last, MemoryApiError::Network { .. }), "{last:?}");
    assert_eq!(err.status(), None);
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn untidy_items_are_rejected_one_by_one() {
    let sim = MemorySim::start(MemorySimOptions { malformed: 7, ..MemorySimOptions::default() }).await.unwrap();
    sim.add_raw(
        "CTX123",
        vec![
            json!({"id": 99, "transcript": "numeric id", "created_at": "2025-12-18T15:00:00"}),
            json!({"id": "99", "transcript": "same id again", "created_at": "2025-12-18T15:01:00"}),
        ],
    );
    let client = client(&sim.url(), "unused", 0, 5);
    let page = client.list("CTX123", QueryRange::Week, 1000).await.unwrap();
    assert_eq!(page.rejected.len(), 8, "{:?}", page.rejected);
    assert_eq!(page.rejected.iter().filter(|r| r.reason.starts_with("duplicate id")).count(), 1);
    assert_eq!(page.memories.iter().filter(|m| m.id.as_str() == "99").count(), 1);
}

#[tokio::test]
async fn the_simulator_binary_serves_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_memory-api-sim"))
        .args(["--port", "0", "--contexts", "A=5,B=30", "--api-key", KEY, "--port-file"])
        .arg(&port_file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line))
        .await
        .unwrap()
        .unwrap();
    let port: u16 = std::fs::read_to_string(&port_file).unwrap().trim().parse().unwrap();
    assert_eq!(line.trim(), format!("memory-api-sim listening on http://127.0.0.1:{port}"));

    let client = client(&format!("http://127.0.0.1:{port}"), KEY, 0, 5);
    assert_eq!(client.list("A", QueryRange::All, 100).await.unwrap().memories.len(), 5);
    assert_eq!(client.list("B", QueryRange::All, 100).await.unwrap().memories.len(), 30);

    // SIGTERM stops it cleanly.
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Issue 15, item 5: an endless list body grew the process to 1.5 GB in two
/// seconds. It now stops at `memory_api.max_response_bytes`, is not retried
/// (the next run would get the same page), and says which limit to raise.
#[tokio::test]
async fn an_endless_body_stops_at_the_limit_and_names_it() {
    let server = EndlessServer::json().await.unwrap();
    let config = MemoryApiConfig {
        url: server.url(),
        api_key: Some(Secret::new(KEY)),
        timeout: 20,
        max_response_bytes: 1024 * 1024,
        ..MemoryApiConfig::default()
    };
    let client = MemoryApiClient::new(&config).unwrap().with_first_retry_delay(Duration::from_millis(10));
    let err = client.list("CTX123", QueryRange::Week, 100).await.unwrap_err();
    assert!(matches!(err, MemoryApiError::TooLarge { limit: 1048576, .. }), "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("memory_api.max_response_bytes (1048576 bytes)"), "{text}");
    assert!(text.contains(&format!("GET {}/memory/CTX123", server.url())), "{text}");
    assert!(server.bytes_sent() < 64 * 1024 * 1024, "the client kept reading: {} bytes", server.bytes_sent());
}
