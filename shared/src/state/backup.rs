//! `state backup --to FILE` and `state restore --from FILE` for the embedded
//! backends, consistent while `serve` runs.
//!
//! - SQLite: SQLite's online backup API (a consistent snapshot page by page,
//!   other connections keep working); restore writes the checked backup into
//!   the live database through the same API, in one locked step.
//! - JSON: the file is only ever replaced whole (rename), so one read is one
//!   consistent version. Restore takes the store's writer lock
//!   (`<path>.lock`) and renames the backup into place; a running store
//!   notices the new file at its next call.
//!
//! Restore trusts nothing it has not read (a person restores when things
//! already went wrong, often from their only copy):
//! 1. the backup is read whole and checked first: its format and version,
//!    every record decodes as the store decodes it, an encrypted one opens
//!    under the configured key. A refused backup changes nothing.
//! 2. it refuses while a connector's lease is held by a live run, so it never
//!    swaps the ledger under a run. A live state that cannot be read at all
//!    (the reason to restore) holds no lease that could be honoured.
//! 3. the state it replaces is kept beside it as
//!    `<path>.before-restore-<UTC time>`, owner-only like every state file.

use super::cipher::StateCipher;
use super::{StateError, StateStore, files};
use crate::config::{Config, StateBackend};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io { path: path.to_path_buf(), source }
}

fn db(path: &Path, what: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Database { path: path.to_path_buf(), detail: format!("{what}: {e}") }
}

fn bad(path: &Path, detail: impl Into<String>) -> StateError {
    StateError::BadBackup { path: path.to_path_buf(), detail: detail.into() }
}

async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(op)
        .await
        .unwrap_or_else(|e| Err(StateError::Unsupported(format!("backup task failed: {e}"))))
}

/// What a restore put in place, and where the state it replaced went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub connectors: usize,
    pub entries: u64,
    pub runs: u64,
    /// The replaced state, kept; `None` when there was none.
    pub previous: Option<PathBuf>,
}

/// Copies the state to `to` (written atomically, owner-only). Returns the bytes written.
pub async fn backup(config: &Config, to: &Path) -> Result<u64, StateError> {
    let from = config.state.path.clone();
    let to = to.to_path_buf();
    match config.state.backend {
        StateBackend::Sqlite => blocking(move || sqlite_backup(&from, &to)).await,
        StateBackend::Json => {
            let cipher = super::cipher_for(config)?;
            blocking(move || json_backup(&from, &to, cipher.as_ref())).await
        }
        StateBackend::Dynamodb => {
            Err(StateError::Unsupported("dynamodb: use DynamoDB point-in-time recovery or on-demand backups".into()))
        }
    }
}

/// Replaces the state with the backup at `from`, after checking all of it
/// (see the module doc). The live state is not opened before the backup
/// passed, and a live state that cannot be read does not stop the restore.
pub async fn restore(config: &Config, from: &Path) -> Result<Restored, StateError> {
    let live = config.state.path.clone();
    let from = from.to_path_buf();
    let staged = match config.state.backend {
        StateBackend::Json => {
            let cipher = super::cipher_for(config)?;
            blocking(move || stage_json(&from, cipher.as_ref())).await?
        }
        StateBackend::Sqlite => {
            let staging = files::with_suffix(&live, ".restore");
            blocking(move || stage_sqlite(&from, &staging)).await?
        }
        StateBackend::Dynamodb => return Err(StateError::Unsupported("dynamodb restore".into())),
    };
    if let Err(e) = refuse_while_running(config).await {
        staged.discard();
        return Err(e);
    }
    let now = Utc::now();
    blocking(move || staged.put_in_place(&live, now)).await
}

/// A checked backup, ready to replace the live state.
enum Staged {
    /// The bytes to write (encrypted when the state is).
    Json { bytes: Vec<u8>, counts: (usize, u64, u64) },
    /// A checked copy at the current schema.
    Sqlite { staging: PathBuf, counts: (usize, u64, u64) },
}

impl Staged {
    fn discard(&self) {
        if let Staged::Sqlite { staging, .. } = self {
            remove_database_files(staging);
        }
    }

    fn put_in_place(self, live: &Path, now: DateTime<Utc>) -> Result<Restored, StateError> {
        let side = files::with_suffix(live, &format!(".before-restore-{}", now.format("%Y%m%dT%H%M%S%3fZ")));
        match self {
            Staged::Json { bytes, counts } => {
                let previous = json_replace(live, &side, &bytes)?;
                Ok(restored(counts, previous))
            }
            Staged::Sqlite { staging, counts } => {
                let result = sqlite_replace(live, &side, &staging);
                remove_database_files(&staging);
                Ok(restored(counts, result?))
            }
        }
    }
}

