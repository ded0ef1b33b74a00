//! The `sync` handler invoked as the runtime would (a `LambdaEvent` with a
//! `Context`), against DynamoDB Local (state), moto (Secrets Manager) and
//! the Memory API / LightRAG / enrichment simulators. Skipped loudly
//! without emulators. `watch.rs` runs the built function through
//! `cargo lambda watch`.

mod common;

use chrono::Utc;
use common::{AwsState, CONNECTOR, MEMORY_KEY, assert_no_duplicates, delivered, emulators};
use connector_core::ids::ConnectorId;
use connector_core::serverless::{FunctionSettings, SyncFunction};
use connector_core::state::{EntryStatus, LeaseOutcome, RunStatus, StateStore};
use connector_core::transform::file_source;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sims::enrich_sim::{EnrichSim, Service};
use sims::harness::ConfigSpec;
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Stack {
    _dir: tempfile::TempDir,
    memory: MemorySim,
    lightrag: LightragSim,
    function: SyncFunction,
    /// The table, read and written with a client of its own (the
    /// function's calls are the ones the template check records).
    aws: AwsState,
    /// The function's metric lines, one per invocation.
    metrics: Arc<Mutex<Vec<String>>>,
}

/// Simulators, a fresh table, the Memory API key only in Secrets Manager
/// (a JSON secret), and the function built the way a cold start builds it.
async fn stack(lightrag_latency: Duration, safety_margin: Duration) -> Stack {
    stack_with(lightrag_latency, safety_margin, json!({"MEMORY_API_KEY": MEMORY_KEY}), |_| {}).await
}

/// [`stack`] with `secret` as the JSON secret and `adjust` applied to the config.
async fn stack_with(
    lightrag_latency: Duration,
    safety_margin: Duration,
    secret: Value,
    adjust: impl FnOnce(&mut ConfigSpec),
) -> Stack {
    let memory = MemorySim::start(MemorySimOptions { api_key: Some(MEMORY_KEY.into()), ..MemorySimOptions::default() })
        .await
        .expect("memory sim");
    let lightrag =
        LightragSim::start(LightragSimOptions { latency: lightrag_latency, ..LightragSimOptions::default() })
            .await
            .expect("lightrag sim");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ConfigSpec::new(&memory.url(), &lightrag.url());
    spec.backend = "dynamodb";
    // One request per document, so the insert count proves there was no re-send.
    spec.batch_inserts = false;
    adjust(&mut spec);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, spec.render()).expect("write config");

    let aws = AwsState::create(&secret).await;
    let settings = FunctionSettings { config_path, vars: aws.vars(), sdk: aws.sdk.clone(), safety_margin };
    let mut function = SyncFunction::init(settings).await.expect("cold start");
    let metrics = function.metrics_in_memory();
    Stack { _dir: dir, memory, lightrag, function, aws, metrics }
}

/// The metric lines written so far, parsed.
fn metric_lines(s: &Stack) -> Vec<Value> {
    let lines = s.metrics.lock().expect("metrics").clone();
    lines.iter().map(|l| serde_json::from_str(l).expect("a metric line is JSON")).collect()
}

