//! The DynamoDB store against DynamoDB Local (`AWS_ENDPOINT_URL_DYNAMODB`,
//! set by `make test`); skipped loudly without it.

use super::*;
use crate::aws::record::CallRecorder;
use crate::state::conformance::{self, StoreFactory};
use crate::state::recorded::RecordedStore;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use chrono::TimeDelta;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A client of DynamoDB Local; with the AWS call recorder on, these tests
/// stand for the store in the template check (what each store method sends).
async fn client(test: &str) -> Option<Client> {
    crate::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", test)?;
    let recorder = recorder();
    Some(crate::aws::record::dynamodb(&crate::aws::sdk_config().await, recorder.as_ref()))
}

fn recorder() -> Option<CallRecorder> {
    CallRecorder::from_env(crate::aws::record::STORE_ROLE, &std::collections::HashMap::new())
}

fn table_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", fastrand::u64(..))
}

fn factory(client: Client, fixed: Option<String>) -> StoreFactory {
    Box::new(move || {
        let client = client.clone();
        let table = fixed.clone().unwrap_or_else(|| table_name("conformance"));
        Box::pin(async move {
            let store = DynamoStore::new(client, table);
            store.create_table().await.expect("create table");
            RecordedStore::wrap(Arc::new(store), recorder().as_ref())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(client) = client("dynamodb::conformance").await else { return };
    conformance::run_all(&factory(client, None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_across_clients() {
    let Some(client) = client("dynamodb::persistence_across_clients").await else { return };
    conformance::check_persistence(&factory(client, Some(table_name("persist")))).await;
}

fn entry(id: String) -> LedgerEntry {
    LedgerEntry {
        memory_id: MemoryId::new(id.clone()),
        status: EntryStatus::Submitted,
        content_hash: Some(format!("{:0>64}", 7).into()),
        pending_hash: None,
        file_source: format!("memory_{id}.txt"),
        doc_id: Some(format!("doc-{id}").into()),
        track_id: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        first_seen: DateTime::<Utc>::from_timestamp_millis(1_770_000_000_000).unwrap_or_default(),
        last_ingested: None,
        provenance: None,
    }
}

/// A checkpoint of 250 entries (> 100 per transaction) lands whole, is read
/// back with BatchGetItem in 100-key chunks (duplicates in the request are
/// fine), and stays fenced by the lease in every part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_checkpoints_are_split_and_fenced() {
    let Some(client) = client("dynamodb::large_checkpoints_are_split_and_fenced").await else { return };
    let store = DynamoStore::new(client, table_name("large")).with_history_ttl(Duration::from_secs(86_400));
    store.create_table().await.expect("create table");
    let c = ConnectorId::new("big");
    let owner = RunId::new("run-1");
    let now = Utc::now();
    assert!(matches!(
        store.try_acquire_lease(&c, &owner, now, Duration::from_secs(60)).await.expect("acquire"),
        LeaseOutcome::Acquired(_)
    ));
    let entries: Vec<_> = (0..250).map(|i| entry(format!("m{i:03}"))).collect();
    let run = RunRecord {
        run_id: owner.clone(),
        connector_id: c.clone(),
        trigger: crate::state::Trigger::Cli,
        started_at: DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or_default(),
        finished_at: None,
        status: crate::state::RunStatus::Running,
        counts: Default::default(),
        possibly_truncated: false,
        error: None,
    };
    store
        .checkpoint(
            &c,
            Checkpoint {
                entries: entries.clone(),
                connector: None,
                run: Some(run.clone()),
                lease_owner: Some(owner.clone()),
                digest: None,
                marks: Vec::new(),
            },
        )
        .await
        .expect("checkpoint of 250 entries");
    let mut ids: Vec<_> = entries.iter().map(|e| e.memory_id.clone()).collect();
    ids.extend(ids.clone()); // duplicates
    ids.push(MemoryId::new("absent"));
    let found = store.entries(&c, &ids).await.expect("batch get");
    assert_eq!(found.len(), 250, "every entry of the split checkpoint was written and read back");
    assert_eq!(found.get(&MemoryId::new("m249")), entries.last());
    assert_eq!(store.status_counts(&c).await.expect("counts").get(&EntryStatus::Submitted), Some(&250));

    // The run record carries the TTL attribute: started + retention.
    let item = store.get(&c, &run_sk(run.started_at, &owner), "GetItem").await.expect("get").expect("run item");
    let expire = item.get(TTL_ATTRIBUTE).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    assert_eq!(expire, Some(run.started_at.timestamp() + 86_400), "TTL attribute on the run record");

    // Another run takes the expired lease: every part of a big checkpoint is refused.
    let later = now + TimeDelta::seconds(61);
    store.try_acquire_lease(&c, &RunId::new("run-2"), later, Duration::from_secs(60)).await.expect("take over");
    let more: Vec<_> = (0..150).map(|i| entry(format!("n{i:03}"))).collect();
    let refused = store
        .checkpoint(&c, Checkpoint { entries: more, lease_owner: Some(owner.clone()), ..Checkpoint::default() })
        .await;
    assert!(matches!(refused, Err(StateError::LeaseLost { .. })), "fenced: {refused:?}");
    assert!(store.entries(&c, &[MemoryId::new("n000"), MemoryId::new("n149")]).await.expect("get").is_empty());
}

/// A checkpoint of a run record alone (no entries, no state) is fenced by a
/// lease condition check in its transaction: written while the lease is
/// held, refused once another run took it. (Through the recording wrapper:
/// the template check sees the `ConditionCheckItem` it needs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_record_alone_is_fenced_by_the_lease() {
    let Some(client) = client("dynamodb::a_run_record_alone_is_fenced_by_the_lease").await else { return };
    let inner = DynamoStore::new(client, table_name("fence"));
    inner.create_table().await.expect("create table");
    let store = RecordedStore::wrap(Arc::new(inner), recorder().as_ref());
    let c = ConnectorId::new("fenced");
    let owner = RunId::new("run-1");
    let now = Utc::now();
    store.try_acquire_lease(&c, &owner, now, Duration::from_secs(60)).await.expect("acquire");
    let run = |status| RunRecord {
        run_id: owner.clone(),
        connector_id: c.clone(),
        trigger: crate::state::Trigger::Cli,
        started_at: DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or_default(),
        finished_at: None,
        status,
        counts: Default::default(),
        possibly_truncated: false,
        error: None,
    };
    let only_run =
        |status| Checkpoint { run: Some(run(status)), lease_owner: Some(owner.clone()), ..Checkpoint::default() };
    store.checkpoint(&c, only_run(crate::state::RunStatus::Running)).await.expect("written under the lease");
    assert_eq!(store.runs(&c, 10).await.expect("runs").len(), 1);

    let later = now + TimeDelta::seconds(61);
    store.try_acquire_lease(&c, &RunId::new("run-2"), later, Duration::from_secs(60)).await.expect("take over");
    let refused = store.checkpoint(&c, only_run(crate::state::RunStatus::Completed)).await;
    assert!(matches!(refused, Err(StateError::LeaseLost { .. })), "fenced: {refused:?}");
    let runs = store.runs(&c, 10).await.expect("runs");
    assert_eq!(runs[0].status, crate::state::RunStatus::Running, "the refused record was not written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_a_clear_error() {
    let Some(client) = client("dynamodb::a_missing_table_is_a_clear_error").await else { return };
    let store = DynamoStore::new(client, "no-such-table");
    let error = store.connector_state(&ConnectorId::new("x")).await.expect_err("no table");
    let text = error.to_string();
    assert!(text.contains("dynamodb:no-such-table") && text.contains("GetItem"), "{text}");
}

/// Listing entries by status reads what it finds (through the `open`
/// index), not the ledger: 400 settled entries and 4 failed or dead ones
/// cost 4 index items and 4 look-ups, where a query of the ledger read all 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_by_status_reads_what_it_finds() {
    let Some(client) = client("dynamodb::listing_by_status_reads_what_it_finds").await else { return };
    let store = DynamoStore::new(client, table_name("open"));
    store.create_table().await.expect("create table");
    let c = ConnectorId::new("open");
    let mut entries: Vec<_> = (0..403).map(|i| entry(format!("m{i:03}"))).collect();
    for (i, e) in entries.iter_mut().enumerate() {
        e.status = match i % 200 {
            7 => EntryStatus::Failed,
            8 => EntryStatus::Dead,
            _ if i % 2 == 0 => EntryStatus::Processed,
            _ => EntryStatus::WaitingTranscript,
        };
    }
    store.checkpoint(&c, Checkpoint { entries: entries.clone(), ..Default::default() }).await.expect("checkpoint");
    let failed: Vec<String> =
        entries.iter().filter(|e| e.status == EntryStatus::Failed).map(|e| e.memory_id.to_string()).collect();
    assert_eq!(failed, ["m007", "m207"]);

    let before = store.items_read();
    let found = store.entries_with_status(&c, &[EntryStatus::Failed, EntryStatus::Dead], 100).await.expect("list");
    let ids: Vec<&str> = found.iter().map(|e| e.memory_id.as_str()).collect();
    assert_eq!(ids, ["m007", "m008", "m207", "m208"]);
    assert_eq!(found[0], entries[7], "entries come back whole");
    assert_eq!(store.items_read() - before, 8, "4 index items + 4 consistent look-ups");

    let before = store.items_read();
    let limited = store.entries_with_status(&c, &[EntryStatus::Failed, EntryStatus::Dead], 3).await.expect("list");
    assert_eq!(limited.iter().map(|e| e.memory_id.as_str()).collect::<Vec<_>>(), ["m007", "m008", "m207"]);
    assert!(store.items_read() - before <= 9, "at most `limit` index items per status");

    // The counts are one item, whatever the ledger's size.
    let before = store.items_read();
    let counts = store.status_counts(&c).await.expect("counts");
    assert_eq!(store.items_read() - before, 1);
    let expected = BTreeMap::from([
        (EntryStatus::Failed, 2),
        (EntryStatus::Dead, 2),
        (EntryStatus::Processed, 200),
        (EntryStatus::WaitingTranscript, 199),
    ]);
    assert_eq!(counts, expected);

    // Settled and submitted entries are not indexed: asking for them reads the ledger.
    let before = store.items_read();
    let processed = store.entries_with_status(&c, &[EntryStatus::Processed], 1000).await.expect("list");
    assert_eq!(processed.len(), 200);
    assert_eq!(store.items_read() - before, 403);
}

/// Listing a status the `open` index does not hold (after an interrupted
/// run: `submitted` and `sending`) reads the ledger a page at a time and
/// stops at the page where it has found `limit` entries: a large ledger is
/// never held in memory whole, and is not read past what was asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_an_unindexed_status_reads_the_ledger_a_page_at_a_time() {
    let Some(client) = client("dynamodb::listing_an_unindexed_status_reads_the_ledger_a_page_at_a_time").await else {
        return;
    };
    let store = DynamoStore::new(client, table_name("pages"));
    store.create_table().await.expect("create table");
    let c = ConnectorId::new("pages");
    // ~3 KB each: a Query page (1 MB) holds about a third of them.
    let mut entries: Vec<_> = (0..1000)
        .map(|i| LedgerEntry {
            status: EntryStatus::Processed,
            last_error: Some("x".repeat(3000)),
            ..entry(format!("m{i:04}"))
        })
        .collect();
    entries[0].status = EntryStatus::Sending;
    entries[999].status = EntryStatus::Submitted;
    store.checkpoint(&c, Checkpoint { entries, ..Default::default() }).await.expect("checkpoint");

    let before = store.items_read();
    let first = store.entries_with_status(&c, &[EntryStatus::Submitted, EntryStatus::Sending], 1).await.expect("list");
    assert_eq!(first.iter().map(|e| e.memory_id.as_str()).collect::<Vec<_>>(), ["m0000"]);
    let read = store.items_read() - before;
    assert!(read < 500, "stops at the first page that has the one asked for: read {read} of 1000");

    let all = store.entries_with_status(&c, &[EntryStatus::Submitted, EntryStatus::Sending], 10).await.expect("list");
    assert_eq!(all.iter().map(|e| e.memory_id.as_str()).collect::<Vec<_>>(), ["m0000", "m0999"], "every page read");
}

/// Pruning history deletes a page of run keys at a time, so years of runs
/// without a TTL (cleanup switched on late) are never held at once in the
/// cleanup function; every run before the cut goes, the newer ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_runs_goes_a_page_at_a_time() {
    let Some(client) = client("dynamodb::pruning_runs_goes_a_page_at_a_time").await else { return };
    let store = DynamoStore::new(client, table_name("prune"));
    store.create_table().await.expect("create table");
    let c = ConnectorId::new("prune");
    let start = DateTime::<Utc>::from_timestamp(1_770_000_000, 0).unwrap_or_default();
    for i in 0..9 {
        let run = crate::state::conformance::data::run("prune", &format!("r{i}"), start + TimeDelta::hours(i));
        store.checkpoint(&c, Checkpoint { run: Some(run), ..Default::default() }).await.expect("run");
    }
    let before = store.items_read();
    assert_eq!(store.prune_runs_paged(&c, start + TimeDelta::hours(7), 3).await.expect("prune"), 7);
    // 3 + 3 + 1 keys, then an empty page: what it held was at most a page.
    assert_eq!(store.items_read() - before, 7);
    let left: Vec<String> = store.runs(&c, 10).await.expect("runs").into_iter().map(|r| r.run_id.to_string()).collect();
    assert_eq!(left, ["r8", "r7"]);
}

/// Two writers change the same entries at once (a run's checkpoint and a
/// `retry-failed`, neither fenced here): each entry put is conditional on the
/// status its count change assumed, so the loser re-reads and the counts
/// always match the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_the_counts_exact() {
    let Some(client) = client("dynamodb::concurrent_writers_keep_the_counts_exact").await else { return };
    let store = DynamoStore::new(client, table_name("counts"));
    store.create_table().await.expect("create table");
    let c = ConnectorId::new("racy");
    let batch = |status: EntryStatus, from: usize| -> Checkpoint {
        let entries = (from..from + 30).map(|i| LedgerEntry { status, ..entry(format!("m{:02}", i % 40)) }).collect();
        Checkpoint { entries, ..Default::default() }
    };
    for round in 0..8 {
        let (one, two) = tokio::join!(
            store.checkpoint(&c, batch(EntryStatus::Failed, round)),
            store.checkpoint(&c, batch(EntryStatus::Processed, round + 10)),
        );
        one.expect("first writer");
        two.expect("second writer");
        let ids: Vec<MemoryId> = (0..40).map(|i| MemoryId::new(format!("m{i:02}"))).collect();
        let mut recount: BTreeMap<EntryStatus, u64> = BTreeMap::new();
        for entry in store.entries(&c, &ids).await.expect("entries").values() {
            *recount.entry(entry.status).or_default() += 1;
        }
        assert_eq!(store.status_counts(&c).await.expect("counts"), recount, "round {round}");
    }
}

/// The template's table has the `name` index `create_table` makes, keyed
/// on the entries' own attribute. (What each function's role may do with
/// it is checked against the recorded calls: serverless::template_check.)
#[test]
fn the_template_table_has_the_name_index_the_store_makes() {
    let template = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml"));
    let table: String = template
        .lines()
        .skip_while(|l| *l != "  StateTable:")
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        table.contains(&format!("- IndexName: {NAME_INDEX}"))
            && table.contains(&format!("{{ AttributeName: {NAME_KEY}, KeyType: HASH }}"))
            && table.contains(&format!("{{ AttributeName: {NAME_KEY}, AttributeType: S }}")),
        "the template's table lacks the name index: {table}"
    );
}

/// Decision 0022: a ledger entry with a typical provenance record still
/// costs one write unit (the item stays under 1 KB), and the `name` index
/// costs one more when an entry is first written, none when it is
/// rewritten under the same name. DynamoDB Local reports the consumed
/// capacity of a `PutItem` per table and index, from the items' sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typical_provenance_record_keeps_an_entry_in_one_write_unit() {
    let Some(client) = client("dynamodb::a_typical_provenance_record_keeps_an_entry_in_one_write_unit").await else {
        return;
    };
    let store = DynamoStore::new(client, table_name("wcu"));
    store.create_table().await.expect("create table");
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let plain = LedgerEntry {
        memory_id: MemoryId::new("1234567890"),
        status: EntryStatus::Processed,
        content_hash: Some(format!("{:0>64}", "9f2c").into()),
        file_source: "memory_CTX123_1234567890.txt".into(),
        doc_id: Some("doc-0f343b0931126a20f133d67c2b018a3b".into()),
        track_id: Some("insert_20251218_143000_4d2f9a1c".into()),
        first_seen: at(1_766_068_200_000),
        last_ingested: Some(at(1_766_068_201_000)),
        ..entry("1234567890".into())
    };
    let headline = "Met Anna at the bakery on Torstraße, she recommended the sourdough and the rye, ".repeat(2);
    let typical = crate::state::Provenance {
        context_id: "CTX123".into(),
        kind: Some("record".into()),
        created_at: Some(at(1_766_068_200_000)),
        updated_at: Some(at(1_766_068_510_000)),
        location: Some(crate::memory_api::GeoPoint { lat: 52.520_008, lon: 13.404_954 }),
        place: Some("Bäckerei Anna, Torstraße 12, Mitte, 10119 Berlin, Deutschland".into()),
        tags: vec!["sourdough".into(), "bakery".into(), "weekend".into()],
        audio: true,
        image: true,
        headline: Some(format!("{}…", headline.chars().take(99).collect::<String>())),
    };
    let with = LedgerEntry {
        memory_id: MemoryId::new("1234567891"),
        file_source: "memory_CTX123_1234567891.txt".into(),
        provenance: Some(typical),
        ..plain.clone()
    };
    let rewritten = LedgerEntry { status: EntryStatus::Submitted, ..with.clone() };
    let c = ConnectorId::new("personal-memories");
    let mut units = Vec::new();
    for entry in [&plain, &with, &rewritten] {
        let item = store.item_of("ledger entry", entry, &c, entry_sk(&entry.memory_id)).expect("item");
        let put = store
            .client
            .put_item()
            .table_name(&store.table)
            .set_item(Some(item))
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .expect("put");
        let consumed = put.consumed_capacity().expect("consumed capacity");
        let table = consumed.table().and_then(|t| t.capacity_units()).unwrap_or(0.0);
        let index = consumed
            .global_secondary_indexes()
            .and_then(|i| i.get(NAME_INDEX))
            .and_then(|c| c.capacity_units())
            .unwrap_or(0.0);
        let json = serde_json::to_vec(entry).expect("json").len();
        eprintln!(
            "ledger entry ({}): {json} bytes of JSON, {table} WCU + {index} WCU for the name index",
            if entry.provenance.is_some() { "with provenance" } else { "without provenance" }
        );
        units.push((table, index));
    }
    assert_eq!(units, vec![(1.0, 1.0), (1.0, 1.0), (1.0, 0.0)]);
}

