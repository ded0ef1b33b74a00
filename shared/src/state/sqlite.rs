//! The SQLite state store: one table per record kind (`connectors`,
//! `leases`, `entries`, `runs`; the ledger digest in `ledger_meta` and
//! `digest_shards`, see `state::digest`) in one database file.
//!
//! WAL journal with `synchronous=NORMAL` (a committed transaction survives a
//! process crash; a power loss may lose the last ones but never corrupts),
//! `busy_timeout` so several processes share the file, schema migrations
//! numbered by `PRAGMA user_version`. Every write that must be atomic
//! (checkpoint, lease acquisition, reset) is one `BEGIN IMMEDIATE`
//! transaction, so its read-then-write cannot interleave with another
//! process. Lookups go through the primary key or an index: looking up N
//! memory ids costs O(N log ledger).
//!
//! Timestamps are stored as RFC 3339 UTC text with exactly three fractional
//! digits (`2026-01-02T03:04:05.678Z`), which sorts like the instant it
//! names; sub-millisecond precision is dropped.
//!
//! The one connection sits behind a mutex and is only used on tokio's
//! blocking pool.

use super::{
    Checkpoint, ConnectorState, DigestShard, EntryStatus, Lease, LeaseOutcome, LedgerEntry, LedgerView, RunCounts,
    RunRecord, RunStatus, StateError, StateStore, StatusSnapshot, Totals,
};
use crate::ids::{ConnectorId, MemoryId, RunId};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{Type, Value};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema steps; step `i` moves `user_version` from `i` to `i + 1`. Append
/// only: a released step never changes.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE connectors (
        connector_id TEXT NOT NULL PRIMARY KEY,
        status TEXT NOT NULL,
        last_run_id TEXT,
        last_run_started TEXT,
        last_run_finished TEXT,
        last_success TEXT,
        consecutive_failures INTEGER NOT NULL,
        paused INTEGER NOT NULL,
        total_runs INTEGER NOT NULL,
        total_ingested INTEGER NOT NULL,
        total_updated INTEGER NOT NULL,
        total_failed INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE leases (
        connector_id TEXT NOT NULL PRIMARY KEY,
        owner TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE entries (
        connector_id TEXT NOT NULL,
        memory_id TEXT NOT NULL,
        status TEXT NOT NULL,
        content_hash TEXT,
        pending_hash TEXT,
        file_source TEXT NOT NULL,
        doc_id TEXT,
        track_id TEXT,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        next_attempt_at TEXT,
        first_seen TEXT NOT NULL,
        last_ingested TEXT,
        PRIMARY KEY (connector_id, memory_id)
    ) STRICT;
    CREATE INDEX entries_by_status ON entries (connector_id, status, memory_id);
    CREATE TABLE runs (
        connector_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        run_trigger TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        possibly_truncated INTEGER NOT NULL,
        error TEXT,
        counts TEXT NOT NULL, -- RunCounts as a JSON object
        PRIMARY KEY (connector_id, run_id)
    ) STRICT;
    CREATE INDEX runs_by_start ON runs (connector_id, started_at);",
    // 2: the key-value cache of enrichments (shared by all connectors).
    "CREATE TABLE cache (
        key TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL,
        expires_at TEXT -- NULL: until replaced
    ) STRICT;
    CREATE INDEX cache_by_expiry ON cache (expires_at);",
    // 3: entry counts per status kept by triggers, so `status` costs the
    // same for 1k and 1M ledger rows (it was a GROUP BY over the ledger).
    "CREATE TABLE entry_counts (
        connector_id TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (connector_id, status)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO entry_counts (connector_id, status, n)
        SELECT connector_id, status, count(*) FROM entries GROUP BY connector_id, status;
    CREATE TRIGGER entries_counted_insert AFTER INSERT ON entries BEGIN
        INSERT INTO entry_counts (connector_id, status, n) VALUES (NEW.connector_id, NEW.status, 1)
            ON CONFLICT (connector_id, status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER entries_counted_delete AFTER DELETE ON entries BEGIN
        UPDATE entry_counts SET n = n - 1 WHERE connector_id = OLD.connector_id AND status = OLD.status;
    END;
    CREATE TRIGGER entries_counted_update AFTER UPDATE OF status ON entries
        WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE entry_counts SET n = n - 1 WHERE connector_id = OLD.connector_id AND status = OLD.status;
        INSERT INTO entry_counts (connector_id, status, n) VALUES (NEW.connector_id, NEW.status, 1)
            ON CONFLICT (connector_id, status) DO UPDATE SET n = n + 1;
    END;",
    // 4: what the delivered document says about each memory (JSON), and
    // entries by their LightRAG name, for the provenance lookups.
    "ALTER TABLE entries ADD COLUMN provenance TEXT;
    CREATE INDEX entries_by_name ON entries (file_source);",
    // 5: the ledger digest (decision 26): generation, root, unconfirmed ids, shards.
    "CREATE TABLE ledger_meta (
        connector_id TEXT NOT NULL PRIMARY KEY,
        generation INTEGER NOT NULL,
        digest_root BLOB, -- NULL: no digest
        unconfirmed TEXT -- JSON array of memory ids; NULL: never recorded
    ) STRICT;
    CREATE TABLE digest_shards (
        connector_id TEXT NOT NULL,
        shard INTEGER NOT NULL,
        records BLOB NOT NULL,
        PRIMARY KEY (connector_id, shard)
    ) STRICT, WITHOUT ROWID;",
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

