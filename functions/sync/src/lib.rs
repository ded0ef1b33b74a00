//! The `sync` Lambda's handler: the runtime's event and context in, one
//! sync run out. All decisions are in `connector_core::serverless`.

use connector_core::serverless::SyncFunction;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use std::time::SystemTime;

/// Runs the event's sync with the invocation's remaining time: one event,
/// or each message of an SQS batch (answered with the failed ones). `Err`
/// (the invocation fails, an async invoke is retried) only for retryable
/// failures; the lease keeps a retry from starting a second run.
pub async fn handler(function: &SyncFunction, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let remaining = event.context.deadline().duration_since(SystemTime::now()).ok();
    Ok(function.handle_invocation(&event.payload, remaining).await?)
}