fn event(payload: Value, remaining: Duration) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = format!("req-{:08x}", fastrand::u32(..));
    context.deadline = u64::try_from((Utc::now() + remaining).timestamp_millis()).expect("deadline");
    LambdaEvent::new(payload, context)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_event_runs_one_sync_into_dynamodb() {
    if !emulators("sync handler: scheduled_event_runs_one_sync_into_dynamodb") {
        return;
    }
    let s = stack(Duration::ZERO, Duration::from_secs(30)).await;
    let scheduled = json!({"connector_id": CONNECTOR, "trigger": "schedule"});
    let answer =
        sync_function::handler(&s.function, event(scheduled.clone(), Duration::from_secs(600))).await.expect("handler");
    assert_eq!(answer["status"], "completed", "{answer:#}");
    assert!(s.memory.list_requests() >= 1, "the Memory API was called with the key from Secrets Manager");

    let store = s.aws.store();
    let c = ConnectorId::new(CONNECTOR);
    let sent = delivered(&store).await;
    assert!(sent > 0, "documents were delivered");
    assert_eq!(sent, s.lightrag.documents().len() as u64, "the ledger in DynamoDB matches LightRAG");
    let runs = store.runs(&c, 10).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].trigger.as_str(), runs[0].status), ("schedule", RunStatus::Completed));
    assert_eq!(store.lease(&c).await.expect("lease"), None, "the lease is released");
    let state = store.connector_state(&c).await.expect("state").expect("connector state written");
    assert_eq!(state.status, RunStatus::Completed);

    // The same schedule again: nothing new, nothing re-sent.
    let again = sync_function::handler(&s.function, event(scheduled, Duration::from_secs(600))).await.expect("again");
    assert_eq!(again["status"], "completed", "{again:#}");
    assert_eq!(again["counts"]["new"], 0);
    assert_no_duplicates(&s.lightrag);

    // A SyncRequested event while another run holds the lease: no second run.
    let owner = connector_core::ids::RunId::new("other-invocation");
    let held = store.try_acquire_lease(&c, &owner, Utc::now(), Duration::from_secs(60)).await.expect("acquire");
    assert!(matches!(held, LeaseOutcome::Acquired(_)));
    let requested = json!({"detail-type": "SyncRequested", "source": "memory-connector",
                           "detail": {"connector_id": CONNECTOR, "force": true}});
    let busy = sync_function::handler(&s.function, event(requested, Duration::from_secs(600))).await.expect("busy");
    assert_eq!(busy["status"], "already_running", "{busy:#}");
    assert_eq!(store.runs(&c, 10).await.expect("runs").len(), 2, "no run was recorded for the refused trigger");
    store.release_lease(&c, &owner).await.expect("release");

    // A holder that looks like a dead process of this host (another Lambda
    // sandbox: same host name, other PID namespace) is not taken over.
    let elsewhere = connector_core::ids::RunId::new(format!(
        "20260101T000000000Z-00000000@{}:{}",
        connector_core::liveness::this_host(),
        u32::MAX - 1
    ));
    assert!(elsewhere.holder_is_gone(), "looks dead from here");
    store.try_acquire_lease(&c, &elsewhere, Utc::now(), Duration::from_secs(60)).await.expect("acquire");
    let retry = json!({"connector_id": CONNECTOR});
    let busy = sync_function::handler(&s.function, event(retry, Duration::from_secs(600))).await.expect("busy");
    assert_eq!(busy["status"], "already_running", "{busy:#}");
    store.release_lease(&c, &elsewhere).await.expect("release");

    // Not retryable: answered, not failed.
    let unknown = sync_function::handler(&s.function, event(json!({"connector_id": "nope"}), Duration::from_secs(60)))
        .await
        .expect("an unknown connector is answered, not failed");
    assert_eq!(unknown["status"], "rejected");
    assert!(unknown["error"].as_str().unwrap_or_default().contains("nope"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_time_cut_off_yields_partial_and_the_next_invoke_finishes() {
    if !emulators("sync handler: remaining_time_cut_off_yields_partial_and_the_next_invoke_finishes") {
        return;
    }
    // Every LightRAG answer takes 3 s, 5 in flight, 30 memories with text:
    // 8 s of usable time (10 s left, 2 s kept back) delivers one to three
    // windows, never all six, with time to spare on a loaded machine.
    let s = stack(Duration::from_secs(3), Duration::from_secs(2)).await;
    let payload = json!({"connector_id": CONNECTOR});
    let first = sync_function::handler(&s.function, event(payload.clone(), Duration::from_secs(10)))
        .await
        .expect("first invoke");
    assert_eq!(first["status"], "partial", "{first:#}");
    assert_eq!(first["stopped_early"], true, "{first:#}");
    let store = s.aws.store();
    let after_first = delivered(&store).await;
    assert!(after_first > 0, "some batches were checkpointed before the cut-off: {first:#}");
    assert_eq!(after_first, s.lightrag.documents().len() as u64, "every delivered document is in the ledger");

    let second =
        sync_function::handler(&s.function, event(payload, Duration::from_secs(600))).await.expect("second invoke");
    assert_eq!(second["status"], "completed", "{second:#}");
    assert_eq!(second["counts"]["unchanged"].as_u64(), Some(after_first), "what the first run sent is not sent again");
    assert!(second["counts"]["new"].as_u64().unwrap_or(0) > 0, "the second run delivers the rest");
    assert_no_duplicates(&s.lightrag);
    let counts = store.status_counts(&ConnectorId::new(CONNECTOR)).await.expect("counts");
    assert_eq!(counts.get(&EntryStatus::Failed), None);
}

/// An invocation that timed out (its sandbox gone mid-request) right after
/// LightRAG accepted a document it had not enqueued yet: the next invocation
/// finds the document LightRAG enqueued and does not send a second copy
/// (which LightRAG would record as a failed `dup-` document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_cut_off_after_lightrag_accepted_a_document_sends_no_second_copy() {
    if !emulators("sync handler: an_invocation_cut_off_after_lightrag_accepted_a_document_sends_no_second_copy") {
        return;
    }
    let s = stack(Duration::from_millis(20), Duration::from_secs(1)).await;
    s.lightrag.slow_enqueue("memory_", Duration::from_secs(2));
    let payload = json!({"connector_id": CONNECTOR});
    let cut_off = sync_function::handler(&s.function, event(payload.clone(), Duration::from_secs(600)));
    tokio::pin!(cut_off);
    loop {
        tokio::select! {
            answer = &mut cut_off => panic!("the run ended before it could be cut off: {answer:?}"),
            () = tokio::time::sleep(Duration::from_millis(2)) => {
                if s.lightrag.pending_enqueues() > 0 {
                    break;
                }
            }
        }
    }
    // The sandbox is gone; its lease would expire, as if it did.
    let store = s.function.store();
    let c = ConnectorId::new(CONNECTOR);
    let lease = store.lease(&c).await.expect("lease").expect("the cut-off invocation's lease");
    store.release_lease(&c, &lease.owner).await.expect("release");
    let counts = store.status_counts(&c).await.expect("counts");
    assert!(counts.get(&EntryStatus::Sending).is_some_and(|n| *n > 0), "it left its marks: {counts:?}");

    let next = sync_function::handler(&s.function, event(payload, Duration::from_secs(600))).await.expect("next");
    assert_eq!(next["status"], "completed", "{next:#}");
    assert!(next["counts"]["recovered"].as_u64().is_some_and(|n| n > 0), "{next:#}");
    let docs = s.lightrag.documents();
    assert!(docs.iter().all(|d| !d.id.starts_with("dup-")), "{docs:?}");
    let names: std::collections::HashSet<_> = docs.iter().map(|d| d.file_path.clone()).collect();
    assert_eq!(names.len(), docs.len(), "no memory was stored twice");
    assert_eq!(delivered(store.as_ref()).await, docs.len() as u64, "the ledger in DynamoDB matches LightRAG");
    assert_eq!(store.status_counts(&c).await.expect("counts").get(&EntryStatus::Sending), None);
}

/// The Lambda sync enriches as `serve` does: a transcript for a recording
/// without one, a description of a photo, place names; the OpenAI key comes
/// from the same Secrets Manager secret, and the results are cached in the
/// DynamoDB table, so the next run calls no service again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sync_enriches_and_caches_in_dynamodb() {
    if !emulators("sync handler: scheduled_sync_enriches_and_caches_in_dynamodb") {
        return;
    }
    const OPENAI_KEY: &str = "sk-test-lambda-enrich";
    const CTX: &str = "ENR";
    let fakes = EnrichSim::start(Some(OPENAI_KEY)).await.expect("enrichment fakes");
    let secret = json!({"MEMORY_API_KEY": MEMORY_KEY, "OPENAI_API_KEY": OPENAI_KEY});
    let s = stack_with(Duration::ZERO, Duration::from_secs(30), secret, |spec| {
        spec.context_id = CTX.into();
        spec.strategy = "rich";
        spec.transformation_extra =
            vec!["include_audio: true".into(), "include_image: true".into(), "geocoding: true".into()];
        spec.extra_yaml = fakes.config_section();
    })
    .await;
    s.memory.add_raw(
        CTX,
        vec![
            json!({"id": "a1", "type": "record", "audio": true, "image": false, "transcript": "",
                   "location_lat": 52.5200, "location_lon": 13.4050, "created_at": "2025-12-18T08:10:00Z",
                   "gcs_uri": "gs://bucket/audio/a1.wav", "gcs_uri_img": null}),
            json!({"id": "p1", "type": "photo", "audio": false, "image": true, "transcript": "Fresh #bread",
                   "location_lat": 48.137, "location_lon": 11.575, "created_at": "2025-12-17T12:00:00Z",
                   "gcs_uri": null, "gcs_uri_img": "gs://bucket/images/p1.png"}),
        ],
    );
    let scheduled = json!({"connector_id": CONNECTOR, "trigger": "schedule"});
    let first =
        sync_function::handler(&s.function, event(scheduled.clone(), Duration::from_secs(600))).await.expect("handler");
    assert_eq!(first["status"], "completed", "{first:#}");
    assert_eq!(first["counts"]["new"], 2, "{first:#}");
    let text = |id: &str| s.lightrag.document_named(&file_source(CTX, id)).unwrap_or_else(|| panic!("no {id}")).text;
    let a1 = text("a1");
    assert!(
        a1.contains("## Transcript (automatic transcription of the audio recording)\n\nAutomatic transcript "),
        "{a1}"
    );
    assert!(a1.contains("Where: Berlin, Mitte, Germany"), "{a1}");
    let p1 = text("p1");
    assert!(p1.contains("## Photo description (automatic)"), "{p1}");
    assert!(p1.contains("Where: Town 48.1/11.6, Simland"), "{p1}");
    let calls = || (fakes.calls(Service::Transcription), fakes.calls(Service::Vision), fakes.calls(Service::Geocoding));
    assert_eq!(calls(), (1, 1, 2), "each service once per memory (or place)");
    assert_eq!(fakes.problems(), Vec::<String>::new());

    // The next schedule: the enrichments come from the DynamoDB cache, so
    // the documents are the same and nothing is re-sent or re-enriched.
    let again = sync_function::handler(&s.function, event(scheduled, Duration::from_secs(600))).await.expect("again");
    assert_eq!(again["status"], "completed", "{again:#}");
    assert_eq!((again["counts"]["new"].as_u64(), again["counts"]["updated"].as_u64()), (Some(0), Some(0)), "{again:#}");
    assert_eq!(calls(), (1, 1, 2), "the second run read the cache");
    assert_no_duplicates(&s.lightrag);
}