const ENTRY_COLUMNS: &str = "memory_id, status, content_hash, pending_hash, file_source, doc_id, track_id, \
     attempts, last_error, next_attempt_at, first_seen, last_ingested, provenance";
const RUN_COLUMNS: &str =
    "connector_id, run_id, run_trigger, started_at, finished_at, status, possibly_truncated, error, counts";
const CONNECTOR_COLUMNS: &str = "connector_id, status, last_run_id, last_run_started, last_run_finished, \
     last_success, consecutive_failures, paused, total_runs, total_ingested, total_updated, total_failed";

/// The SQLite [`StateStore`]. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
}

struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.db.path).finish()
    }
}

/// Why an operation stopped: SQLite said no, or a rule of the store did.
enum Failure {
    Sql(rusqlite::Error),
    State(StateError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::State(e)
    }
}

type Step<T> = Result<T, Failure>;

impl SqliteStore {
    /// Opens (creating it and its directories if needed) the database at
    /// `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        let owned = path.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || {
            let conn = open_connection(&owned).map_err(|failure| to_state_error(&owned, "open", failure))?;
            Ok(Self { db: Arc::new(Db { path: owned, conn: Mutex::new(conn) }) })
        })
        .await;
        match opened {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(StateError::Database { path: path.to_path_buf(), detail: format!("open: {join}") }),
        }
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Runs `op` with the connection on the blocking pool; `what` names the
    /// operation in errors.
    async fn call<T, F>(&self, what: &'static str, op: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Step<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic inside a transaction rolled it back when it unwound: the
            // connection is still good.
            let mut conn = db.conn.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut conn).map_err(|failure| to_state_error(&db.path, what, failure))
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(StateError::Database { path: self.db.path.clone(), detail: format!("{what}: {join}") }),
        }
    }
}

fn open_connection(path: &Path) -> Step<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::files::create_dir_all(dir).map_err(|source| StateError::Io { path: dir.to_path_buf(), source })?;
    }
    // Created owner-only before SQLite opens it: SQLite gives its `-wal` and
    // `-shm` files the database file's permissions.
    super::files::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| StateError::Io { path: path.to_path_buf(), source })?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StateError::Database {
            path: path.to_path_buf(),
            detail: format!("could not switch the journal to WAL (it is {mode})"),
        }
        .into());
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(&mut conn, path)?;
    Ok(conn)
}

fn user_version(conn: &Connection, path: &Path) -> Step<usize> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match usize::try_from(version) {
        Ok(version) if version <= MIGRATIONS.len() => Ok(version),
        _ => Err(StateError::Database {
            path: path.to_path_buf(),
            detail: format!(
                "schema version {version} is newer than this build understands ({SCHEMA_VERSION}); \
                 use a newer memory-connector"
            ),
        }
        .into()),
    }
}

