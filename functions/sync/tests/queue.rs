//! The `sync` function as the queue's consumer (decision 0025), against
//! moto (SQS FIFO with a dead-letter queue, S3, Secrets Manager), DynamoDB
//! Local and the simulators. The test plays the part of Lambda's event
//! source mapping: it receives from the queue, hands the messages to the
//! handler as an SQS event, and deletes what the handler did not report as
//! failed. Skipped loudly without emulators.
//!
//! What it shows: a schedule's message runs the connector; a connector added
//! by a config upload runs at once although the config's TTL has not passed;
//! a message for a connector the config does not have fails visibly and ends
//! in the dead-letter queue; while one of a connector's messages is in
//! flight its next one is held back (its message group; Lambda's mapping
//! adds one batch per group at a time), and with one group for all, one
//! message at a time.

mod common;

use common::{AwsState, CONNECTOR, MEMORY_KEY, emulators};
use connector_core::config_store::ConfigObject;
use connector_core::ids::ConnectorId;
use connector_core::serverless::{CONFIG_URI_ENV, FunctionSettings, SyncFunction};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sims::harness::ConfigSpec;
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::time::Duration;

const ACCOUNT: &str = "123456789012";

/// One call of moto's SQS JSON protocol.
async fn sqs(action: &str, body: Value) -> Value {
    sims::harness::sqs(&std::env::var("AWS_ENDPOINT_URL").expect("moto"), action, body).await
}

struct Queue {
    url: String,
    arn: String,
}

/// A FIFO queue as the template makes it: content-based deduplication, a
/// FIFO dead-letter queue after `max_receives`; a short visibility timeout here.
async fn fifo_queue(suffix: &str, max_receives: u32, visibility_seconds: u32) -> (Queue, Queue) {
    let make = |name: String, attributes: Value| async move {
        let url = sqs("CreateQueue", json!({"QueueName": name, "Attributes": attributes})).await["QueueUrl"]
            .as_str()
            .expect("queue url")
            .to_owned();
        Queue { url, arn: format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}") }
    };
    let dlq = make(format!("sync-dlq-{suffix}.fifo"), json!({"FifoQueue": "true"})).await;
    let redrive = json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receives}).to_string();
    let queue = make(
        format!("sync-{suffix}.fifo"),
        json!({"FifoQueue": "true", "ContentBasedDeduplication": "true",
               "VisibilityTimeout": visibility_seconds.to_string(), "RedrivePolicy": redrive}),
    )
    .await;
    (queue, dlq)
}

/// What a schedule sends: its input with the scheduled time filled in, in its message group.
async fn send_scheduled(queue: &Queue, connector: &str, group: &str, at: &str) {
    let body = json!({"connector_id": connector, "trigger": "schedule", "scheduled_at": at}).to_string();
    sqs("SendMessage", json!({"QueueUrl": queue.url, "MessageBody": body, "MessageGroupId": group})).await;
}

/// Up to `max` messages as the event source mapping receives them.
async fn receive(queue: &Queue, max: u32) -> Vec<Value> {
    let got = sqs(
        "ReceiveMessage",
        json!({"QueueUrl": queue.url, "MaxNumberOfMessages": max, "WaitTimeSeconds": 1,
               "MessageSystemAttributeNames": ["All"], "AttributeNames": ["All"]}),
    )
    .await;
    got["Messages"].as_array().cloned().unwrap_or_default()
}

/// Received messages as the SQS event Lambda hands to the function.
fn lambda_event(queue: &Queue, messages: &[Value]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs", "eventSourceARN": queue.arn, "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn invocation(payload: Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = format!("req-{:08x}", fastrand::u32(..));
    context.deadline =
        u64::try_from((chrono::Utc::now() + Duration::from_secs(600)).timestamp_millis()).expect("deadline");
    LambdaEvent::new(payload, context)
}

/// One poll of the mapping: receive one message, invoke, delete unless it failed.
/// Answers the ids the function reported as failed.
async fn poll_once(queue: &Queue, function: &SyncFunction) -> Option<Vec<String>> {
    let messages = receive(queue, 1).await;
    if messages.is_empty() {
        return None;
    }
    let answer = sync_function::handler(function, invocation(lambda_event(queue, &messages))).await.expect("handler");
    let failed: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .expect("a batch response")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("id").to_owned())
        .collect();
    for m in &messages {
        if !failed.iter().any(|f| m["MessageId"] == *f) {
            sqs("DeleteMessage", json!({"QueueUrl": queue.url, "ReceiptHandle": m["ReceiptHandle"]})).await;
        }
    }
    Some(failed)
}

