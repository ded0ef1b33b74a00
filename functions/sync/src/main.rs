//! `sync` Lambda: a scheduled, `SyncRequested` or direct event -> one sync
//! run. Cold start builds everything once (config, secrets, AWS clients).

use connector_core::serverless::{FunctionSettings, SyncFunction};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

// One thread: a sync waits on the network; on a fraction of a vCPU the
// multi-thread runtime's cross-thread wake-ups only cost billed CPU
// (decision 0015).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let function = Arc::new(SyncFunction::init(FunctionSettings::from_process().await).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = Arc::clone(&function);
        async move { sync_function::handler(&function, event).await }
    }))
    .await
}
