//! The cost model (`state::cost::model`) against DynamoDB Local: here, above
//! both, because the workload is the sync engine's own (`state` does not
//! import `sync`).

use super::RunOptions;
use super::testing::{self, Page, Sink, memory};
use crate::state::StateStore;
use crate::state::cost::Units;
use crate::state::cost::model::CostModel;
use crate::state::dynamodb::DynamoStore;
use std::sync::Arc;

/// The cost model (`state::cost::model`, what the bench's figure 8 prices)
/// counts what the `dynamodb` store really sends: the same engine runs a first sync,
/// a run with nothing changed and a run with 1% edited, once on DynamoDB
/// Local and once on the model over SQLite, and every run's read units,
/// write units and requests agree.
#[tokio::test]
async fn the_cost_model_counts_what_the_store_sends() {
    let test = "sync::cost_tests::the_cost_model_counts_what_the_store_sends";
    let Some(_) = crate::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", test) else { return };
    compare(false).await;
}

/// The same in the deployed shape (LightRAG api mode): `sending` marks
/// before each request, and the next run's confirmation of what the first
/// submitted (a run of its own before the no-op).
#[tokio::test]
async fn the_cost_model_counts_what_the_store_sends_with_confirmation() {
    let test = "sync::cost_tests::the_cost_model_counts_what_the_store_sends_with_confirmation";
    let Some(_) = crate::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", test) else { return };
    compare(true).await;
}

async fn compare(confirming: bool) {
    let client = aws_sdk_dynamodb::Client::new(&crate::aws::sdk_config().await);
    let dynamo = DynamoStore::new(client, format!("cost-{:016x}", fastrand::u64(..)));
    dynamo.create_table().await.expect("create table");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = crate::state::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite");
    let model = Arc::new(CostModel::new(Arc::new(sqlite)));

    let mut memories: Vec<_> = (0..300).map(|i| memory(&format!("memory-{i:04}"), Some("a first text"))).collect();
    // With confirmation, a second run confirms what the first submitted.
    let mut pages = vec![memories.clone(); if confirming { 3 } else { 2 }];
    for i in [11, 150, 299] {
        memories[i].transcript = Some("edited".into());
    }
    pages.push(memories);

    let mut measured: Vec<Vec<Units>> = Vec::new();
    type Meter = Box<dyn Fn() -> Units>;
    let sides: [(Arc<dyn StateStore>, Meter); 2] = [
        (Arc::new(dynamo.clone()), {
            let dynamo = dynamo.clone();
            let seen = std::sync::Mutex::new(Units::default());
            Box::new(move || {
                let now = dynamo.units();
                let mut before = seen.lock().expect("units");
                let delta = Units {
                    read_units: now.read_units - before.read_units,
                    write_units: now.write_units - before.write_units,
                    calls: now.calls - before.calls,
                };
                *before = now;
                delta
            })
        }),
        (model.clone(), {
            let model = model.clone();
            Box::new(move || model.take())
        }),
    ];
    for (store, units) in &sides {
        let page = Page::default();
        let sink = Arc::new(Sink { confirming, ..Sink::default() });
        let engine = testing::engine(Arc::clone(store), &page, &sink, confirming).with_salt(7);
        units();
        let mut runs = Vec::new();
        for memories in &pages {
            page.set(memories.clone());
            let report = engine.run(RunOptions::default()).await.expect("run");
            assert!(report.error.is_none(), "{report:?}");
            runs.push(units());
        }
        measured.push(runs);
    }
    let (store, model) = (&measured[0], &measured[1]);
    let names: &[&str] = if confirming {
        &["first sync", "confirming run", "no-op", "1% edited"]
    } else {
        &["first sync", "no-op", "1% edited"]
    };
    for (i, name) in names.iter().enumerate() {
        assert_eq!(model[i], store[i], "{name}: the model (left) and DynamoDB (right) disagree");
    }
    let (noop, edited) = (store[names.len() - 2], store[names.len() - 1]);
    assert!(noop.read_units <= 8, "a no-op reads almost nothing: {noop:?}");
    assert!(edited.read_units <= 2 * 3 + 8, "1% edited reads what changed: {edited:?}");
}
