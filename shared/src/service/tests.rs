//! The service's launcher with in-memory fakes: single flight, the job
//! timeout recorded as `timed_out`, shutdown at a batch boundary.

use super::*;
use crate::config::load_str;
use crate::ids::MemoryId;
use crate::lightrag::{InsertOutcome, ReplaceOutcome, SinkError};
use crate::memory_api::model::{FetchedPage, Memory};
use crate::state::Trigger;
use crate::state::json::JsonStore;
use crate::transform::Document;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Source(usize);

#[async_trait]
impl MemorySource for Source {
    async fn fetch(&self, _connector: &ConnectorConfig) -> Result<FetchedPage, String> {
        let memories = (0..self.0)
            .map(|i| Memory {
                id: MemoryId::new(format!("m{i:03}")),
                kind: Some("note".into()),
                audio: false,
                image: false,
                transcript: Some(format!("text {i}")),
                location: None,
                created_at: None,
                updated_at: None,
                gcs_uri: None,
                gcs_uri_img: None,
            })
            .collect();
        Ok(FetchedPage { memories, attempts: 1, ..Default::default() })
    }
}

#[derive(Debug, Default)]
struct SlowSink {
    inserted: AtomicUsize,
}

#[async_trait]
impl DocumentSink for SlowSink {
    async fn insert(&self, _doc: &Document) -> Result<InsertOutcome, SinkError> {
        tokio::time::sleep(Duration::from_millis(40)).await;
        self.inserted.fetch_add(1, Ordering::SeqCst);
        Ok(InsertOutcome::Accepted { track_id: None })
    }
    async fn replace(&self, _doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        Ok(ReplaceOutcome::Replaced { track_id: None })
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

const YAML: &str = r#"
memory_api: { url: "http://127.0.0.1:9" }
connectors:
  - id: "c1"
    context_id: "CTX"
    schedule: { type: interval, interval_hours: 1 }
    ingestion: { batch_size: 1 }
api: { enable_auth: false }
"#;

async fn service(
    dir: &std::path::Path,
    memories: usize,
) -> (Service, Arc<SlowSink>, Arc<dyn StateStore>, ConnectorConfig) {
    let config = load_str(YAML, "test.yaml", &crate::config::Environment::from_map(Vec::new())).unwrap();
    let connector = config.connectors[0].clone();
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.join("state.json")).await.unwrap());
    let sink = Arc::new(SlowSink::default());
    let service = Service::new(
        Arc::new(config),
        Arc::clone(&store),
        Arc::new(Source(memories)),
        Arc::clone(&sink) as Arc<dyn DocumentSink>,
        Arc::new(Metrics::new()),
    );
    (service, sink, store, connector)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_the_job_timeout_stops_at_a_batch_and_is_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (service, sink, store, connector) = service(dir.path(), 40).await;
    let service = service.with_job_timeout(Duration::from_millis(300));
    let (_, done) = service.start_run(&connector, Trigger::Cli, false).await.unwrap();
    let report = done.await.unwrap().expect("a report");
    assert_eq!(report.status, RunStatus::TimedOut);
    let sent = sink.inserted.load(Ordering::SeqCst);
    assert!(sent > 0 && sent < 40, "{sent}");
    let run = &store.runs(&connector.id, 1).await.unwrap()[0];
    assert_eq!(run.status, RunStatus::TimedOut);
    assert_eq!(run.counts.new, sent as u64, "the ledger has every document that was sent");
    assert_eq!(store.connector_state(&connector.id).await.unwrap().unwrap().status, RunStatus::TimedOut);
    assert!(service.metrics().render().contains(r#"status="timed_out"} 1"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_never_runs_twice_even_from_two_services() {
    let dir = tempfile::tempdir().unwrap();
    let (one, _, _, connector) = service(dir.path(), 10).await;
    let (two, _, _, _) = service(dir.path(), 10).await;
    let (first, done) = one.start_run(&connector, Trigger::Cli, false).await.unwrap();
    for service in [&one, &two] {
        match service.start_run(&connector, Trigger::Cli, false).await {
            Err(LaunchError::AlreadyRunning { .. }) => {}
            other => panic!("expected already running, got {:?}", other.map(|o| o.0)),
        }
    }
    let report = done.await.unwrap().expect("report");
    assert_eq!(report.run_id, first.run_id);
    assert_eq!(report.status, RunStatus::Completed);
    assert!(two.start_run(&connector, Trigger::Cli, false).await.is_ok(), "free again after the run");
}

/// Paused tokio time: the sink's 40 ms per document pass in no real time.
#[tokio::test(start_paused = true)]
async fn stop_makes_a_run_end_at_a_batch_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let (service, sink, store, connector) = service(dir.path(), 40).await;
    let (_, done) = service.start_run(&connector, Trigger::Cli, false).await.unwrap();
    while sink.inserted.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    service.request_stop();
    assert!(service.wait_idle(Duration::from_secs(5)).await);
    let report = done.await.unwrap().expect("report");
    assert_eq!(report.status, RunStatus::Partial);
    assert!(report.stopped_early);
    assert!(report.counts.new < 40, "{}", report.counts.new);
    assert_eq!(report.counts.new, sink.inserted.load(Ordering::SeqCst) as u64);
    assert!(store.lease(&connector.id).await.unwrap().is_none(), "the lease is released");
    assert!(matches!(service.start_run(&connector, Trigger::Cli, false).await, Err(LaunchError::ShuttingDown)));
}

const FAST_YAML: &str = r#"
memory_api: { url: "http://127.0.0.1:9" }
connectors:
  - id: "c1"
    context_id: "CTX"
    schedule: { type: interval, interval_hours: 10 }
    ingestion: { batch_size: 5 }
api: { enable_auth: false }
state: { cleanup: { enabled: false } }
"#;

/// A service whose scheduler reads a clock that follows tokio time: the
/// scheduler tests pause tokio time and let hours pass in no real time.
async fn fast_service(dir: &std::path::Path, yaml: &str) -> (Service, Arc<dyn StateStore>, ConnectorId, Clock) {
    let config = load_str(yaml, "test.yaml", &crate::config::Environment::from_map(Vec::new())).unwrap();
    let id = config.connectors[0].id.clone();
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.join("state.json")).await.unwrap());
    let clock = Clock::following_tokio(Utc::now());
    let service = Service::new(
        Arc::new(config),
        Arc::clone(&store),
        Arc::new(Source(3)),
        Arc::new(SlowSink::default()),
        Arc::new(Metrics::new()),
    )
    .with_clock(clock);
    (service, store, id, clock)
}