/// Paused through the API: the schedule's invocations skip the connector
/// (nothing run, nothing recorded); a `SyncRequested` trigger still runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_connector_skips_scheduled_runs_but_not_triggers() {
    if !emulators("sync handler: a_paused_connector_skips_scheduled_runs_but_not_triggers") {
        return;
    }
    let s = stack(Duration::ZERO, Duration::from_secs(30)).await;
    let store = s.aws.store();
    let c = ConnectorId::new(CONNECTOR);
    connector_core::admin::set_paused(&store, &c, true).await.expect("pause");

    let scheduled = json!({"connector_id": CONNECTOR, "trigger": "schedule"});
    let skipped = sync_function::handler(&s.function, event(scheduled, Duration::from_secs(600))).await.expect("skip");
    assert_eq!(
        (skipped["status"].as_str(), skipped["reason"].as_str()),
        (Some("skipped"), Some("paused")),
        "{skipped:#}"
    );
    assert_eq!(s.memory.list_requests(), 0, "the Memory API was not asked");
    assert!(store.runs(&c, 10).await.expect("runs").is_empty(), "no run recorded");
    assert_eq!(store.lease(&c).await.expect("lease"), None, "no lease left behind");

    let requested = json!({"detail-type": "SyncRequested", "source": "memory-connector",
                           "detail": {"connector_id": CONNECTOR}});
    let ran = sync_function::handler(&s.function, event(requested, Duration::from_secs(600))).await.expect("trigger");
    assert_eq!(ran["status"], "completed", "{ran:#}");
    let state = store.connector_state(&c).await.expect("state").expect("state");
    assert!(state.paused, "a triggered run leaves the pause as it was");
}

