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
        provenance: None,
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
    // The lease a racer won is still held: its run's journal is there.
    assert_eq!(names_in(dir.path()), ["state.json", "state.json.journal", "state.json.lock"], "no temp file");
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

fn fenced(owner: &RunId, ids: &[&str]) -> Checkpoint {
    Checkpoint { lease_owner: Some(owner.clone()), ..write_of(ids) }
}

/// During a run the writes go to the journal (the file stays as it was, a
/// second instance still sees them); releasing the lease folds them into
/// the file and deletes the journal.
#[tokio::test]
async fn a_run_journals_its_writes_and_its_release_folds_them_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let c = ConnectorId::new("docs");
    let owner = RunId::new("run-1");
    let store = JsonStore::open(&path).await.expect("open");
    store.checkpoint(&c, write_of(&["0"])).await.expect("write outside a run");
    store.try_acquire_lease(&c, &owner, Utc::now(), Duration::from_secs(60)).await.expect("acquire");
    let before = fs::read(&path).expect("read");
    for id in ["1", "2", "3"] {
        store.checkpoint(&c, fenced(&owner, &[id])).await.expect("fenced write");
    }
    assert_eq!(fs::read(&path).expect("read"), before, "the file is not rewritten during a run");
    assert!(journal_path(&path).exists(), "the run's writes are in the journal");
    let other = JsonStore::open(&path).await.expect("second instance");
    let ids: Vec<MemoryId> = ["0", "1", "2", "3"].into_iter().map(MemoryId::new).collect();
    assert_eq!(other.entries(&c, &ids).await.expect("read").len(), 4, "another instance reads the journal");

    store.release_lease(&c, &owner).await.expect("release");
    assert!(!journal_path(&path).exists(), "the release folds the journal into the file");
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
    assert_eq!(written["connectors"]["docs"]["entries"].as_object().map(|e| e.len()), Some(4));
    assert_eq!(other.entries(&c, &ids).await.expect("read").len(), 4, "and after the fold");
}

/// A record cut by a crash (SIGKILL mid-append) is not there, and the next
/// write cuts it off before appending.
#[tokio::test]
async fn a_journal_record_cut_by_a_crash_is_not_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let c = ConnectorId::new("docs");
    let owner = RunId::new("run-1");
    let store = JsonStore::open(&path).await.expect("open");
    store.try_acquire_lease(&c, &owner, Utc::now(), Duration::from_secs(60)).await.expect("acquire");
    store.checkpoint(&c, fenced(&owner, &["1"])).await.expect("write");
    store.checkpoint(&c, fenced(&owner, &["2"])).await.expect("write");
    let journal = fs::read(journal_path(&path)).expect("journal");
    let last = journal[..journal.len() - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let half = &journal[last..last + (journal.len() - last) / 2];
    fs::OpenOptions::new().append(true).open(journal_path(&path)).expect("open").write_all(half).expect("cut");

    let after = JsonStore::open(&path).await.expect("open after the crash");
    let ids: Vec<MemoryId> = ["1", "2", "3"].into_iter().map(MemoryId::new).collect();
    assert_eq!(after.entries(&c, &ids).await.expect("read").len(), 2, "the complete records, not the cut one");
    store.checkpoint(&c, fenced(&owner, &["3"])).await.expect("write after the cut");
    let again = JsonStore::open(&path).await.expect("open again");
    assert_eq!(again.entries(&c, &ids).await.expect("read").len(), 3, "the cut record was cut off, not glued to");
}

