//! How a scheduled run reaches `sync` (decision 0025): the schedules, and the
//! `SyncRequested` rule of the management API's trigger, send to one FIFO SQS
//! queue; a Lambda event source mapping hands its messages to `sync` (batch
//! size 1, `ReportBatchItemFailures`), at most `MaximumConcurrency` at once.
//!
//! Each message body is one of the shapes [`super::parse_sync_event`] reads.
//! A message whose run could not start (an AWS error, a connector the config
//! does not have, a body that is not an event) is reported as a batch item
//! failure: SQS delivers it again after the visibility timeout and, after
//! `maxReceiveCount` receives, moves it to the dead-letter queue, where it
//! is seen. In a FIFO batch, the messages after a failed one are failed too
//! (unprocessed), so a message group keeps its order.

use super::FunctionError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::error;

/// One message of an SQS event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessage {
    pub message_id: String,
    pub body: String,
    /// How often SQS has handed this message out (1 on the first delivery).
    pub receive_count: u32,
    pub message_group: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(rename = "Records")]
    records: Vec<RawRecord>,
}

#[derive(Debug, Deserialize)]
struct RawRecord {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(default)]
    body: String,
    #[serde(rename = "eventSource", default)]
    event_source: String,
    #[serde(default)]
    attributes: std::collections::HashMap<String, String>,
}

/// The messages of `event` when it is an SQS event (`None`: another shape).
pub fn sqs_messages(event: &Value) -> Option<Result<Vec<SqsMessage>, String>> {
    let first_source = event.get("Records")?.as_array()?.first()?.get("eventSource")?.as_str()?;
    if first_source != "aws:sqs" {
        return None;
    }
    let raw: RawEvent = match serde_json::from_value(event.clone()) {
        Ok(raw) => raw,
        Err(e) => return Some(Err(format!("an SQS event that does not parse: {e}"))),
    };
    if let Some(other) = raw.records.iter().find(|r| r.event_source != "aws:sqs") {
        return Some(Err(format!("record {} comes from {:?}, not aws:sqs", other.message_id, other.event_source)));
    }
    Some(Ok(raw
        .records
        .into_iter()
        .map(|r| SqsMessage {
            receive_count: r.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1),
            message_group: r.attributes.get("MessageGroupId").cloned(),
            message_id: r.message_id,
            body: r.body,
        })
        .collect()))
}

/// The answer that tells Lambda which messages failed (the others are deleted).
pub fn batch_response(failed: &[String]) -> Value {
    json!({ "batchItemFailures": failed.iter().map(|id| json!({ "itemIdentifier": id })).collect::<Vec<_>>() })
}

/// Runs `handle` on each message's body in order (`remaining`: the
/// invocation's time left at the start); answers the batch response.
pub async fn run_batch<F, Fut>(messages: &[SqsMessage], remaining: Option<Duration>, handle: F) -> Value
where
    F: Fn(Value, Option<Duration>) -> Fut,
    Fut: Future<Output = Result<Value, FunctionError>>,
{
    let started = Instant::now();
    let mut failed = Vec::new();
    for message in messages {
        // FIFO: once one message failed, the rest of its batch waits for it.
        if !failed.is_empty() {
            failed.push(message.message_id.clone());
            continue;
        }
        let left = remaining.map(|r| r.saturating_sub(started.elapsed()));
        let outcome = match serde_json::from_str::<Value>(&message.body) {
            Ok(body) => handle(body, left).await,
            Err(e) => Err(FunctionError::BadEvent(format!("the message body is not JSON: {e}"))),
        };
        if let Err(e) = outcome {
            error!(message_id = %message.message_id, receive_count = message.receive_count,
                   group = ?message.message_group, error = %e,
                   "the run did not start: the message goes back to the queue (then to its dead-letter queue)");
            failed.push(message.message_id.clone());
        }
    }
    batch_response(&failed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An SQS event as Lambda delivers it from a FIFO queue (AWS's documented shape).
    pub(crate) fn sqs_event(bodies: &[(&str, &str)]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .map(|(id, body)| {
                json!({
                    "messageId": id,
                    "receiptHandle": format!("handle-{id}"),
                    "body": body,
                    "attributes": {
                        "ApproximateReceiveCount": "2",
                        "SentTimestamp": "1767225600000",
                        "SequenceNumber": "18849496460467696128",
                        "MessageGroupId": "personal-memories",
                        "SenderId": "AROAEXAMPLE:scheduler",
                        "MessageDeduplicationId": "0f3c",
                        "ApproximateFirstReceiveTimestamp": "1767225600010"
                    },
                    "messageAttributes": {},
                    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:memory-connector-sync.fifo",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        json!({ "Records": records })
    }

    #[test]
    fn reads_sqs_events_and_leaves_other_shapes_alone() {
        let event = sqs_event(&[("m1", r#"{"connector_id":"a","trigger":"schedule"}"#), ("m2", "not json")]);
        let messages = sqs_messages(&event).expect("an SQS event").expect("parses");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].message_id, "m1");
        assert_eq!(messages[0].receive_count, 2);
        assert_eq!(messages[0].message_group.as_deref(), Some("personal-memories"));
        assert_eq!(messages[1].body, "not json");
        for other in [
            json!({"connector_id": "a"}),
            json!({"Records": []}),
            json!({"Records": [{"eventSource": "aws:s3"}]}),
            json!({"detail-type": "SyncRequested", "detail": {"connector_id": "a"}}),
        ] {
            assert!(sqs_messages(&other).is_none(), "{other}");
        }
        let broken = json!({"Records": [{"eventSource": "aws:sqs"}]});
        assert!(sqs_messages(&broken).expect("SQS").is_err(), "no messageId");
    }

    /// A failed message fails the rest of its FIFO batch; a body that is not
    /// JSON fails without reaching the handler; an answered run is a success.
    #[tokio::test]
    async fn a_failure_fails_the_rest_of_the_batch() {
        let body = r#"{"connector_id":"a"}"#;
        let event = sqs_event(&[("ok", body), ("bad-json", "{"), ("after", body)]);
        let messages = sqs_messages(&event).unwrap().unwrap();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let answer = run_batch(&messages, Some(Duration::from_secs(60)), |_, left| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(left.is_some_and(|l| l <= Duration::from_secs(60)));
            async { Ok(json!({"status": "completed"})) }
        })
        .await;
        assert_eq!(answer, batch_response(&["bad-json".into(), "after".into()]));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "nothing after the failure ran");
        let unknown = run_batch(&messages[..1], None, |_, _| async {
            Err(FunctionError::UnknownConnector(crate::ids::ConnectorId::new("a")))
        })
        .await;
        assert_eq!(unknown, batch_response(&["ok".into()]), "an unknown connector is a failed message");
    }

    #[test]
    fn batch_response_names_the_failed_messages() {
        assert_eq!(batch_response(&[]), json!({"batchItemFailures": []}));
        assert_eq!(
            batch_response(&["m2".into(), "m3".into()]),
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]})
        );
    }
}