/// `GET /connectors` of 1,000 connectors: two items each, read in batches
/// of 50 connectors (20 `BatchGetItem` requests, 8 in flight) instead of
/// 2,000 sequential `GetItem`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_thousand_connectors_reads_in_batches() {
    let Some(client) = client("dynamodb::listing_a_thousand_connectors_reads_in_batches").await else { return };
    let store = DynamoStore::new(client.clone(), table_name("overviews"));
    store.create_table().await.expect("create table");
    let ids: Vec<ConnectorId> = (0..1000).map(|i| ConnectorId::new(format!("c{i:04}"))).collect();
    let mut items = Vec::new();
    for id in &ids {
        let mut state = ConnectorState::new(id.clone());
        state.paused = id.as_str().ends_with('7');
        items.push(store.item_of("connector state", &state, id, STATE_SK.into()).expect("item"));
    }
    for chunk in items.chunks(BATCH_WRITE_MAX) {
        let requests: Vec<aws_sdk_dynamodb::types::WriteRequest> = chunk
            .iter()
            .map(|item| {
                let put = aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(item.clone())).build().unwrap();
                aws_sdk_dynamodb::types::WriteRequest::builder().put_request(put).build()
            })
            .collect();
        client.batch_write_item().request_items(store.table(), requests).send().await.expect("seed");
    }
    let before = store.items_read();
    let started = std::time::Instant::now();
    let overviews = store.overviews(&ids).await.expect("overviews");
    let batched = started.elapsed();
    assert_eq!(overviews.len(), 1000);
    assert_eq!(store.items_read() - before, 1000, "the states; no lease items exist");
    for (id, overview) in ids.iter().zip(&overviews) {
        let state = overview.state.as_ref().expect("state");
        assert_eq!((&state.connector_id, state.paused), (id, id.as_str().ends_with('7')));
    }
    let started = std::time::Instant::now();
    for id in &ids[..100] {
        store.connector_state(id).await.expect("state");
        store.lease(id).await.expect("lease");
    }
    eprintln!("1,000 connectors: batched {batched:?}; one by one (extrapolated from 100) {:?}", started.elapsed() * 10);
}

