use super::*;
use crate::state::conformance::{self, StoreFactory};
use crate::state::{Checkpoint, EntryStatus, LedgerEntry, StateStore};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};

fn entry(id: &str) -> LedgerEntry {
    LedgerEntry {
        memory_id: MemoryId::new(id),
        status: EntryStatus::Submitted,
        content_hash: None,
        pending_hash: None,
        file_source: format!("memory_{id}.txt"),
        doc_id: None,
        track_id: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        first_seen: DateTime::from_timestamp_millis(1_772_600_000_123).unwrap_or_default(),
        last_ingested: None,
    }
}

fn write_of(ids: &[&str]) -> Checkpoint {
    Checkpoint { entries: ids.iter().map(|id| entry(id)).collect(), ..Checkpoint::default() }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let count = Arc::new(AtomicUsize::new(0));
    let fresh: StoreFactory = Box::new(move || {
        let path = dir.path().join(format!("state-{}.json", count.fetch_add(1, Ordering::SeqCst)));
        Box::pin(async move { Arc::new(JsonStore::open(&path).await.expect("open json store")) as Arc<dyn StateStore> })
    });
    conformance::run_all(&fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_across_instances() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let open_same: StoreFactory = Box::new(move || {
        let path = path.clone();
        Box::pin(async move { Arc::new(JsonStore::open(&path).await.expect("open json store")) as Arc<dyn StateStore> })
    });
    conformance::check_persistence(&open_same).await;
    assert_eq!(names_in(dir.path()), ["state.json", "state.json.lock"], "no temp file is left behind");
}

#[tokio::test]
async fn missing_file_is_empty_until_the_first_write_creates_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("not/yet/there/state.json");
    let store = JsonStore::open(&path).await.expect("open");
    let c = ConnectorId::new("docs");
    assert!(store.connectors().await.expect("list").is_empty());
    assert!(store.entries(&c, &[MemoryId::new("1")]).await.expect("read").is_empty());
    assert!(!path.exists(), "reading must not create the file");

    store.checkpoint(&c, write_of(&["1"])).await.expect("write");
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read file")).expect("valid json");
    assert_eq!(written["version"], 1);
    let record = &written["connectors"]["docs"];
    assert_eq!(record["state"], serde_json::Value::Null);
    assert_eq!(record["lease"], serde_json::Value::Null);
    assert_eq!(record["entries"]["1"]["status"], "submitted");
    assert_eq!(record["entries"]["1"]["first_seen"], "2026-03-04T04:53:20.123Z");
    assert_eq!(record["runs"], serde_json::json!([]));
}