/// Geocoding 1,000 memories at 40 requests a second takes 25 s; a 60 s
/// invocation (30 s kept back) stops calling the geocoder at 20 s, sends
/// what it enriched, answers `partial` in time, and the next invocation
/// finishes the rest from where the cache left off: nothing re-sent, no
/// place asked for twice, no memory charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_stops_at_the_invocation_deadline_and_the_next_invoke_finishes() {
    if !emulators("sync handler: enrichment_stops_at_the_invocation_deadline_and_the_next_invoke_finishes") {
        return;
    }
    const CTX: &str = "GEO";
    const N: usize = 1_000;
    let fakes = EnrichSim::start(None).await.expect("enrichment fakes");
    let secret = json!({"MEMORY_API_KEY": MEMORY_KEY, "OPENAI_API_KEY": "unused"});
    let s = stack_with(Duration::ZERO, Duration::from_secs(30), secret, |spec| {
        spec.context_id = CTX.into();
        spec.query_limit = 5_000;
        spec.batch_size = 50;
        spec.batch_inserts = true;
        spec.transformation_extra = vec!["geocoding: true".into()];
        spec.extra_yaml = fakes.config_section().replace("requests_per_second: 20", "requests_per_second: 40");
    })
    .await;
    // A kilometre apart each: every memory is its own place.
    let memories: Vec<Value> = (0..N)
        .map(|i| {
            json!({"id": format!("g{i:04}"), "type": "record", "audio": false, "image": false,
                   "transcript": format!("Walked past spot {i}"),
                   "location_lat": 40.0 + (i / 40) as f64 * 0.01, "location_lon": 10.0 + (i % 40) as f64 * 0.01,
                   "created_at": "2025-12-18T08:10:00Z"})
        })
        .collect();
    s.memory.add_raw(CTX, memories);
    let scheduled = json!({"connector_id": CONNECTOR, "trigger": "schedule"});

    let started = std::time::Instant::now();
    let first =
        sync_function::handler(&s.function, event(scheduled.clone(), Duration::from_secs(60))).await.expect("first");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "the invocation answered within its time ({took:?})");
    assert_eq!(
        (first["status"].as_str(), first["stopped_early"].as_bool()),
        (Some("partial"), Some(true)),
        "{first:#}"
    );
    let postponed = first["counts"]["postponed"].as_u64().unwrap_or(0);
    let sent = first["counts"]["new"].as_u64().unwrap_or(0);
    assert!(postponed > 0 && sent > 0, "part enriched and sent, the rest left: {first:#}");
    assert_eq!(sent + postponed, N as u64, "every memory either sent or left for the next run: {first:#}");
    assert_eq!(first["counts"]["failed"], 0, "no memory charged for the deadline");
    let geocoded = fakes.calls(Service::Geocoding);

    let second = sync_function::handler(&s.function, event(scheduled, Duration::from_secs(900))).await.expect("second");
    assert_eq!(second["status"], "completed", "{second:#}");
    assert_eq!(second["counts"]["new"].as_u64(), Some(postponed), "the rest is sent: {second:#}");
    assert_eq!(second["counts"]["unchanged"].as_u64(), Some(sent), "{second:#}");
    assert_eq!(fakes.calls(Service::Geocoding), N, "each place asked once ({geocoded} in the first run)");
    assert_eq!(s.lightrag.documents().len(), N);
    assert_no_duplicates_batched(&s.lightrag);
}

