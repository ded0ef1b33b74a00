//! `api` Lambda: API Gateway (HTTP API) -> the same management router as
//! `serve`, over the DynamoDB store; `trigger` puts a `SyncRequested` event on
//! EventBridge instead of running in-process. Cold start builds it once; a
//! config it cannot serve with answers 503 (`/health`: degraded), see
//! `connector_core::serverless::api_function`.

use connector_core::serverless::{FunctionSettings, api_function};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let router = api_function(FunctionSettings::from_process().await).await?;
    lambda_http::run(router).await
}
