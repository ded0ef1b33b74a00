//! Restore against hostile backups and broken live states, on real files
//! and real SQLite: a refused backup changes nothing, a good one goes in
//! over anything, and the replaced state is kept.

use super::*;
use crate::config::Config;
use crate::secrets::Secret;
use crate::state::conformance::data::{cid, full_entry};
use crate::state::{Checkpoint, EntryStatus};

const KEY: &str = "a-32-character-key-for-the-tests!";

fn config(dir: &Path, backend: StateBackend, encrypted: bool) -> Config {
    let mut config = Config::default();
    config.state.backend = backend;
    config.state.path = dir.join(match backend {
        StateBackend::Sqlite => "state.db",
        _ => "state.json",
    });
    if encrypted {
        config.advanced.security.encrypt_secrets = true;
        config.advanced.security.encryption_key = Some(Secret::new(KEY));
    }
    config
}

/// A state with `n` ledger entries for connector `c1`.
async fn fill(config: &Config, n: usize) {
    let store = crate::state::open_for(config).await.expect("open");
    let entries = (0..n).map(|i| full_entry(&format!("m{i}"), EntryStatus::Processed)).collect();
    store.checkpoint(&cid("c1"), Checkpoint { entries, ..Checkpoint::default() }).await.expect("checkpoint");
}

async fn entry_count(config: &Config) -> u64 {
    let store = crate::state::open_for(config).await.expect("open");
    store.status_counts(&cid("c1")).await.expect("counts").values().sum()
}

/// Every file of the folder with its bytes (the live state and its companions).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), std::fs::read(&p).expect("read")))
        .collect();
    files.sort();
    files
}

fn foreign_sqlite(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('bread');").expect("create");
}