fn restored((connectors, entries, runs): (usize, u64, u64), previous: Option<PathBuf>) -> Restored {
    // Where a person finds it, whatever folder they ran the command from.
    let previous = previous.map(|p| std::path::absolute(&p).unwrap_or(p));
    Restored { connectors, entries, runs, previous }
}

/// Refuses while a connector's lease is held by a live run. A live state
/// that is missing or unreadable (corrupt, another key) has no such run.
async fn refuse_while_running(config: &Config) -> Result<(), StateError> {
    if !config.state.path.exists() {
        return Ok(());
    }
    let store = match super::open_for(config).await {
        Ok(store) => store,
        Err(StateError::Corrupt { path, detail }) => {
            tracing::warn!(file = %path.display(), %detail, "the current state cannot be read; restoring over it");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    refuse_if_leased(store.as_ref()).await
}

async fn refuse_if_leased(store: &dyn StateStore) -> Result<(), StateError> {
    let now = Utc::now();
    for connector in store.connectors().await? {
        if let Some(lease) = store.lease(&connector).await?
            && lease.is_live_at(now)
        {
            return Err(StateError::Busy { connector, owner: lease.owner, expires_at: lease.expires_at });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- JSON

fn json_backup(from: &Path, to: &Path, cipher: Option<&StateCipher>) -> Result<u64, StateError> {
    let bytes = std::fs::read(from).map_err(|e| io(from, e))?;
    // An encrypted state is copied as it is (it stays encrypted); without
    // the key it cannot be read, and the store that wrote it checked it.
    if !super::cipher::is_encrypted(&bytes) || cipher.is_some() {
        super::json::decode(from, &bytes, cipher)?;
    }
    files::create_parent_dir(to).map_err(|e| io(to, e))?;
    files::write_atomically(to, &bytes).map_err(|e| io(to, e))?;
    Ok(bytes.len() as u64)
}

/// Reads the whole backup: it must decrypt under the configured key (when
/// encrypted) and decode completely as a state file of this version.
fn stage_json(from: &Path, cipher: Option<&StateCipher>) -> Result<Staged, StateError> {
    let bytes = std::fs::read(from).map_err(|e| io(from, e))?;
    if bytes.is_empty() {
        return Err(bad(from, "is empty (0 bytes): not a state backup"));
    }
    if bytes.starts_with(b"SQLite format 3\0") {
        return Err(bad(from, "is a SQLite database, not a JSON state (is state.backend right?)"));
    }
    let doc = super::json::decode(from, &bytes, cipher).map_err(|e| match e {
        StateError::Corrupt { detail, .. } => bad(from, format!("is not a readable state file: {detail}")),
        other => other,
    })?;
    // Encrypted at rest when the state is: a plain backup is sealed on the way in.
    let bytes = match cipher {
        Some(cipher) if !super::cipher::is_encrypted(&bytes) => {
            cipher.encrypt(&bytes).map_err(|e| bad(from, format!("could not be encrypted: {e}")))?
        }
        _ => bytes,
    };
    Ok(Staged::Json { bytes, counts: doc.counts() })
}

/// Under the store's writer lock: keeps the live file as `side`, then
/// renames the new bytes into place. Returns the side copy, if any.
fn json_replace(live: &Path, side: &Path, bytes: &[u8]) -> Result<Option<PathBuf>, StateError> {
    files::create_parent_dir(live).map_err(|e| io(live, e))?;
    let _lock = lock_json(live)?;
    let previous = match std::fs::read(live) {
        Ok(old) => {
            files::write_atomically(side, &old).map_err(|e| io(side, e))?;
            Some(side.to_path_buf())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(live, e)),
    };
    // The journal (a run's writes not yet folded into the file, left by a
    // run that died) belongs to the state being replaced: it goes beside the
    // side copy (the store reads the two as one), and is gone before the new
    // file lands, so it never applies to the backup.
    let journal = super::json::journal_path(live);
    if previous.is_some() {
        match std::fs::read(&journal) {
            Ok(old) => {
                let to = super::json::journal_path(side);
                files::write_atomically(&to, &old).map_err(|e| io(&to, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&journal, e)),
        }
    }
    match std::fs::remove_file(&journal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&journal, e)),
    }
    // The store's own temp name is `<path>.tmp`; use another one.
    let tmp = files::with_suffix(live, ".restore");
    files::write_atomically(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, live).map_err(|e| io(live, e))?;
    files::sync_parent(live).map_err(|e| io(live, e))?;
    Ok(previous)
}

fn lock_json(live: &Path) -> Result<std::fs::File, StateError> {
    let lock_path = files::with_suffix(live, ".lock");
    let lock = files::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io(&lock_path, e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
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
}

// ---------------------------------------------------------------- SQLite

fn sqlite_backup(from: &Path, to: &Path) -> Result<u64, StateError> {
    use rusqlite::{Connection, OpenFlags};
    if !from.exists() {
        return Err(io(from, std::io::Error::new(std::io::ErrorKind::NotFound, "no state database to back up")));
    }
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| db(from, "open", e))?;
    src.busy_timeout(Duration::from_secs(10)).map_err(|e| db(from, "busy_timeout", e))?;
    files::create_parent_dir(to).map_err(|e| io(to, e))?;
    let tmp = files::with_suffix(to, ".tmp");
    copy_database(&src, &tmp).inspect_err(|_| remove_database_files(&tmp))?;
    std::fs::rename(&tmp, to).map_err(|e| io(to, e))?;
    std::fs::metadata(to).map(|m| m.len()).map_err(|e| io(to, e))
}

/// Copies the database of `src` into a new owner-only file at `to`.
fn copy_database(src: &rusqlite::Connection, to: &Path) -> Result<(), StateError> {
    remove_database_files(to);
    files::options().write(true).create_new(true).open(to).map_err(|e| io(to, e))?;
    let mut dst = rusqlite::Connection::open(to).map_err(|e| db(to, "open", e))?;
    let copy = rusqlite::backup::Backup::new(src, &mut dst).map_err(|e| db(to, "copy", e))?;
    copy.run_to_completion(256, Duration::from_millis(5), None).map_err(|e| db(to, "copy", e))
}

fn stage_sqlite(from: &Path, staging: &Path) -> Result<Staged, StateError> {
    files::create_parent_dir(staging).map_err(|e| io(staging, e))?;
    match super::sqlite::verify::stage_backup(from, staging) {
        Ok(counts) => Ok(Staged::Sqlite { staging: staging.to_path_buf(), counts }),
        Err(e) => {
            remove_database_files(staging);
            Err(e)
        }
    }
}

/// Keeps the live database as `side`, then puts `staging` in its place:
/// through SQLite's backup API when the live database is readable (a
/// running `serve` sees the new content), else by renaming over it.
fn sqlite_replace(live: &Path, side: &Path, staging: &Path) -> Result<Option<PathBuf>, StateError> {
    use rusqlite::{Connection, OpenFlags};
    if !live.exists() {
        std::fs::rename(staging, live).map_err(|e| io(live, e))?;
        files::sync_parent(live).map_err(|e| io(live, e))?;
        return Ok(None);
    }
    let readable = Connection::open_with_flags(live, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()
        .filter(|conn| conn.busy_timeout(Duration::from_secs(10)).is_ok())
        .filter(|conn| {
            conn.query_row("PRAGMA quick_check", [], |row| row.get::<_, String>(0)).is_ok_and(|r| r == "ok")
        });
    match readable {
        Some(conn) => {
            copy_database(&conn, side)?;
            drop(conn);
            let src = Connection::open_with_flags(staging, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| db(staging, "open", e))?;
            let mut dst = Connection::open(live).map_err(|e| db(live, "open", e))?;
            dst.busy_timeout(Duration::from_secs(10)).map_err(|e| db(live, "busy_timeout", e))?;
            let copy = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| db(live, "restore", e))?;
            copy.run_to_completion(256, Duration::from_millis(5), None).map_err(|e| db(live, "restore", e))?;
        }
        None => {
            // Kept byte for byte (with its journal) for whoever wants to look at it.
            for suffix in ["", "-wal"] {
                let (from, to) = (files::with_suffix(live, suffix), files::with_suffix(side, suffix));
                match std::fs::read(&from) {
                    Ok(bytes) => files::write_atomically(&to, &bytes).map_err(|e| io(&to, e))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&from, e)),
                }
            }
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(files::with_suffix(live, suffix));
            }
            std::fs::rename(staging, live).map_err(|e| io(live, e))?;
            files::sync_parent(live).map_err(|e| io(live, e))?;
        }
    }
    Ok(Some(side.to_path_buf()))
}

fn remove_database_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(files::with_suffix(path, suffix));
    }
}

#[cfg(test)]
mod tests;