/// No document twice (batched inserts: one request carries many).
fn assert_no_duplicates_batched(lightrag: &LightragSim) {
    let docs = lightrag.documents();
    let names: std::collections::HashSet<_> = docs.iter().map(|d| d.file_path.clone()).collect();
    assert_eq!(names.len(), docs.len(), "no memory was sent twice");
}

/// A Memory API that hangs past the invocation's time: the run gives up in
/// time (failed, nothing sent, nothing charged), so the Lambda never runs
/// into its timeout with the lease held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_memory_api_fails_the_run_before_the_invocation_ends() {
    if !emulators("sync handler: a_hanging_memory_api_fails_the_run_before_the_invocation_ends") {
        return;
    }
    let s = stack(Duration::ZERO, Duration::from_secs(2)).await;
    s.memory.inject(sims::memory_sim::Fault {
        status: 200,
        body: String::new(),
        retry_after: None,
        delay: Duration::from_secs(30),
        times: 5,
    });
    let started = std::time::Instant::now();
    let answer = sync_function::handler(&s.function, event(json!({"connector_id": CONNECTOR}), Duration::from_secs(6)))
        .await
        .expect("handler");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "answered within the invocation ({took:?})");
    assert_eq!(answer["status"], "failed", "{answer:#}");
    assert!(answer["error"].as_str().unwrap_or_default().contains("time ran out"), "{answer:#}");
    assert!(s.lightrag.documents().is_empty());
    let store = s.aws.store();
    assert_eq!(store.lease(&ConnectorId::new(CONNECTOR)).await.expect("lease"), None, "the lease is released");
}

