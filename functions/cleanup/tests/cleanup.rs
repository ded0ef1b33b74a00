//! The `cleanup` handler against DynamoDB Local (`AWS_ENDPOINT_URL_DYNAMODB`); skipped loudly without it.

use chrono::{TimeDelta, Utc};
use connector_core::ids::{ConnectorId, MemoryId, RunId};
use connector_core::serverless::{CleanupFunction, FunctionSettings};
use connector_core::state::dynamodb::DynamoStore;
use connector_core::state::{Checkpoint, EntryStatus, LedgerEntry, RunRecord, RunStatus, StateStore};
use lambda_runtime::{Context, LambdaEvent};
use std::collections::HashMap;
use std::time::Duration;

fn run(connector: &ConnectorId, id: &str, days_ago: i64) -> RunRecord {
    let started = Utc::now() - TimeDelta::days(days_ago);
    let started = chrono::DateTime::from_timestamp_millis(started.timestamp_millis()).unwrap_or_default();
    RunRecord {
        run_id: RunId::new(id),
        connector_id: connector.clone(),
        trigger: connector_core::state::Trigger::Schedule,
        started_at: started,
        finished_at: Some(started),
        status: RunStatus::Completed,
        counts: Default::default(),
        possibly_truncated: false,
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_prunes_old_history_and_reports_dead_entries() {
    if connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", "cleanup handler").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        r#"
memory_api: {url: "http://127.0.0.1:9", api_key: "${MEMORY_API_KEY}"}
lightrag: {mode: api, api: {url: "http://127.0.0.1:9"}}
api: {enabled: false}
state: {backend: dynamodb, cleanup: {enabled: true, retention_days: 30, cleanup_cron: "0 2 * * *"}}
connectors:
  - {id: docs, context_id: C1}
"#,
    )
    .expect("write config");
    let sdk = connector_core::aws::sdk_config().await;
    let table = format!("cleanup-{:012x}", fastrand::u64(..) >> 16);
    // The table, with a client of its own (the function's calls are recorded for the template check).
    let state = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    state.create_table().await.expect("create table");
    // The template gives cleanup no secret: the config's ${MEMORY_API_KEY}
    // is no concern of a function that never calls the Memory API.
    let vars = HashMap::from([("STATE_TABLE".to_owned(), table)]);
    let function = CleanupFunction::init(FunctionSettings { config_path, vars, sdk, safety_margin: Duration::ZERO })
        .await
        .expect("cold start without any key");

    let c = ConnectorId::new("docs");
    for (id, days) in [("old-1", 90), ("old-2", 31), ("recent", 2)] {
        state.checkpoint(&c, Checkpoint { run: Some(run(&c, id, days)), ..Checkpoint::default() }).await.expect("run");
    }
    let dead = LedgerEntry {
        memory_id: MemoryId::new("m1"),
        status: EntryStatus::Dead,
        content_hash: None,
        pending_hash: Some("ab".into()),
        file_source: "memory_C1_m1.txt".into(),
        doc_id: None,
        track_id: None,
        attempts: 5,
        last_error: Some("LightRAG answered 500".into()),
        next_attempt_at: None,
        first_seen: Utc::now(),
        last_ingested: None,
        provenance: None,
    };
    state.checkpoint(&c, Checkpoint { entries: vec![dead], ..Checkpoint::default() }).await.expect("entry");

    let answer = cleanup_function::handler(&function, LambdaEvent::new(serde_json::json!({}), Context::default()))
        .await
        .expect("handler");
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(answer["removed_runs"], 2, "{answer}");
    assert_eq!(answer["dead_entries"]["docs"], 1, "{answer}");
    let left: Vec<_> = state.runs(&c, 10).await.expect("runs").into_iter().map(|r| r.run_id.to_string()).collect();
    assert_eq!(left, ["recent"]);
    assert_eq!(state.entries(&c, &[MemoryId::new("m1")]).await.expect("entries").len(), 1, "dead entries stay");
}

/// The api function hands a reset to this function (`ResetRequested` on
/// EventBridge): a ledger of 5,000 entries is deleted page by page, and the
/// connector is free again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_requested_deletes_a_large_ledger() {
    if connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", "cleanup handler").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        r#"
memory_api: {url: "http://127.0.0.1:9", api_key: "${MEMORY_API_KEY}"}
lightrag: {mode: api, api: {url: "http://127.0.0.1:9"}}
api: {enabled: false}
state: {backend: dynamodb}
connectors:
  - {id: docs, context_id: C1}
"#,
    )
    .expect("write config");
    let sdk = connector_core::aws::sdk_config().await;
    let table = format!("reset-{:012x}", fastrand::u64(..) >> 16);
    let state = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    state.create_table().await.expect("create table");
    let vars = HashMap::from([("STATE_TABLE".to_owned(), table)]);
    let function = CleanupFunction::init(FunctionSettings { config_path, vars, sdk, safety_margin: Duration::ZERO })
        .await
        .expect("cold start");
    let c = ConnectorId::new("docs");
    let now = Utc::now();
    let entries: Vec<LedgerEntry> = (0..5_000)
        .map(|i| LedgerEntry::new(MemoryId::new(format!("m{i:05}")), format!("f{i}.txt"), EntryStatus::Processed, now))
        .collect();
    state.checkpoint(&c, Checkpoint { entries, ..Checkpoint::default() }).await.expect("ledger");
    assert_eq!(state.status_counts(&c).await.expect("counts").get(&EntryStatus::Processed), Some(&5_000));

    let event = serde_json::json!({
        "version": "0", "id": "5b4b2c1e", "detail-type": connector_core::serverless::RESET_REQUESTED,
        "source": connector_core::serverless::EVENT_SOURCE, "account": "123456789012",
        "time": "2026-11-30T12:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"connector_id": "docs"}
    });
    let started = std::time::Instant::now();
    let answer =
        cleanup_function::handler(&function, LambdaEvent::new(event, Context::default())).await.expect("reset");
    eprintln!("5,000 entries reset in {:?}", started.elapsed());
    assert_eq!(answer["status"], "reset", "{answer}");
    assert!(state.status_counts(&c).await.expect("counts").values().all(|n| *n == 0), "the ledger is gone");
    assert!(state.entries(&c, &[MemoryId::new("m00042")]).await.expect("entries").is_empty());
    assert_eq!(state.lease(&c).await.expect("lease"), None, "the connector is free again");

    let unknown = serde_json::json!({"detail-type": "ResetRequested", "detail": {"connector_id": "nope"}});
    let answer = cleanup_function::handler(&function, LambdaEvent::new(unknown, Context::default())).await;
    assert!(answer.is_ok(), "an unknown connector is answered, not retried");
}