/// Applies the missing migration steps, each in its own transaction. The
/// version is read again inside the write transaction, so two processes
/// opening a new file at once apply every step exactly once.
fn migrate(conn: &mut Connection, path: &Path) -> Step<()> {
    if user_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx, path)?;
        let Some(step) = MIGRATIONS.get(version) else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i64::try_from(version + 1).unwrap_or(i64::MAX))?;
        tx.commit()?;
    }
}

fn to_state_error(path: &Path, what: &str, failure: Failure) -> StateError {
    let error = match failure {
        Failure::State(error) => return error,
        Failure::Sql(error) => error,
    };
    let path = path.to_path_buf();
    let detail = format!("{what}: {error}");
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StateError::Locked { path, detail },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StateError::Corrupt { path, detail },
        _ => match error {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => StateError::Corrupt { path, detail },
            _ => StateError::Database { path, detail },
        },
    }
}

// ---------------------------------------------------------------- values

/// A stored value this build cannot read back (hand-edited database?).
#[derive(Debug)]
struct BadValue(String);

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadValue {}

fn bad_value(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(BadValue(message)))
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_timestamp(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(timestamp)
}

fn parse_timestamp(column: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| bad_value(column, format!("timestamp {text:?}: {e}")))
}

fn get_timestamp(row: &Row<'_>, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    parse_timestamp(column, &row.get::<_, String>(column)?)
}

fn get_opt_timestamp(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(column)?.map(|text| parse_timestamp(column, &text)).transpose()
}

fn get_entry_status(row: &Row<'_>, column: usize) -> rusqlite::Result<EntryStatus> {
    let text: String = row.get(column)?;
    EntryStatus::parse(&text).ok_or_else(|| bad_value(column, format!("unknown entry status {text:?}")))
}

fn get_run_status(row: &Row<'_>, column: usize) -> rusqlite::Result<RunStatus> {
    let text: String = row.get(column)?;
    RunStatus::parse(&text).ok_or_else(|| bad_value(column, format!("unknown run status {text:?}")))
}

/// SQLite integers are signed; counters beyond `i64::MAX` are refused, not wrapped.
fn int(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn get_u64(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        memory_id: MemoryId::new(row.get::<_, String>(0)?),
        status: get_entry_status(row, 1)?,
        content_hash: row.get::<_, Option<String>>(2)?.map(Into::into),
        pending_hash: row.get::<_, Option<String>>(3)?.map(Into::into),
        file_source: row.get(4)?,
        doc_id: row.get::<_, Option<String>>(5)?.map(Into::into),
        track_id: row.get::<_, Option<String>>(6)?.map(Into::into),
        attempts: row.get(7)?,
        last_error: row.get(8)?,
        next_attempt_at: get_opt_timestamp(row, 9)?,
        first_seen: get_timestamp(row, 10)?,
        last_ingested: get_opt_timestamp(row, 11)?,
        provenance: row
            .get::<_, Option<String>>(12)?
            .map(|text| serde_json::from_str(&text).map_err(|e| bad_value(12, format!("provenance {text:?}: {e}"))))
            .transpose()?,
    })
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let counts_text: String = row.get(8)?;
    let counts: RunCounts =
        serde_json::from_str(&counts_text).map_err(|e| bad_value(8, format!("run counts {counts_text:?}: {e}")))?;
    Ok(RunRecord {
        connector_id: ConnectorId::new(row.get::<_, String>(0)?),
        run_id: RunId::new(row.get::<_, String>(1)?),
        trigger: crate::state::Trigger::parse(&row.get::<_, String>(2)?),
        started_at: get_timestamp(row, 3)?,
        finished_at: get_opt_timestamp(row, 4)?,
        status: get_run_status(row, 5)?,
        possibly_truncated: row.get(6)?,
        error: row.get(7)?,
        counts,
    })
}

fn connector_from_row(row: &Row<'_>) -> rusqlite::Result<ConnectorState> {
    Ok(ConnectorState {
        connector_id: ConnectorId::new(row.get::<_, String>(0)?),
        status: get_run_status(row, 1)?,
        last_run_id: row.get::<_, Option<String>>(2)?.map(Into::into),
        last_run_started: get_opt_timestamp(row, 3)?,
        last_run_finished: get_opt_timestamp(row, 4)?,
        last_success: get_opt_timestamp(row, 5)?,
        consecutive_failures: row.get(6)?,
        paused: row.get(7)?,
        totals: Totals {
            runs: get_u64(row, 8)?,
            ingested: get_u64(row, 9)?,
            updated: get_u64(row, 10)?,
            failed: get_u64(row, 11)?,
        },
    })
}