#[tokio::test]
async fn corrupt_file_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("truncated", "{\"version\": 1, \"connectors\": {\"docs\": {\"entries\": {"),
        (
            "bad status",
            "{\"version\": 1, \"connectors\": {\"docs\": {\"entries\": {\"7\": {\"memory_id\": \"7\", \"status\": \"lost\"}}}}}",
        ),
        ("other version", "{\"version\": 2, \"connectors\": {}}"),
        ("seed shape", "{\"connectors\": {\"docs\": {\"last_sync\": \"yesterday\"}}}"),
        ("not utf-8", "\u{0}\u{1}garbage"),
    ];
    for (case, content) in cases {
        let path = dir.path().join(format!("{}.json", case.replace(' ', "-")));
        fs::write(&path, content).expect("write corrupt file");
        match JsonStore::open(&path).await {
            Err(StateError::Corrupt { path: reported, detail }) => {
                assert_eq!(reported, path, "{case}: Corrupt names the file");
                assert!(!detail.is_empty(), "{case}: Corrupt says what is wrong");
                if case == "bad status" {
                    assert!(detail.contains("connectors.docs.entries.7.status"), "{case}: says where: {detail}");
                }
                if case == "other version" {
                    assert!(detail.contains("version 2"), "{case}: says which version: {detail}");
                }
            }
            other => panic!("{case}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read_to_string(&path).unwrap_or_default(), content, "{case}: the file is untouched");
    }

    // A file that goes bad under a running store: writes refuse, the file stays as it is.
    let path = dir.path().join("later.json");
    let store = JsonStore::open(&path).await.expect("open");
    store.checkpoint(&ConnectorId::new("docs"), write_of(&["1"])).await.expect("write");
    fs::write(&path, "{oops").expect("corrupt it");
    let refused = store.checkpoint(&ConnectorId::new("docs"), write_of(&["2"])).await;
    assert!(matches!(refused, Err(StateError::Corrupt { .. })), "write over a corrupt file: {refused:?}");
    let read = store.entries(&ConnectorId::new("docs"), &[MemoryId::new("1")]).await;
    assert!(matches!(read, Err(StateError::Corrupt { .. })), "reads do not serve the stale cache: {read:?}");
    assert_eq!(fs::read_to_string(&path).expect("read"), "{oops");
}

#[tokio::test]
async fn a_writer_waits_for_the_lock_then_gives_up_with_locked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let store = JsonStore::open_with_lock_timeout(&path, Duration::from_millis(200)).await.expect("open");
    let c = ConnectorId::new("docs");
    store.checkpoint(&c, write_of(&["1"])).await.expect("first write");

    // Another process holds the lock.
    let other = File::options().write(true).open(dir.path().join("state.json.lock")).expect("open lock");
    other.lock().expect("take lock");
    let started = Instant::now();
    match store.checkpoint(&c, write_of(&["2"])).await {
        Err(StateError::Locked { path: reported, detail }) => {
            assert_eq!(reported, path);
            assert!(detail.contains("state.json.lock"), "names the lock file: {detail}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200), "waited for the lock first");
    assert_eq!(store.entries(&c, &[MemoryId::new("1")]).await.expect("reads need no lock").len(), 1);

    // Released within the wait: the write goes through.
    let waiting = tokio::spawn({
        let store = store.clone();
        let c = c.clone();
        async move { store.checkpoint(&c, write_of(&["3"])).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    other.unlock().expect("release lock");
    waiting.await.expect("join").expect("write after the lock was released");
    let found = store.entries(&c, &[MemoryId::new("2"), MemoryId::new("3")]).await.expect("read");
    assert_eq!(
        found.keys().map(MemoryId::as_str).collect::<Vec<_>>(),
        ["3"],
        "only the write that got the lock landed"
    );
}

#[tokio::test]
async fn a_crash_mid_write_leaves_the_previous_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let c = ConnectorId::new("docs");
    let store = JsonStore::open(&path).await.expect("open");
    store.checkpoint(&c, write_of(&["1"])).await.expect("write");
    let before = fs::read(&path).expect("read");
    drop(store);

    // What a SIGKILL between writing and renaming leaves: a partial temp file.
    fs::write(dir.path().join("state.json.tmp"), &before[..before.len() / 2]).expect("partial temp");
    let store = JsonStore::open(&path).await.expect("open after crash");
    assert_eq!(store.entries(&c, &[MemoryId::new("1")]).await.expect("read").len(), 1, "old version intact");
    store.checkpoint(&c, write_of(&["2"])).await.expect("write after crash");
    assert_eq!(store.entries(&c, &[MemoryId::new("1"), MemoryId::new("2")]).await.expect("read").len(), 2);
    assert_eq!(names_in(dir.path()), ["state.json", "state.json.lock"], "the stale temp file was replaced");
}

#[tokio::test]
async fn the_cache_is_reused_until_the_file_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let c = ConnectorId::new("docs");
    let store = JsonStore::open(&path).await.expect("open");
    store.checkpoint(&c, write_of(&["1"])).await.expect("write");
    let stamp = || store.inner.cache.lock().expect("cache").as_ref().and_then(|l| l.stamp.clone());
    let written = stamp();
    assert!(written.is_some(), "the writer caches what it wrote");
    store.entries(&c, &[MemoryId::new("1")]).await.expect("read");
    assert_eq!(stamp(), written, "a read of an unchanged file keeps the cache");

    // Replaced by someone else (same length, even): the next read re-parses it.
    let text = fs::read_to_string(&path).expect("read").replace("\"submitted\"", "\"processed\"");
    fs::write(dir.path().join("other.json"), text).expect("write other");
    fs::rename(dir.path().join("other.json"), &path).expect("replace");
    let found = store.entries(&c, &[MemoryId::new("1")]).await.expect("read");
    assert_eq!(found[&MemoryId::new("1")].status, EntryStatus::Processed, "the replaced file was re-read");
    assert_ne!(stamp(), written);
}

#[tokio::test]
async fn permissions_of_the_state_file_are_kept() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        let store = JsonStore::open(&path).await.expect("open");
        store.checkpoint(&ConnectorId::new("docs"), write_of(&["1"])).await.expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        store.checkpoint(&ConnectorId::new("docs"), write_of(&["2"])).await.expect("write");
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test]
async fn state_open_picks_the_backend_from_the_config() {
    use crate::config::{StateBackend, StateConfig};
    let dir = tempfile::tempdir().expect("temp dir");
    for (backend, file, expected) in
        [(StateBackend::Json, "state.json", "JsonStore"), (StateBackend::Sqlite, "state.db", "SqliteStore")]
    {
        let config = StateConfig { backend, path: dir.path().join(file), ..StateConfig::default() };
        let store = crate::state::open(&config).await.expect("open from config");
        assert!(format!("{store:?}").starts_with(expected), "{store:?}");
        store.checkpoint(&ConnectorId::new("docs"), write_of(&["1"])).await.expect("write");
        assert!(config.path.exists(), "{expected} writes to the configured path");
    }
}

#[tokio::test]
async fn the_cache_is_a_top_level_map_that_expired_values_leave() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let store = JsonStore::open(&path).await.expect("open");
    let past = Utc::now() - chrono::Duration::hours(1);
    store.cache_put("old", "gone", Some(past)).await.expect("put expired");
    store.cache_put("geo:v1:52.520,13.405", "\"Berlin\"", None).await.expect("put");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let cache = file["cache"].as_object().expect("a top-level cache map");
    assert_eq!(cache.len(), 1, "the expired value was dropped on the next put: {cache:?}");
    assert_eq!(file["cache"]["geo:v1:52.520,13.405"]["value"], "\"Berlin\"");
    assert_eq!(file["cache"]["geo:v1:52.520,13.405"]["expires_at"], serde_json::Value::Null);
}