async fn stop(service: &Service, handles: Vec<tokio::task::JoinHandle<()>>) {
    service.request_stop();
    for h in handles {
        let _ = h.await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_overdue_connector_runs_once_at_start_never_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let (service, store, id, clock) = fast_service(dir.path(), FAST_YAML).await;
    // Last run 100 hours ago with a 10-hour interval: ten runs were missed.
    let mut state = crate::state::ConnectorState::new(id.clone());
    state.last_run_started = Some(clock.now() - chrono::Duration::hours(100));
    store.checkpoint(&id, Checkpoint { connector: Some(state), ..Default::default() }).await.unwrap();
    let handles = service.spawn_scheduler();
    tokio::time::sleep(Duration::from_secs(9 * 3600 + 59 * 60)).await;
    let runs = store.runs(&id, 100).await.unwrap();
    assert_eq!(runs.len(), 1, "one run at start, none until the interval passed: {runs:?}");
    assert_eq!(runs[0].trigger, Trigger::Schedule);
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    assert_eq!(store.runs(&id, 100).await.unwrap().len(), 2, "the next run comes one interval later");
    stop(&service, handles).await;
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_skips_a_paused_connector_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = FAST_YAML.replace("interval_hours: 10", "interval_minutes: 1");
    let (service, store, id, _) = fast_service(dir.path(), &yaml).await;
    crate::admin::set_paused(store.as_ref(), &id, true).await.unwrap();
    let handles = service.spawn_scheduler();
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert!(store.runs(&id, 100).await.unwrap().is_empty(), "a paused connector is not scheduled in ten intervals");
    crate::admin::set_paused(store.as_ref(), &id, false).await.unwrap();
    tokio::time::sleep(PAUSED_POLL + Duration::from_millis(500)).await;
    assert_eq!(store.runs(&id, 100).await.unwrap().len(), 1, "a resumed connector runs at the next look");
    stop(&service, handles).await;
    assert!(!store.connector_state(&id).await.unwrap().unwrap().paused);
}