fn lease_from_row(row: &Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        owner: RunId::new(row.get::<_, String>(0)?),
        acquired_at: get_timestamp(row, 1)?,
        expires_at: get_timestamp(row, 2)?,
    })
}

fn read_lease(conn: &Connection, connector: &ConnectorId) -> rusqlite::Result<Option<Lease>> {
    conn.prepare_cached("SELECT owner, acquired_at, expires_at FROM leases WHERE connector_id = ?1")?
        .query_row([connector.as_str()], lease_from_row)
        .optional()
}

fn read_connector_state(conn: &Connection, connector: &ConnectorId) -> rusqlite::Result<Option<ConnectorState>> {
    conn.prepare_cached(&format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE connector_id = ?1"))?
        .query_row([connector.as_str()], connector_from_row)
        .optional()
}

/// Entries per status, from the counts the triggers keep (migration 3).
fn read_counts(conn: &Connection, connector: &ConnectorId) -> rusqlite::Result<BTreeMap<EntryStatus, u64>> {
    let mut query = conn.prepare_cached("SELECT status, n FROM entry_counts WHERE connector_id = ?1 AND n > 0")?;
    let rows = query.query_map([connector.as_str()], |row| Ok((get_entry_status(row, 0)?, get_u64(row, 1)?)))?;
    rows.collect()
}

/// Run history, newest first.
fn read_runs(conn: &Connection, connector: &ConnectorId, limit: usize) -> rusqlite::Result<Vec<RunRecord>> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE connector_id = ?1 ORDER BY started_at DESC, run_id DESC LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query.query_map(params![connector.as_str(), limit], run_from_row)?;
    rows.collect()
}

fn write_checkpoint(tx: &Transaction<'_>, connector: &ConnectorId, checkpoint: Checkpoint) -> Step<()> {
    let Checkpoint { entries, connector: state, run, lease_owner, digest, .. } = checkpoint.marks_as_entries();
    let moves_generation = lease_owner.is_none() && !entries.is_empty();
    if let Some(owner) = lease_owner {
        let holder = read_lease(tx, connector)?.map(|lease| lease.owner);
        if holder.as_ref() != Some(&owner) {
            return Err(StateError::LeaseLost { connector: connector.clone(), owner }.into());
        }
    }
    if !entries.is_empty() {
        let mut upsert = tx.prepare_cached(&format!(
            // An upsert, not INSERT OR REPLACE: a replace deletes without
            // firing the delete trigger, and the counts would drift.
            "INSERT INTO entries (connector_id, {ENTRY_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT (connector_id, memory_id) DO UPDATE SET status = excluded.status, \
             content_hash = excluded.content_hash, pending_hash = excluded.pending_hash, \
             file_source = excluded.file_source, doc_id = excluded.doc_id, track_id = excluded.track_id, \
             attempts = excluded.attempts, last_error = excluded.last_error, \
             next_attempt_at = excluded.next_attempt_at, first_seen = excluded.first_seen, \
             last_ingested = excluded.last_ingested, provenance = excluded.provenance"
        ))?;
        for entry in &entries {
            let provenance = entry
                .provenance
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            upsert.execute(params![
                connector.as_str(),
                entry.memory_id.as_str(),
                entry.status.as_str(),
                entry.content_hash.as_ref().map(|h| h.as_str()),
                entry.pending_hash.as_ref().map(|h| h.as_str()),
                entry.file_source,
                entry.doc_id.as_ref().map(|d| d.as_str()),
                entry.track_id.as_ref().map(|t| t.as_str()),
                entry.attempts,
                entry.last_error,
                opt_timestamp(entry.next_attempt_at),
                timestamp(entry.first_seen),
                opt_timestamp(entry.last_ingested),
                provenance,
            ])?;
        }
    }
    if let Some(state) = state {
        tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO connectors ({CONNECTOR_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))?
        .execute(params![
            connector.as_str(),
            state.status.as_str(),
            state.last_run_id.as_ref().map(|r| r.as_str()),
            opt_timestamp(state.last_run_started),
            opt_timestamp(state.last_run_finished),
            opt_timestamp(state.last_success),
            state.consecutive_failures,
            state.paused,
            int(state.totals.runs)?,
            int(state.totals.ingested)?,
            int(state.totals.updated)?,
            int(state.totals.failed)?,
        ])?;
    }
    if moves_generation {
        tx.prepare_cached(
            "INSERT INTO ledger_meta (connector_id, generation) VALUES (?1, 1) \
             ON CONFLICT (connector_id) DO UPDATE SET generation = generation + 1",
        )?
        .execute([connector.as_str()])?;
    }
    if let Some(write) = digest {
        digest::write(tx, connector, write)?;
    }
    if let Some(run) = run {
        let counts =
            serde_json::to_string(&run.counts).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?
        .execute(params![
            connector.as_str(),
            run.run_id.as_str(),
            run.trigger.as_str(),
            timestamp(run.started_at),
            opt_timestamp(run.finished_at),
            run.status.as_str(),
            run.possibly_truncated,
            run.error,
            counts,
        ])?;
    }
    Ok(())
}

