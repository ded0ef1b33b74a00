//! The AWS SDK configuration every AWS adapter shares (`aws` feature): the
//! default credential/region chain with explicit timeouts, and the emulator
//! switch the tests use.
//!
//! Endpoints come from the SDK's own variables (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, ...), so the same code talks to AWS, to
//! DynamoDB Local, moto or LocalStack without a flag of ours.

pub mod record;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Connecting to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of one call (the SDK retries throttling and 5xx, 3 attempts).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// One call with all its retries.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared SDK configuration: built once (cold start) and cloned into
/// every client.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// For the AWS test group: the emulator endpoint in `variable`, or `None`
/// after saying loudly that `test` is skipped (or failing it under
/// `REQUIRE_EMULATORS=1`: [`crate::test_support`]). `make test` always sets
/// the variables; a plain `cargo test` may not.
#[cfg(any(test, feature = "test-support"))]
pub fn emulator_endpoint(variable: &str, test: &str) -> Option<String> {
    crate::test_support::required_var(
        variable,
        test,
        "no AWS emulator: run `make test`, or cargo test under tests/scripts/aws-emulators.sh run",
    )
}
