//! `state backup --to FILE` and `state restore --from FILE` for the embedded
//! backends, consistent while `serve` runs.
//!
//! - SQLite: SQLite's online backup API (a consistent snapshot page by page,
//!   other connections keep working); restore writes the backup into the
//!   live database through the same API, in one locked step.
//! - JSON: the file is only ever replaced whole (rename), so one read is one
//!   consistent version; it is checked to parse before it is written out.
//!   Restore takes the store's writer lock (`<path>.lock`) and renames the
//!   backup into place; a running store notices the new file at its next call.
//!
//! Restore refuses while a connector's lease is held by a live run, so it
//! never swaps the ledger under a run.

use super::{StateError, StateStore};
use crate::config::{StateBackend, StateConfig};
use chrono::Utc;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io { path: path.to_path_buf(), source }
}

fn db(path: &Path, what: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Database { path: path.to_path_buf(), detail: format!("{what}: {e}") }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(op)
        .await
        .unwrap_or_else(|e| Err(StateError::Unsupported(format!("backup task failed: {e}"))))
}

/// Copies the state to `to` (written atomically). Returns the bytes written.
pub async fn backup(config: &StateConfig, to: &Path) -> Result<u64, StateError> {
    let from = config.path.clone();
    let to = to.to_path_buf();
    match config.backend {
        StateBackend::Sqlite => blocking(move || sqlite_backup(&from, &to)).await,
        StateBackend::Json => blocking(move || json_backup(&from, &to)).await,
        StateBackend::Dynamodb => {
            Err(StateError::Unsupported("dynamodb: use DynamoDB point-in-time recovery or on-demand backups".into()))
        }
    }
}

/// Replaces the state with the backup at `from`. `store` is the open store
/// (for the lease check).
pub async fn restore(config: &StateConfig, store: &dyn StateStore, from: &Path) -> Result<(), StateError> {
    let now = Utc::now();
    for connector in store.connectors().await? {
        if let Some(lease) = store.lease(&connector).await?
            && lease.is_live_at(now)
        {
            return Err(StateError::Busy { connector, owner: lease.owner, expires_at: lease.expires_at });
        }
    }
    let live = config.path.clone();
    let from = from.to_path_buf();
    match config.backend {
        StateBackend::Sqlite => blocking(move || sqlite_restore(&from, &live)).await,
        StateBackend::Json => blocking(move || json_restore(&from, &live)).await,
        StateBackend::Dynamodb => Err(StateError::Unsupported("dynamodb restore".into())),
    }
}

fn sqlite_backup(from: &Path, to: &Path) -> Result<u64, StateError> {
    use rusqlite::{Connection, OpenFlags};
    if !from.exists() {
        return Err(io(from, std::io::Error::new(std::io::ErrorKind::NotFound, "no state database to back up")));
    }
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| db(from, "open", e))?;
    src.busy_timeout(Duration::from_secs(10)).map_err(|e| db(from, "busy_timeout", e))?;
    let tmp = with_suffix(to, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut dst = Connection::open(&tmp).map_err(|e| db(&tmp, "open", e))?;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| db(from, "backup", e))?;
        backup.run_to_completion(256, Duration::from_millis(5), None).map_err(|e| db(from, "backup", e))?;
    }
    std::fs::rename(&tmp, to).map_err(|e| io(to, e))?;
    std::fs::metadata(to).map(|m| m.len()).map_err(|e| io(to, e))
}

fn sqlite_restore(from: &Path, live: &Path) -> Result<(), StateError> {
    use rusqlite::{Connection, OpenFlags};
    let src =
        Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| db(from, "open backup", e))?;
    let ok: String =
        src.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(|e| db(from, "not a state database", e))?;
    if ok != "ok" {
        return Err(db(from, "backup is damaged", ok));
    }
    let mut dst = Connection::open(live).map_err(|e| db(live, "open", e))?;
    dst.busy_timeout(Duration::from_secs(10)).map_err(|e| db(live, "busy_timeout", e))?;
    let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| db(live, "restore", e))?;
    backup.run_to_completion(256, Duration::from_millis(5), None).map_err(|e| db(live, "restore", e))
}

fn json_backup(from: &Path, to: &Path) -> Result<u64, StateError> {
    let bytes = std::fs::read(from).map_err(|e| io(from, e))?;
    check_json(from, &bytes)?;
    write_atomically(to, &bytes)?;
    Ok(bytes.len() as u64)
}

fn check_json(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    // An encrypted state is copied as it is (it stays encrypted); the store
    // that reads it checks its authentication tag.
    if super::cipher::is_encrypted(bytes) {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| StateError::Corrupt { path: path.to_path_buf(), detail: e.to_string() })?;
    if value.get("connectors").is_none_or(|c| !c.is_object()) {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            detail: "no `connectors` object: not a state file".into(),
        });
    }
    Ok(())
}

fn write_atomically(to: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let tmp = with_suffix(to, ".tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, to).map_err(|e| io(to, e))
}

fn json_restore(from: &Path, live: &Path) -> Result<(), StateError> {
    let bytes = std::fs::read(from).map_err(|e| io(from, e))?;
    check_json(from, &bytes)?;
    let lock_path = with_suffix(live, ".lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io(&lock_path, e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: live.to_path_buf(),
                    detail: "a writer kept the lock for 10 s".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
        }
    }
    // The store's own temp name is `<path>.tmp`; use another one.
    let tmp = with_suffix(live, ".restore");
    write_atomically(&tmp, &bytes)?;
    // The journal (a run's writes not yet folded into the file) belongs to
    // the state being replaced: gone first, so it never lands on the backup.
    let journal = super::json::journal_path(live);
    match std::fs::remove_file(&journal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&journal, e)),
    }
    std::fs::rename(&tmp, live).map_err(|e| io(live, e))?;
    drop(lock);
    Ok(())
}
