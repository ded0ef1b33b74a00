use super::*;
use crate::state::conformance::{self, StoreFactory};
use std::sync::atomic::{AtomicUsize, Ordering};

fn open_factory(path: PathBuf) -> StoreFactory {
    Box::new(move || {
        let path = path.clone();
        Box::pin(
            async move { Arc::new(SqliteStore::open(&path).await.expect("open sqlite store")) as Arc<dyn StateStore> },
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let count = Arc::new(AtomicUsize::new(0));
    let fresh: StoreFactory = Box::new(move || {
        let path = dir.path().join(format!("state-{}.db", count.fetch_add(1, Ordering::SeqCst)));
        open_factory(path)()
    });
    conformance::run_all(&fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_across_connections() {
    let dir = tempfile::tempdir().expect("temp dir");
    conformance::check_persistence(&open_factory(dir.path().join("state.db"))).await;
}

#[tokio::test]
async fn wal_mode_is_on_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/dir/state.db");
    let c = ConnectorId::new("docs");
    let store = SqliteStore::open(&path).await.expect("open creates the directories");
    store
        .checkpoint(&c, Checkpoint { connector: Some(ConnectorState::new(c.clone())), ..Checkpoint::default() })
        .await
        .expect("write");
    drop(store);
    for _ in 0..2 {
        let store = SqliteStore::open(&path).await.expect("reopen");
        assert!(store.connector_state(&c).await.expect("read").is_some(), "data survives a reopen");
    }

    let probe = Connection::open(&path).expect("probe");
    let mode: String = probe.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("journal_mode");
    assert_eq!(mode, "wal");
    let version: i64 = probe.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version");
    assert_eq!(version, SCHEMA_VERSION as i64);
    let tables: Vec<String> = probe
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        tables,
        ["cache", "connectors", "digest_shards", "entries", "entry_counts", "leases", "ledger_meta", "runs"]
    );
}

#[tokio::test]
async fn a_version_1_database_gains_the_cache_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).expect("create v1");
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.execute(
            "INSERT INTO leases (connector_id, owner, acquired_at, expires_at) VALUES ('docs', 'run-1', '2030-01-01T00:00:00.000Z', '2030-01-01T01:00:00.000Z')",
            [],
        )
        .expect("v1 row");
        conn.pragma_update(None, "user_version", 1).expect("version 1");
    }
    let store = SqliteStore::open(&path).await.expect("open migrates");
    assert!(store.lease(&ConnectorId::new("docs")).await.expect("lease").is_some(), "v1 data kept");
    store.cache_put("k", "v", None).await.expect("cache works after the migration");
    assert_eq!(store.cache_get("k", Utc::now()).await.expect("get").as_deref(), Some("v"));
    drop(store);
    let probe = Connection::open(&path).expect("probe");
    let version: i64 = probe.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version");
    assert_eq!(version, SCHEMA_VERSION as i64);
}