/// Every invocation writes one metric line: a run by its status with its
/// counts, an event that named no configured connector (or was malformed)
/// as a rejected event by reason, whatever answer the invocation gives.
/// Before, an unknown connector was only a log line: no metric, no alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_writes_a_metric_line_and_rejected_events_are_counted() {
    if !emulators("sync handler: every_invocation_writes_a_metric_line_and_rejected_events_are_counted") {
        return;
    }
    let s = stack(Duration::ZERO, Duration::from_secs(30)).await;
    let scheduled = json!({"connector_id": CONNECTOR, "trigger": "schedule"});
    let ran = sync_function::handler(&s.function, event(scheduled, Duration::from_secs(600))).await.expect("run");
    // Whether the intake answers or fails an unknown connector, it is counted.
    let _ = sync_function::handler(&s.function, event(json!({"connector_id": "gone"}), Duration::from_secs(60))).await;
    let _ = sync_function::handler(&s.function, event(json!({"connector": "typo"}), Duration::from_secs(60))).await;

    let lines = metric_lines(&s);
    assert_eq!(lines.len(), 3, "one line per invocation: {lines:#?}");
    let run = &lines[0];
    assert_eq!((run["Status"].as_str(), run["Runs"].as_u64()), (Some("completed"), Some(1)), "{run}");
    assert_eq!(run["ConnectorId"], CONNECTOR);
    assert_eq!(run["MemoriesNew"], ran["counts"]["new"], "{run}");
    assert_eq!(run["RunId"], ran["run_id"]);
    assert_eq!(run["_aws"]["CloudWatchMetrics"][0]["Namespace"], "MemoryConnector");
    let reasons: Vec<(&str, u64)> = lines[1..]
        .iter()
        .map(|l| (l["Reason"].as_str().unwrap_or_default(), l["RejectedEvents"].as_u64().unwrap_or_default()))
        .collect();
    assert_eq!(reasons, [("unknown_connector", 1), ("bad_event", 1)], "{lines:#?}");
    assert_eq!(lines[1]["ConnectorId"], "gone", "the unknown connector is named (a property, not a dimension)");
}

/// `monitoring.alerts` from the Lambda: the webhook hears once when runs
/// start failing past the threshold and once when a run succeeds again,
/// though no process lives from one invocation to the next (the URL comes
/// from the secret, as AlertWebhookSecretArn gives it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_when_runs_cross_the_threshold_and_recover() {
    if !emulators("sync handler: alerts_fire_when_runs_cross_the_threshold_and_recover") {
        return;
    }
    let (url, received) = sims::harness::webhook().await;
    let secret = json!({"MEMORY_API_KEY": MEMORY_KEY, "ALERT_WEBHOOK_URL": url});
    let s = stack_with(Duration::ZERO, Duration::from_secs(30), secret, |spec| {
        spec.extra_yaml = "monitoring:\n  alerts:\n    enabled: true\n    webhook_url: \"${ALERT_WEBHOOK_URL}\"\n    alert_on:\n      - consecutive_failures: 2\n".into();
    })
    .await;
    // The Memory API refuses the key twice (not retried), then accepts it.
    s.memory.inject(sims::memory_sim::Fault::status(401).with_times(2));
    let scheduled = json!({"connector_id": CONNECTOR, "trigger": "schedule"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let answer =
            sync_function::handler(&s.function, event(scheduled.clone(), Duration::from_secs(600))).await.expect("run");
        statuses.push(answer["status"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(statuses, ["failed", "failed", "completed"]);
    let alerts = received.lock().expect("alerts").clone();
    let seen: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a["alert"].as_str().unwrap_or_default(), a["state"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(seen, [("consecutive_failures", "firing"), ("consecutive_failures", "resolved")], "{alerts:#?}");
    assert_eq!(alerts[0]["connector_id"], CONNECTOR);
    let failed = metric_lines(&s).iter().filter(|l| l["Status"] == "failed").count();
    assert_eq!(failed, 2, "the failed runs are counted for the FailedRunsAlarm");
}