/// Distinct connector ids of a table whose key starts with `connector_id`:
/// one index seek per connector instead of a scan of the table.
fn distinct_connectors(conn: &Connection, table: &str, into: &mut BTreeSet<String>) -> rusqlite::Result<()> {
    let mut next = conn.prepare_cached(&format!(
        "SELECT connector_id FROM {table} WHERE connector_id > ?1 ORDER BY connector_id LIMIT 1"
    ))?;
    let mut first = conn.prepare_cached(&format!("SELECT min(connector_id) FROM {table}"))?;
    let mut current: Option<String> = first.query_row([], |row| row.get(0))?;
    while let Some(id) = current {
        current = next.query_row([&id], |row| row.get(0)).optional()?;
        into.insert(id);
    }
    Ok(())
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        let (connector, owner) = (connector.clone(), owner.clone());
        self.call("acquire lease", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(held) = read_lease(&tx, &connector)?.filter(|l| !l.can_be_taken_by(&owner, now)) {
                return Ok(LeaseOutcome::Held(held));
            }
            let lease = Lease::new(owner, now, ttl);
            tx.prepare_cached(
                "INSERT OR REPLACE INTO leases (connector_id, owner, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                connector.as_str(),
                lease.owner.as_str(),
                timestamp(lease.acquired_at),
                timestamp(lease.expires_at)
            ])?;
            tx.commit()?;
            Ok(LeaseOutcome::Acquired(lease))
        })
        .await
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        let (connector, owner) = (connector.clone(), owner.clone());
        self.call("release lease", move |conn| {
            conn.prepare_cached("DELETE FROM leases WHERE connector_id = ?1 AND owner = ?2")?
                .execute([connector.as_str(), owner.as_str()])?;
            Ok(())
        })
        .await
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        let connector = connector.clone();
        self.call("read lease", move |conn| Ok(read_lease(conn, &connector)?)).await
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        let connector = connector.clone();
        self.call("read connector state", move |conn| Ok(read_connector_state(conn, &connector)?)).await
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.call("list connectors", |conn| {
            let tx = conn.transaction()?;
            let mut ids = BTreeSet::new();
            for table in ["connectors", "leases", "entries", "runs"] {
                distinct_connectors(&tx, table, &mut ids)?;
            }
            tx.commit()?;
            Ok(ids.into_iter().map(ConnectorId::new).collect())
        })
        .await
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let (connector, ids) = (connector.clone(), ids.to_vec());
        self.call("read entries", move |conn| {
            // One read transaction: all the lookups see the same snapshot.
            let tx = conn.transaction()?;
            // Sized as it fills: a first sync finds none of the page's ids.
            let mut found = HashMap::new();
            {
                let mut lookup = tx.prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM entries WHERE connector_id = ?1 AND memory_id = ?2"
                ))?;
                for id in ids {
                    if let Some(entry) =
                        lookup.query_row([connector.as_str(), id.as_str()], entry_from_row).optional()?
                    {
                        found.insert(id, entry);
                    }
                }
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    async fn entries_with_status_after(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let statuses: BTreeSet<EntryStatus> = statuses.iter().copied().collect();
        if statuses.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (connector, after) = (connector.clone(), after.cloned());
        self.call("read entries by status", move |conn| {
            let placeholders = vec!["?"; statuses.len()].join(", ");
            let from = if after.is_some() { "AND memory_id > ? " } else { "" };
            let mut query = conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE connector_id = ? AND status IN ({placeholders}) \
                 {from}ORDER BY memory_id LIMIT ?"
            ))?;
            let mut values = vec![Value::Text(connector.as_str().to_owned())];
            values.extend(statuses.iter().map(|s| Value::Text(s.as_str().to_owned())));
            values.extend(after.map(|id| Value::Text(id.as_str().to_owned())));
            values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            let rows = query.query_map(rusqlite::params_from_iter(values), entry_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let names = names.to_vec();
        self.call("read entries by name", move |conn| Ok(names::entries_named(conn, &names)?)).await
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        let connector = connector.clone();
        self.call("count entries", move |conn| Ok(read_counts(conn, &connector)?)).await
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let connector = connector.clone();
        self.call("checkpoint", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            write_checkpoint(&tx, &connector, checkpoint)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError> {
        let connector = connector.clone();
        self.call("read ledger digest", move |conn| {
            let tx = conn.transaction()?;
            let view = digest::read_ledger_view(&tx, &connector)?;
            tx.commit()?;
            Ok(view)
        })
        .await
    }

    async fn digest_shards(&self, connector: &ConnectorId, shards: &[u16]) -> Result<Vec<DigestShard>, StateError> {
        let (connector, shards) = (connector.clone(), shards.to_vec());
        self.call("read digest shards", move |conn| {
            let tx = conn.transaction()?;
            let out = digest::read_shards(&tx, &connector, shards)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let connector = connector.clone();
        self.call("read runs", move |conn| Ok(read_runs(conn, &connector, limit)?)).await
    }

    async fn status_snapshot(&self, connector: &ConnectorId) -> Result<StatusSnapshot, StateError> {
        let connector = connector.clone();
        self.call("read status", move |conn| {
            // One read transaction: the four parts agree with each other.
            let tx = conn.transaction()?;
            let snapshot = StatusSnapshot {
                state: read_connector_state(&tx, &connector)?,
                lease: read_lease(&tx, &connector)?,
                counts: read_counts(&tx, &connector)?,
                last_run: read_runs(&tx, &connector, 1)?.into_iter().next(),
            };
            tx.commit()?;
            Ok(snapshot)
        })
        .await
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        let connector = connector.clone();
        self.call("reset", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(lease) = read_lease(&tx, &connector)?.filter(|l| !l.is_expired_at(now)) {
                return Err(StateError::Busy { connector, owner: lease.owner, expires_at: lease.expires_at }.into());
            }
            for table in ["entries", "connectors", "leases", "ledger_meta", "digest_shards"] {
                tx.execute(&format!("DELETE FROM {table} WHERE connector_id = ?1"), [connector.as_str()])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        let key = key.to_owned();
        self.call("read cache", move |conn| {
            let mut query = conn
                .prepare_cached("SELECT value FROM cache WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)")?;
            Ok(query.query_row(params![key, timestamp(now)], |row| row.get::<_, String>(0)).optional()?)
        })
        .await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.call("write cache", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Expired values are dropped here so the table does not grow forever.
            tx.execute("DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at <= ?1", [timestamp(Utc::now())])?;
            tx.execute(
                "INSERT INTO cache (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                params![key, value, expires_at.map(timestamp)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        let connector = connector.clone();
        self.call("prune runs", move |conn| {
            let removed = conn.execute(
                "DELETE FROM runs WHERE connector_id = ?1 AND started_at < ?2",
                params![connector.as_str(), timestamp(before)],
            )?;
            Ok(removed as u64)
        })
        .await
    }
}

mod digest;
mod names;
#[cfg(test)]
mod tests;
pub(crate) mod verify;