#[tokio::test]
async fn a_version_2_ledger_gets_its_counts_backfilled_and_kept_by_triggers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v2.db");
    {
        let conn = Connection::open(&path).expect("create v2");
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.execute_batch(MIGRATIONS[1]).expect("v2 schema");
        for (id, status) in [("a", "submitted"), ("b", "submitted"), ("c", "dead")] {
            conn.execute(
                "INSERT INTO entries (connector_id, memory_id, status, file_source, attempts, first_seen) \
                 VALUES ('docs', ?1, ?2, 'f', 0, '2030-01-01T00:00:00.000Z')",
                [id, status],
            )
            .expect("v2 row");
        }
        conn.pragma_update(None, "user_version", 2).expect("version 2");
    }
    let c = ConnectorId::new("docs");
    let store = SqliteStore::open(&path).await.expect("open migrates");
    let counts = store.status_counts(&c).await.expect("counts");
    assert_eq!(counts.get(&EntryStatus::Submitted), Some(&2), "{counts:?}");
    assert_eq!(counts.get(&EntryStatus::Dead), Some(&1), "{counts:?}");
    // An upsert that changes a status moves one count; a reset empties them.
    let mut moved =
        store.entries(&c, &[MemoryId::new("a")]).await.expect("entry").remove(&MemoryId::new("a")).expect("a");
    moved.status = EntryStatus::Processed;
    store
        .checkpoint(&c, Checkpoint { entries: vec![moved.clone(), moved], ..Checkpoint::default() })
        .await
        .expect("write");
    let counts = store.status_counts(&c).await.expect("counts");
    assert_eq!(
        (counts.get(&EntryStatus::Submitted), counts.get(&EntryStatus::Processed)),
        (Some(&1), Some(&1)),
        "{counts:?}"
    );
    store.reset(&c, Utc::now()).await.expect("reset");
    assert!(store.status_counts(&c).await.expect("counts").is_empty());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).await.expect("create"));
    Connection::open(&path).expect("probe").pragma_update(None, "user_version", 99).expect("bump");
    match SqliteStore::open(&path).await {
        Err(StateError::Database { path: reported, detail }) => {
            assert_eq!(reported, path);
            assert!(detail.contains("schema version 99"), "{detail}");
        }
        other => panic!("expected Database, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt_and_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let garbage = "this is not a database, it is a shopping list: eggs, milk ".repeat(100);
    std::fs::write(&path, &garbage).expect("write");
    match SqliteStore::open(&path).await {
        Err(StateError::Corrupt { path: reported, detail }) => {
            assert_eq!(reported, path);
            assert!(detail.contains("not a database"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).expect("read"), garbage);
}

#[tokio::test]
async fn a_hand_edited_value_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.expect("open");
    Connection::open(&path)
        .expect("probe")
        .execute(
            "INSERT INTO entries (connector_id, memory_id, status, file_source, attempts, first_seen) \
             VALUES ('docs', '7', 'lost', 'f', 0, '2026-01-01T00:00:00.000Z')",
            [],
        )
        .expect("insert");
    match store.entries(&ConnectorId::new("docs"), &[MemoryId::new("7")]).await {
        Err(StateError::Corrupt { detail, .. }) => {
            assert!(detail.contains("unknown entry status \"lost\""), "{detail}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Lookups stay O(ids): every ledger query is answered from an index.
#[tokio::test]
async fn ledger_queries_use_indexes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).await.expect("create"));
    let probe = Connection::open(&path).expect("probe");
    let plan = |sql: &str| -> String {
        probe
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
            .join("; ")
    };
    let lookup = plan(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE connector_id = 'c' AND memory_id = 'm'"));
    assert!(lookup.starts_with("SEARCH entries USING INDEX"), "{lookup}");
    let by_status = plan(&format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE connector_id = 'c' AND status IN ('failed') ORDER BY memory_id LIMIT 5"
    ));
    assert!(by_status.contains("entries_by_status"), "{by_status}");
    let runs =
        plan(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE connector_id = 'c' ORDER BY started_at DESC LIMIT 5"));
    assert!(runs.contains("runs_by_start") && !runs.contains("TEMP B-TREE"), "{runs}");
    let by_name = plan(&format!(
        "SELECT {ENTRY_COLUMNS}, connector_id FROM entries WHERE file_source IN ('memory_C_1.txt', 'memory_C_2.txt')"
    ));
    assert!(by_name.contains("entries_by_name"), "{by_name}");
    let next = plan("SELECT connector_id FROM entries WHERE connector_id > 'a' ORDER BY connector_id LIMIT 1");
    assert!(next.starts_with("SEARCH entries USING"), "{next}");
}

#[test]
fn timestamps_sort_like_instants() {
    let a = DateTime::from_timestamp_millis(1_772_600_000_009).unwrap_or_default();
    let b = DateTime::from_timestamp_millis(1_772_600_000_010).unwrap_or_default();
    assert_eq!(timestamp(a), "2026-03-04T04:53:20.009Z");
    assert!(timestamp(a) < timestamp(b));
    assert_eq!(timestamp(DateTime::from_timestamp(1_772_600_000, 0).unwrap_or_default()), "2026-03-04T04:53:20.000Z");
    assert_eq!(parse_timestamp(0, &timestamp(a)).expect("parse"), a);
}
