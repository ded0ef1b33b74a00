//! The `api` function's router against DynamoDB Local (state) and moto
//! (EventBridge, and an SQS queue a rule copies `SyncRequested` events into,
//! so the test reads back what `trigger` put). Skipped loudly without
//! emulators (`make test` starts them).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use connector_core::ids::{ConnectorId, RunId};
use connector_core::serverless::{FunctionSettings, api_router, parse_sync_event};
use connector_core::state::dynamodb::DynamoStore;
use connector_core::state::{Checkpoint, EntryStatus, LeaseOutcome, LedgerEntry, Provenance, StateStore};
use serde_json::{Value, json};
use sims::harness::ConfigSpec;
use std::collections::HashMap;
use std::time::Duration;
use tower::ServiceExt;

const KEY: &str = "api-function-key-5e1";
const ACCOUNT: &str = "123456789012";

fn emulators() -> Option<String> {
    connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", "api function")?;
    connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL", "api function")
}

/// One call of moto's SQS JSON protocol.
async fn sqs(endpoint: &str, action: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(endpoint)
        .header("X-Amz-Target", format!("AmazonSQS.{action}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request")
        .body(body.to_string())
        .send()
        .await
        .expect("sqs call")
        .json()
        .await
        .expect("sqs json")
}

async fn call(router: &axum::Router, method: &str, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let answer = router.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("answer");
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_status_and_triggers_through_eventbridge() {
    let Some(endpoint) = emulators() else { return };
    let sdk = connector_core::aws::sdk_config().await;
    let suffix = format!("{:010x}", fastrand::u64(..) >> 24);

    // A queue that receives every SyncRequested event, to read them back.
    let queue = format!("sync-requested-{suffix}");
    let created = sqs(&endpoint, "CreateQueue", json!({"QueueName": queue})).await;
    let queue_url = created["QueueUrl"].as_str().expect("queue url").to_owned();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let rule = format!("sync-requested-{suffix}");
    events
        .put_rule()
        .name(&rule)
        .event_pattern(
            json!({"source": ["memory-connector"], "detail-type": ["SyncRequested", "ResetRequested"]}).to_string(),
        )
        .send()
        .await
        .expect("put rule");
    events
        .put_targets()
        .rule(&rule)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}"))
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("put targets");

    let table = format!("api-fn-{suffix}");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    store.create_table().await.expect("table");
    let dir = tempfile::tempdir().expect("dir");
    let mut spec = ConfigSpec::new("http://127.0.0.1:9", "http://127.0.0.1:9");
    spec.backend = "dynamodb";
    let yaml = spec.render().replace(
        "api:\n  enabled: false\n",
        &format!("api:\n  enabled: true\n  enable_auth: true\n  api_key: \"{KEY}\"\n"),
    );
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, yaml).expect("config");
    let vars = HashMap::from([("STATE_TABLE".to_owned(), table), ("MEMORY_API_KEY".to_owned(), "unused".to_owned())]);
    let router = api_router(FunctionSettings { config_path, vars, sdk, safety_margin: Duration::from_secs(5) })
        .await
        .expect("cold start");

    let (status, _) = call(&router, "GET", "/connectors/personal-memories/status", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the key is required");
    let (status, body) = call(&router, "GET", "/connectors/personal-memories/status", Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connector_id"], json!("personal-memories"));
    let (status, health) = call(&router, "GET", "/health", None).await;
    assert_eq!((status, health["status"].clone()), (StatusCode::OK, json!("healthy")));

    let (status, body) = call(&router, "POST", "/connectors/personal-memories/trigger", Some(KEY)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run_id = body["run_id"].as_str().expect("run id").to_owned();

    // Read the event back from the queue the rule feeds.
    let mut message = None;
    for _ in 0..10 {
        let received = sqs(
            &endpoint,
            "ReceiveMessage",
            json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
        )
        .await;
        if let Some(first) = received["Messages"].as_array().and_then(|m| m.first()) {
            message = Some(first["Body"].as_str().expect("body").to_owned());
            break;
        }
    }
    let event: Value =
        serde_json::from_str(&message.expect("a SyncRequested event reached the queue")).expect("event json");
    assert_eq!(event["detail-type"], json!("SyncRequested"));
    assert_eq!(event["source"], json!("memory-connector"));
    let request = parse_sync_event(&event).expect("the sync function understands it");
    assert_eq!(request.connector_id, ConnectorId::new("personal-memories"));
    assert_eq!(request.run_id, Some(RunId::new(run_id)), "the run keeps the id the API answered");

    // A reset is handed to the cleanup function: 202, and a ResetRequested
    // event on the bus (the queue's rule matches it too).
    let (status, body) = call(&router, "POST", "/connectors/personal-memories/reset", Some(KEY)).await;
    assert_eq!((status, body["reset"].clone()), (StatusCode::ACCEPTED, json!("accepted")), "{body}");
    let mut reset = None;
    for _ in 0..10 {
        let received = sqs(
            &endpoint,
            "ReceiveMessage",
            json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
        )
        .await;
        if let Some(first) = received["Messages"].as_array().and_then(|m| m.first()) {
            reset = Some(first["Body"].as_str().expect("body").to_owned());
            break;
        }
    }
    let reset: Value = serde_json::from_str(&reset.expect("a ResetRequested event reached the queue")).expect("json");
    assert_eq!(reset["detail-type"], json!(connector_core::serverless::RESET_REQUESTED));
    assert_eq!(reset["detail"]["connector_id"], json!("personal-memories"));

    // While a run holds the lease, trigger answers 409.
    let holder = RunId::generate(chrono::Utc::now());
    let lease = store
        .try_acquire_lease(&ConnectorId::new("personal-memories"), &holder, chrono::Utc::now(), Duration::from_secs(60))
        .await
        .expect("lease");
    assert!(matches!(lease, LeaseOutcome::Acquired(_)));
    let (status, body) = call(&router, "POST", "/connectors/personal-memories/trigger", Some(KEY)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = call(&router, "POST", "/connectors/personal-memories/reset", Some(KEY)).await;
    assert_eq!(status, StatusCode::CONFLICT, "a reset is refused while a run holds the lease: {body}");

    // The look-ups: a LightRAG name resolves through the table's `name`
    // index; LightRAG itself (nothing listens at its URL) answers 502.
    let at = chrono::DateTime::parse_from_rfc3339("2025-12-18T14:30:00Z").expect("time").to_utc();
    let entry = LedgerEntry {
        memory_id: "42".into(),
        status: EntryStatus::Processed,
        content_hash: Some("c".repeat(64).into()),
        pending_hash: None,
        file_source: "memory_CTX123_42.txt".into(),
        doc_id: None,
        track_id: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        first_seen: at,
        last_ingested: Some(at),
        provenance: Some(Provenance {
            context_id: "CTX123".into(),
            kind: Some("record".into()),
            created_at: Some(at),
            updated_at: None,
            location: None,
            place: None,
            tags: vec!["sourdough".into()],
            audio: true,
            image: false,
            headline: Some("Met Anna at the bakery".into()),
        }),
    };
    let connector = ConnectorId::new("personal-memories");
    store.checkpoint(&connector, Checkpoint { entries: vec![entry], ..Default::default() }).await.expect("ledger");
    let (status, body) = call(&router, "GET", "/lookup/resolve?name=memory_CTX123_42.txt", Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["memories"][0]["memory_id"], json!("42"));
    assert_eq!(body["memories"][0]["created_at"], json!("2025-12-18T14:30:00Z"));
    assert_eq!(body["memories"][0]["audio_url"], json!("http://127.0.0.1:9/memory/CTX123/42/audio"));
    let (status, body) = call(&router, "GET", "/lookup/by-entity?name=Anna", Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("http://127.0.0.1:9")), "{body}");

    // The web console through API Gateway (https, its own host name): the
    // login sets a `Secure`, `__Host-` cookie; pages and actions work with it.
    console_through_api_gateway(&router, &store).await;
}

/// One request as API Gateway hands it over; status, headers, body text.
async fn gateway(
    router: &axum::Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "abc123.execute-api.us-east-1.amazonaws.com")
        .header("x-forwarded-proto", "https");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let body = match form {
        Some(form) => {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            Body::from(form)
        }
        None => Body::empty(),
    };
    let answer = router.clone().oneshot(request.body(body).expect("request")).await.expect("answer");
    let (status, headers) = (answer.status(), answer.headers().clone());
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.expect("body");
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

async fn console_through_api_gateway(router: &axum::Router, store: &DynamoStore) {
    let (status, headers, _) = gateway(router, "GET", "/", None, None).await;
    assert_eq!((status, headers["location"].to_str().expect("ascii")), (StatusCode::SEE_OTHER, "./login"));
    let (status, _, page) = gateway(router, "POST", "/login", None, Some("key=wrong".into())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    let (status, headers, _) = gateway(router, "POST", "/login", None, Some(format!("key={KEY}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = headers["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(set_cookie.starts_with("__Host-mc_session=") && set_cookie.ends_with("; Secure"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("cookie").to_owned();
    let (status, _, page) = gateway(router, "GET", "/", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("personal-memories") && page.contains("running"), "the lease shows: {page}");
    let (status, _, page) = gateway(router, "GET", "/console/personal-memories", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let marker = "name=\"csrf\" value=\"";
    let token = page[page.find(marker).expect("a form") + marker.len()..].split('"').next().expect("token").to_owned();
    let form = format!("csrf={token}");
    let path = "/console/personal-memories/pause";
    let (status, headers, page) = gateway(router, "POST", path, Some(&cookie), Some(form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(headers["location"], "../personal-memories?done=paused");
    let state = store.connector_state(&ConnectorId::new("personal-memories")).await.expect("state");
    assert!(state.is_some_and(|s| s.paused));
    let (status, _, _) = gateway(router, "POST", path, Some(&cookie), Some(String::new())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
}
