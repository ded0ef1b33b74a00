//! `cleanup` Lambda: retention of run history on `cleanup_cron`.

use cleanup_function::handler;
use connector_core::serverless::{CleanupFunction, FunctionSettings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let function = Arc::new(CleanupFunction::init(FunctionSettings::from_process().await).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = Arc::clone(&function);
        async move { handler(&function, event).await }
    }))
    .await
}