/// A SQLite state made by this build whose one ledger row then got a status it cannot read.
async fn sqlite_with_bad_row(path: &Path) {
    let dir = path.parent().expect("parent");
    let mut config = config(dir, StateBackend::Sqlite, false);
    config.state.path = path.to_path_buf();
    fill(&config, 3).await;
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute("UPDATE entries SET status = 'exploded' WHERE memory_id = 'm1'", []).expect("update");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_backups_are_refused_naming_the_file_and_the_state_is_untouched() {
    for backend in [StateBackend::Json, StateBackend::Sqlite] {
        let live_dir = tempfile::tempdir().expect("dir");
        let config = config(live_dir.path(), backend, false);
        fill(&config, 5).await;
        let before = snapshot(live_dir.path());
        let junk = tempfile::tempdir().expect("dir");
        let file = |name: &str, bytes: &[u8]| {
            let path = junk.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        let mut hostile: Vec<(PathBuf, &str)> = vec![
            (file("empty", b""), "0 bytes"),
            (file("random", &[0x9d, 0x03, 0xff, 0x00, 0x41, 0x17, 0x80, 0xfe]), "not"),
            (file("magic-then-random", &[crate::state::cipher::MAGIC, &[7u8; 80][..]].concat()), ""),
            (file("no-version.json", br#"{"connectors": {}}"#), ""),
            (file("connectors-list.json", br#"{"version": 1, "connectors": []}"#), ""),
            (
                file(
                    "bad-status.json",
                    br#"{"version": 1, "connectors": {"c1": {"entries": {"m": {"status": "x"}}}}}"#,
                ),
                "",
            ),
            (file("future.json", br#"{"version": 99, "connectors": {}}"#), "version|not a SQLite"),
        ];
        let sealed = StateCipher::from_key("another-key-of-32-characters-long!")
            .encrypt(br#"{"version": 1, "connectors": {}}"#)
            .expect("encrypt");
        hostile.push((file("other-key", &sealed), ""));
        let foreign = junk.path().join("foreign.db");
        foreign_sqlite(&foreign);
        hostile.push((foreign, ""));
        let bad_row = junk.path().join("bad-row.db");
        sqlite_with_bad_row(&bad_row).await;
        if backend == StateBackend::Sqlite {
            hostile.push((bad_row, "exploded"));
        }
        for (path, reason) in hostile {
            let error = restore(&config, &path).await.expect_err(&format!("{backend:?}: {} accepted", path.display()));
            let message = error.to_string();
            assert!(matches!(error, StateError::BadBackup { .. }), "{backend:?} {}: {message}", path.display());
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(reason.split('|').any(|r| message.contains(r)), "{message} should say {reason:?}");
            assert!(message.contains("was not changed"), "{message}");
            assert_eq!(snapshot(live_dir.path()), before, "{backend:?}: {} touched the live state", path.display());
        }
        assert_eq!(entry_count(&config).await, 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_over_a_corrupt_live_state_and_the_old_one_is_kept() {
    for backend in [StateBackend::Json, StateBackend::Sqlite] {
        let dir = tempfile::tempdir().expect("dir");
        let config = config(dir.path(), backend, false);
        fill(&config, 4).await;
        let backup_file = dir.path().join("backup.bin");
        super::backup(&config, &backup_file).await.expect("backup");
        // The live state is destroyed: not readable by any store.
        std::fs::write(&config.state.path, b"\x00\x01garbage{{{").expect("corrupt");
        let restored = restore(&config, &backup_file).await.expect("restore over a corrupt state");
        assert_eq!((restored.connectors, restored.entries), (1, 4), "{backend:?}");
        let previous = restored.previous.expect("the corrupt state is kept");
        assert_eq!(std::fs::read(&previous).expect("side copy"), b"\x00\x01garbage{{{");
        assert_eq!(entry_count(&config).await, 4, "{backend:?}");

        // Over a healthy state: the replaced one is kept and readable.
        let mut again = config.clone();
        again.state.path = previous.clone();
        let second = restore(&config, &backup_file).await.expect("restore over a healthy state");
        let kept = second.previous.expect("kept");
        assert_ne!(kept, previous);
        again.state.path = kept;
        assert_eq!(entry_count(&again).await, 4, "{backend:?}: the side copy is a readable state");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_states_restore_under_their_key_only() {
    let dir = tempfile::tempdir().expect("dir");
    let encrypted = config(dir.path(), StateBackend::Json, true);
    fill(&encrypted, 2).await;
    let backup_file = dir.path().join("backup.enc");
    super::backup(&encrypted, &backup_file).await.expect("backup");
    assert!(crate::state::cipher::is_encrypted(&std::fs::read(&backup_file).expect("read")));
    // Without the key it is refused, naming the file.
    let plain_dir = tempfile::tempdir().expect("dir");
    let plain = config(plain_dir.path(), StateBackend::Json, false);
    fill(&plain, 1).await;
    let error = restore(&plain, &backup_file).await.expect_err("no key");
    assert!(error.to_string().contains("no key is configured"), "{error}");
    assert_eq!(entry_count(&plain).await, 1);
    // A plain backup restored into an encrypted state is sealed on the way in.
    let plain_backup = plain_dir.path().join("plain.json");
    super::backup(&plain, &plain_backup).await.expect("backup");
    restore(&encrypted, &plain_backup).await.expect("restore");
    assert!(crate::state::cipher::is_encrypted(&std::fs::read(&encrypted.state.path).expect("read")));
    assert_eq!(entry_count(&encrypted).await, 1);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_backups_and_side_copies_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    for backend in [StateBackend::Json, StateBackend::Sqlite] {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = config(dir.path(), backend, false);
        config.state.path = dir.path().join("new/folder").join(config.state.path.file_name().expect("name"));
        fill(&config, 1).await;
        let backup_file = dir.path().join("backups/b.bin");
        super::backup(&config, &backup_file).await.expect("backup");
        let restored = restore(&config, &backup_file).await.expect("restore");
        let mut checked = vec![config.state.path.clone(), backup_file, restored.previous.expect("kept")];
        checked.extend(
            ["-wal", "-shm", ".lock"].iter().map(|s| files::with_suffix(&config.state.path, s)).filter(|p| p.exists()),
        );
        for path in checked {
            assert_eq!(mode(&path), 0o600, "{backend:?}: {}", path.display());
        }
        for folder in [dir.path().join("new"), dir.path().join("new/folder"), dir.path().join("backups")] {
            assert_eq!(mode(&folder), 0o700, "{backend:?}: {}", folder.display());
        }
    }
}
