//! Tables made before an index existed (decisions 0016 and 0022): the
//! store falls back to reading the table, never holding it whole.

use super::*;

/// A store on a new table made before the `open` and `name` indexes.
async fn store_without_indexes(client: Client, prefix: &str) -> DynamoStore {
    let table = table_name(prefix);
    let key =
        |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    let attr = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .attribute_definitions(attr(PK))
        .attribute_definitions(attr(SK))
        .send()
        .await
        .expect("create table without the indexes");
    DynamoStore::new(client, table)
}

/// A table made before the `open` index (decision 0016): listing by status
/// falls back to reading the ledger instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_the_open_index_falls_back_to_the_ledger() {
    let Some(client) = client("dynamodb::a_table_without_the_open_index_falls_back_to_the_ledger").await else {
        return;
    };
    let store = store_without_indexes(client, "noindex").await;
    let c = ConnectorId::new("old");
    let entries: Vec<_> =
        (0..5).map(|i| LedgerEntry { status: EntryStatus::Failed, ..entry(format!("m{i}")) }).collect();
    store.checkpoint(&c, Checkpoint { entries, ..Default::default() }).await.expect("checkpoint");
    let found = store.entries_with_status(&c, &[EntryStatus::Failed], 3).await.expect("falls back");
    assert_eq!(found.iter().map(|e| e.memory_id.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2"]);
    // Nor a `name` index: names are looked up in every ledger instead.
    let named = store.entries_named(&["memory_m3.txt".to_owned()]).await.expect("falls back");
    assert_eq!(named, vec![(c.clone(), LedgerEntry { status: EntryStatus::Failed, ..entry("m3".into()) })]);
}

/// Looking names up without the `name` index (a table deployed before it)
/// reads the table once, a page at a time, keeping only the entries asked
/// for: it listed the connectors with a Scan of the whole table and then
/// read every ledger whole into memory (the api function, 128 MB, per look-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_without_the_name_index_are_found_in_one_pass_over_the_table() {
    let Some(client) = client("dynamodb::names_without_the_name_index_are_found_in_one_pass_over_the_table").await
    else {
        return;
    };
    let store = store_without_indexes(client, "noname").await;
    // ~3 KB each: a Scan page (1 MB) holds about a third of a connector's ledger.
    let ledger = |from: usize| -> Checkpoint {
        let entries = (from..from + 800)
            .map(|i| LedgerEntry {
                status: EntryStatus::Processed,
                last_error: Some("x".repeat(3000)),
                ..entry(format!("m{i:04}"))
            })
            .collect();
        Checkpoint { entries, ..Default::default() }
    };
    let (one, two) = (ConnectorId::new("one"), ConnectorId::new("two"));
    store.checkpoint(&one, ledger(0)).await.expect("checkpoint");
    store.checkpoint(&two, ledger(400)).await.expect("checkpoint");

    let before = store.items_read();
    let names = ["memory_m0001.txt", "memory_m0500.txt", "memory_m1199.txt", "memory_gone.txt"].map(String::from);
    let mut found: Vec<(String, String)> = store
        .entries_named(&names)
        .await
        .expect("falls back")
        .into_iter()
        .map(|(c, e)| (c.to_string(), e.memory_id.to_string()))
        .collect();
    found.sort();
    let pairs = [("one", "m0001"), ("one", "m0500"), ("two", "m0500"), ("two", "m1199")];
    assert_eq!(found, pairs.map(|(c, m)| (c.to_owned(), m.to_owned())));
    let read = store.items_read() - before;
    // 1,600 entries and each connector's lease item (its counts).
    assert!(read <= 1_602, "one pass over the table: read {read} items of 1,602");
}