/// Encrypted at rest: journal records are sealed one by one.
#[tokio::test]
async fn an_encrypted_state_journals_sealed_records() {
    use crate::state::cipher::StateCipher;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let key = || StateCipher::from_key("a-32-character-key-for-the-tests!");
    let c = ConnectorId::new("docs");
    let owner = RunId::new("run-1");
    let store = JsonStore::open_encrypted(&path, key()).await.expect("open");
    store.try_acquire_lease(&c, &owner, Utc::now(), Duration::from_secs(60)).await.expect("acquire");
    store.checkpoint(&c, fenced(&owner, &["secret-memory-id"])).await.expect("write");
    let journal = fs::read(journal_path(&path)).expect("journal");
    assert!(!journal.windows(16).any(|w| w == b"secret-memory-id"), "no plain record in the journal");
    let again = JsonStore::open_encrypted(&path, key()).await.expect("reopen with the key");
    assert_eq!(again.entries(&c, &[MemoryId::new("secret-memory-id")]).await.expect("read").len(), 1);
    assert!(JsonStore::open(&path).await.is_err(), "no key, no state");
}

/// A crash after the fold wrote the file but before it deleted the journal:
/// the journal is applied again, which changes nothing.
#[tokio::test]
async fn a_journal_applied_twice_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let c = ConnectorId::new("docs");
    let owner = RunId::new("run-1");
    let store = JsonStore::open(&path).await.expect("open");
    store.try_acquire_lease(&c, &owner, Utc::now(), Duration::from_secs(60)).await.expect("acquire");
    store.checkpoint(&c, fenced(&owner, &["1", "2"])).await.expect("write");
    store
        .checkpoint(&c, Checkpoint { entries: vec![LedgerEntry { attempts: 7, ..entry("1") }], ..fenced(&owner, &[]) })
        .await
        .expect("rewrite");
    let journal = fs::read(journal_path(&path)).expect("journal");
    store.release_lease(&c, &owner).await.expect("release");
    let folded = fs::read(&path).expect("file");
    fs::write(journal_path(&path), &journal).expect("the journal comes back");
    let after = JsonStore::open(&path).await.expect("open");
    let found = after.entries(&c, &[MemoryId::new("1"), MemoryId::new("2")]).await.expect("read");
    assert_eq!(found[&MemoryId::new("1")].attempts, 7);
    assert_eq!(found.len(), 2);
    assert_eq!(after.lease(&c).await.expect("lease"), None, "the release is in it too");
    assert_eq!(fs::read(&path).expect("file"), folded);
}

/// `state restore` takes the journal of the state it replaces along to the
/// side copy: a killed run's writes never land on the restored backup, and
/// the side copy opens as the state it was, journal included.
#[tokio::test]
async fn restore_drops_the_journal_of_the_replaced_state() {
    use crate::config::{Config, StateBackend};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let mut config = Config::default();
    config.state.backend = StateBackend::Json;
    config.state.path = path.clone();
    let c = ConnectorId::new("docs");
    let store = JsonStore::open(&path).await.expect("open");
    store.checkpoint(&c, write_of(&["kept"])).await.expect("write");
    let backup = dir.path().join("backup.json");
    crate::state::backup::backup(&config, &backup).await.expect("backup");
    // A run that was killed (its lease has expired since): its writes are in the journal.
    let owner = RunId::new("killed");
    let long_ago = Utc::now() - chrono::Duration::hours(2);
    store.try_acquire_lease(&c, &owner, long_ago, Duration::from_secs(60)).await.expect("acquire");
    store.checkpoint(&c, fenced(&owner, &["journaled"])).await.expect("journaled write");
    assert!(journal_path(&path).exists());
    drop(store);
    let done = crate::state::backup::restore(&config, &backup).await.expect("restore");
    assert!(!journal_path(&path).exists(), "the replaced state's journal is gone");
    let ids = [MemoryId::new("kept"), MemoryId::new("journaled")];
    let restored = JsonStore::open(&path).await.expect("open restored");
    let found = restored.entries(&c, &ids).await.expect("read");
    assert_eq!(found.keys().map(MemoryId::as_str).collect::<Vec<_>>(), ["kept"]);
    let side = done.previous.expect("a side copy");
    let before = JsonStore::open(&side).await.expect("open the side copy");
    let mut found: Vec<_> = before.entries(&c, &ids).await.expect("read").into_keys().collect();
    found.sort();
    assert_eq!(found.iter().map(MemoryId::as_str).collect::<Vec<_>>(), ["journaled", "kept"]);
}
