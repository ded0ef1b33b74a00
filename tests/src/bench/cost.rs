//! Figure 8's prices: the DynamoDB units of a run come from the cost model
//! (`connector_core::state::cost::model::CostModel`, around the real SQLite
//! store while the real engine runs in-process); here they are priced with
//! the run's Lambda time and what else a scheduled run pays for.
//!
//! Per hourly run (720 a month), a scheduled Lambda invocation: its GB-seconds
//! at 128 MB and the request, the DynamoDB units, one `GetSecretValue` per
//! secret the function reads (a cold start each run, the worst case), and
//! the CloudWatch Logs ingestion of what the run logs. EventBridge scheduled
//! rules are free. A secret's monthly fee is the stack's, not a connector's.

pub use connector_core::state::cost::model::CostModel;
pub use connector_core::state::cost::{DYNAMODB_USD_PER_RRU, DYNAMODB_USD_PER_WRU, Units};
use serde::Serialize;

/// Prices used (AWS us-east-1, November 2026 list prices).
pub const LAMBDA_USD_PER_GB_S: f64 = 0.000_016_666_7;
pub const LAMBDA_USD_PER_REQUEST: f64 = 0.20 / 1e6;
pub const LAMBDA_MEMORY_GB: f64 = 128.0 / 1024.0;
pub const SECRETS_USD_PER_CALL: f64 = 0.05 / 10_000.0;
pub const LOGS_USD_PER_GB: f64 = 0.50;
/// Secrets the `sync` function reads per cold start (Memory API key, LightRAG key).
pub const SECRETS_PER_RUN: u64 = 2;

/// Cost of one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RunCost {
    pub duration_s: f64,
    pub units: Units,
    pub lambda_usd: f64,
    pub dynamodb_usd: f64,
    /// Secrets Manager calls and log ingestion.
    pub other_usd: f64,
}

impl RunCost {
    pub fn new(duration_s: f64, units: Units) -> Self {
        Self::with_logs(duration_s, units, 0)
    }

    /// A scheduled run that logged `log_bytes`.
    pub fn with_logs(duration_s: f64, units: Units, log_bytes: u64) -> Self {
        let lambda_usd = duration_s * LAMBDA_MEMORY_GB * LAMBDA_USD_PER_GB_S + LAMBDA_USD_PER_REQUEST;
        let other_usd = SECRETS_PER_RUN as f64 * SECRETS_USD_PER_CALL + log_bytes as f64 / 1e9 * LOGS_USD_PER_GB;
        Self { duration_s, units, lambda_usd, dynamodb_usd: units.usd(), other_usd }
    }

    pub fn gb_seconds(&self) -> f64 {
        self.duration_s * LAMBDA_MEMORY_GB
    }

    pub fn usd(&self) -> f64 {
        self.lambda_usd + self.dynamodb_usd + self.other_usd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_costs_its_lambda_seconds_units_secrets_and_logs() {
        let cost =
            RunCost::with_logs(1.0, Units { read_units: 1_000_000, write_units: 1_000_000, calls: 2 }, 1_000_000);
        assert!((cost.dynamodb_usd - 0.75).abs() < 1e-9);
        assert!((cost.lambda_usd - (0.125 * LAMBDA_USD_PER_GB_S + 0.2e-6)).abs() < 1e-12);
        assert!((cost.other_usd - (2.0 * 5e-6 + 0.0005)).abs() < 1e-12);
    }
}
