//! The `cleanup` Lambda's handler (scheduled on `state.cleanup.cleanup_cron`):
//! history retention, decided in `connector_core::serverless`.

use connector_core::serverless::CleanupFunction;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

/// Applies retention; the event's content is not used (any schedule event).
pub async fn handler(function: &CleanupFunction, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(function.handle_classified().await?)
}