fn two_connectors(yaml: &str) -> String {
    yaml.replacen(
        "connectors:\n",
        "connectors:\n  - id: \"second\"\n    context_id: \"CTX123\"\n    schedule: {type: interval, interval_hours: 1}\n",
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_flow_through_the_fifo_queue() {
    if !emulators("sync queue: scheduled_messages_flow_through_the_fifo_queue") {
        return;
    }
    let memory = MemorySim::start(MemorySimOptions { api_key: Some(MEMORY_KEY.into()), ..MemorySimOptions::default() })
        .await
        .expect("memory sim");
    let lightrag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    let mut spec = ConfigSpec::new(&memory.url(), &lightrag.url());
    spec.backend = "dynamodb";
    // A long TTL: only the forced re-read can bring in a new connector.
    spec.extra_yaml = "advanced:\n  performance:\n    enable_caching: true\n    cache_ttl_seconds: 3600\n".into();
    let first = spec.render();

    let aws = AwsState::create(&json!({"MEMORY_API_KEY": MEMORY_KEY})).await;
    let suffix = format!("{:010x}", fastrand::u64(..) >> 24);
    let s3 = connector_core::config_store::client(&aws.sdk);
    s3.create_bucket().bucket(format!("config-{suffix}")).send().await.expect("bucket");
    let object = ConfigObject::new(s3, &format!("s3://config-{suffix}/config.yaml")).expect("uri");
    let v1 = object.put(&first, None).await.expect("upload v1");

    // The layer holds a config without the S3 one's settings: the function must read S3.
    let dir = tempfile::tempdir().expect("dir");
    let layer = dir.path().join("config.yaml");
    std::fs::write(&layer, first.replace("cache_ttl_seconds: 3600", "cache_ttl_seconds: 1")).expect("layer");
    let mut vars = aws.vars();
    vars.insert(CONFIG_URI_ENV.to_owned(), object.uri());
    let settings =
        FunctionSettings { config_path: layer, vars, sdk: aws.sdk.clone(), safety_margin: Duration::from_secs(30) };
    let function = SyncFunction::init(settings).await.expect("cold start");
    let (queue, dlq) = fifo_queue(&suffix, 2, 1).await;
    let store = function.store();

    // A schedule's message: one run, recorded with the schedule as trigger.
    send_scheduled(&queue, CONNECTOR, CONNECTOR, "2026-01-05T09:00:00Z").await;
    assert_eq!(poll_once(&queue, &function).await, Some(vec![]), "the run started");
    let runs = store.runs(&ConnectorId::new(CONNECTOR), 10).await.expect("runs");
    assert_eq!((runs.len(), runs[0].trigger.as_str()), (1, "schedule"));
    assert!(!lightrag.documents().is_empty(), "documents delivered");

    // deploy-config adds a connector; its first message runs although the TTL (1 h) has not passed.
    object.put(&two_connectors(&first), Some(&v1)).await.expect("upload v2");
    send_scheduled(&queue, "second", "second", "2026-01-05T09:00:00Z").await;
    assert_eq!(poll_once(&queue, &function).await, Some(vec![]), "the new connector ran");
    assert_eq!(store.runs(&ConnectorId::new("second"), 10).await.expect("runs").len(), 1);

    // A connector the config does not have: failed each time, then in the dead-letter queue.
    send_scheduled(&queue, "gone", "gone", "2026-01-05T09:00:00Z").await;
    let mut failures = 0;
    let mut in_dlq = Vec::new();
    for _ in 0..20 {
        if let Some(failed) = poll_once(&queue, &function).await {
            assert_eq!(failed.len(), 1, "the message was reported failed");
            failures += 1;
        }
        in_dlq = receive(&dlq, 1).await;
        if !in_dlq.is_empty() {
            break;
        }
    }
    assert_eq!(failures, 2, "delivered maxReceiveCount times");
    let body: Value = serde_json::from_str(in_dlq[0]["Body"].as_str().expect("body")).expect("json");
    assert_eq!(body["connector_id"], "gone", "the failure is kept where it is seen");
    assert_eq!(store.runs(&ConnectorId::new("gone"), 10).await.expect("runs").len(), 0);

    // While one of a connector's messages is in flight, its next one is held back
    // (SQS FIFO); the other connector's message is handed out.
    send_scheduled(&queue, CONNECTOR, CONNECTOR, "2026-01-05T10:00:00Z").await;
    send_scheduled(&queue, CONNECTOR, CONNECTOR, "2026-01-05T11:00:00Z").await;
    send_scheduled(&queue, "second", "second", "2026-01-05T10:00:00Z").await;
    let first = receive(&queue, 1).await;
    assert_eq!(first[0]["Attributes"]["MessageGroupId"], CONNECTOR);
    let others = receive(&queue, 10).await;
    let groups: Vec<&str> = others.iter().map(|m| m["Attributes"]["MessageGroupId"].as_str().expect("group")).collect();
    assert_eq!(groups, ["second"], "the connector's second message waits for its first");
}

/// `max_concurrent_connectors: 1`: every schedule in the one `serial`
/// group, so the queue hands out one message at a time, whatever the
/// consumer's concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_group_hands_out_one_message_at_a_time() {
    if !emulators("sync queue: one_message_group_hands_out_one_message_at_a_time") {
        return;
    }
    let suffix = format!("{:010x}", fastrand::u64(..) >> 24);
    let (queue, _dlq) = fifo_queue(&suffix, 5, 30).await;
    for connector in ["a", "b", "c"] {
        send_scheduled(&queue, connector, "serial", "2026-01-05T09:00:00Z").await;
    }
    let mut order = Vec::new();
    loop {
        let batch = receive(&queue, 1).await;
        if batch.is_empty() {
            break;
        }
        let body: Value = serde_json::from_str(batch[0]["Body"].as_str().expect("body")).expect("json");
        order.push(body["connector_id"].as_str().expect("id").to_owned());
        // Nothing else is handed out while this one is being worked on.
        assert!(receive(&queue, 10).await.is_empty(), "the group is held while {order:?} is in flight");
        sqs("DeleteMessage", json!({"QueueUrl": queue.url, "ReceiptHandle": batch[0]["ReceiptHandle"]})).await;
    }
    assert_eq!(order, ["a", "b", "c"], "in order, one after another");
}