/// A run killed between its batch's lease-item update (counts added,
/// batch pending) and its entry puts: the next run to take the lease settles
/// the batch first, taking back the count change of each entry that was not
/// written, and keeping those an unfenced writer rewrote meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_by_a_crash_is_settled_by_the_next_writer() {
    use super::batches::Pending;
    let Some(client) = client("dynamodb::a_batch_cut_by_a_crash_is_settled_by_the_next_writer").await else { return };
    let table = table_name("crash");
    let dead = DynamoStore::new(client.clone(), table.clone());
    dead.create_table().await.expect("create table");
    let c = ConnectorId::new("crashy");
    let (one, two) = (RunId::new("run-1"), RunId::new("run-2"));
    let now = Utc::now();
    dead.try_acquire_lease(&c, &one, now, Duration::from_secs(60)).await.expect("acquire");
    let first: Vec<_> =
        (0..4).map(|i| LedgerEntry { status: EntryStatus::Processed, ..entry(format!("m{i}")) }).collect();
    let fenced = |entries| Checkpoint { entries, lease_owner: Some(one.clone()), ..Checkpoint::default() };
    dead.checkpoint(&c, fenced(first)).await.expect("a whole batch");

    // The next batch: m0, m1 fail, m8, m9 are new; only m0 and m8 get written before the kill.
    let batch: Vec<LedgerEntry> = [
        ("m0", EntryStatus::Failed),
        ("m1", EntryStatus::Failed),
        ("m8", EntryStatus::Submitted),
        ("m9", EntryStatus::Submitted),
    ]
    .into_iter()
    .map(|(id, status)| LedgerEntry { status, ..entry(id.into()) })
    .collect();
    let pending: Vec<Pending> = batch
        .iter()
        .map(|e| Pending {
            id: e.memory_id.clone(),
            before: (e.status == EntryStatus::Failed).then_some(EntryStatus::Processed),
            after: e.status,
        })
        .collect();
    dead.begin_batch(&c, &one, &pending, "cut-token").await.expect("batch pending");
    for (e, p) in batch.iter().zip(&pending).filter(|(e, _)| ["m0", "m8"].contains(&e.memory_id.as_str())) {
        let item = dead.entry_item(&c, e, Some("cut-token")).expect("item");
        assert!(dead.put_one(item, p.before, p.after).await.expect("put"));
    }
    // Meanwhile an unfenced writer (retry-failed) rewrites m0: it keeps the token.
    dead.checkpoint(
        &c,
        Checkpoint { entries: vec![LedgerEntry { attempts: 0, ..batch[0].clone() }], ..Default::default() },
    )
    .await
    .expect("unfenced");
    drop(dead);

    let next = DynamoStore::new(client, table);
    let later = now + TimeDelta::seconds(61);
    assert!(matches!(
        next.try_acquire_lease(&c, &two, later, Duration::from_secs(60)).await.expect("take over"),
        LeaseOutcome::Acquired(_)
    ));
    let ten = LedgerEntry { status: EntryStatus::Submitted, ..entry("m10".into()) };
    next.checkpoint(&c, Checkpoint { entries: vec![ten], lease_owner: Some(two.clone()), ..Checkpoint::default() })
        .await
        .expect("the next run's batch");
    let ids: Vec<MemoryId> = ["m0", "m1", "m2", "m3", "m8", "m9", "m10"].into_iter().map(MemoryId::new).collect();
    let mut recount: BTreeMap<EntryStatus, u64> = BTreeMap::new();
    for e in next.entries(&c, &ids).await.expect("entries").values() {
        *recount.entry(e.status).or_default() += 1;
    }
    assert_eq!(
        recount,
        BTreeMap::from([(EntryStatus::Processed, 3), (EntryStatus::Failed, 1), (EntryStatus::Submitted, 2)]),
        "m1 and m9 were never written"
    );
    assert_eq!(next.status_counts(&c).await.expect("counts"), recount, "the counts match the ledger again");
}

mod old_tables;
