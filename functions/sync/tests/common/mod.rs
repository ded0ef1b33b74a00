//! What the `sync` function's tests share: the emulator check, a fresh
//! DynamoDB table and Secrets Manager secret, and the checks on the state.

#![allow(dead_code)] // each test file uses its own part

use connector_core::ids::ConnectorId;
use connector_core::state::StateStore;
use connector_core::state::dynamodb::DynamoStore;
use serde_json::Value;
use sims::lightrag_sim::{LightragSim, SimRoute};
use std::collections::{HashMap, HashSet};

pub const CONNECTOR: &str = "personal-memories";
pub const MEMORY_KEY: &str = "mem-key-from-secrets-manager";

/// Both emulators are there (`tests/scripts/aws-emulators.sh run`), or the
/// test says loudly that it is SKIPPED.
pub fn emulators(test: &str) -> bool {
    connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", test).is_some()
        && connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL", test).is_some()
}

/// A fresh table in DynamoDB Local and `secret` (a JSON object of
/// variables) in moto's Secrets Manager.
pub struct AwsState {
    pub sdk: aws_config::SdkConfig,
    pub table: String,
    pub secret_arn: String,
}

impl AwsState {
    pub async fn create(secret: &Value) -> Self {
        let sdk = connector_core::aws::sdk_config().await;
        let suffix = format!("{:012x}", fastrand::u64(..) >> 16);
        let table = format!("sync-fn-{suffix}");
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table).create_table().await.expect("create table");
        let created = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(format!("memory-connector/{suffix}"))
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("create secret in moto");
        let secret_arn = created.arn.expect("secret arn");
        Self { sdk, table, secret_arn }
    }

    /// The function's environment: the table and the secret's ARN.
    pub fn vars(&self) -> HashMap<String, String> {
        HashMap::from([
            ("STATE_TABLE".to_owned(), self.table.clone()),
            ("CONNECTOR_SECRETS_SECRET_ARN".to_owned(), self.secret_arn.clone()),
        ])
    }

    /// The table, read as the functions read it.
    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), &self.table)
    }
}

/// Ledger entries in a delivered status.
pub async fn delivered(store: &dyn StateStore) -> u64 {
    let counts = store.status_counts(&ConnectorId::new(CONNECTOR)).await.expect("counts");
    connector_core::state::EntryCounts::from_sparse(counts).processed()
}

pub fn assert_no_duplicates(lightrag: &LightragSim) {
    let docs = lightrag.documents();
    let names: HashSet<_> = docs.iter().map(|d| d.file_path.clone()).collect();
    assert_eq!(names.len(), docs.len(), "no memory was sent twice");
    assert_eq!(lightrag.request_count(SimRoute::Insert), docs.len(), "one insert per document, no re-sends");
}
