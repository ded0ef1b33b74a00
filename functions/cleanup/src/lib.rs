//! The `cleanup` Lambda's handler (scheduled on `state.cleanup.cleanup_cron`):
//! history retention, decided in `connector_core::serverless`.

use connector_core::serverless::CleanupFunction;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

/// Applies retention on the schedule's events; resets a connector on a
/// `ResetRequested` event (put by the api function).
pub async fn handler(function: &CleanupFunction, event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(function.handle_classified(&event.payload).await?)
}
