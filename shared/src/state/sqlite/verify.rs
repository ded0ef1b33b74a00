//! Checking a SQLite backup before `state restore` puts it in place: it must
//! be a memory-connector state database this build understands, pass
//! SQLite's full integrity check, and every record of it must read back as
//! the store reads it. The checked copy (brought to the current schema) is
//! what the restore then installs, so nothing unread reaches the live state.

use super::{
    CONNECTOR_COLUMNS, ENTRY_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION, connector_from_row, entry_from_row, lease_from_row,
    open_connection, parse_timestamp, run_from_row, to_state_error,
};
use crate::state::{StateError, files};
use rusqlite::{Connection, OpenFlags, Row};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The tables of the first schema version; a database without them is not ours.
const TABLES: [&str; 4] = ["connectors", "leases", "entries", "runs"];

/// What a checked backup holds: connectors, ledger entries, run records.
pub(crate) type Counts = (usize, u64, u64);

/// Checks the backup at `backup` and copies it to `staging` (owner-only,
/// at the current schema). On error `staging` may be left half-written:
/// the caller removes it.
pub(crate) fn stage_backup(backup: &Path, staging: &Path) -> Result<Counts, StateError> {
    let bad = |detail: String| StateError::BadBackup { path: backup.to_path_buf(), detail };
    check_header(backup)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let src = Connection::open_with_flags(backup, flags)
        .map_err(|e| bad(format!("cannot be opened as a SQLite database: {e}")))?;
    let _ = src.busy_timeout(Duration::from_secs(10));
    check_integrity(&src).map_err(bad)?;
    check_schema(&src).map_err(bad)?;

    let staging_error = |what: &str, e: rusqlite::Error| StateError::Database {
        path: staging.to_path_buf(),
        detail: format!("{what}: {e}"),
    };
    files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(staging)
        .map_err(|source| StateError::Io { path: staging.to_path_buf(), source })?;
    {
        let mut dst = Connection::open(staging).map_err(|e| staging_error("open", e))?;
        let copy = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| staging_error("copy the backup", e))?;
        copy.run_to_completion(256, Duration::from_millis(5), None).map_err(|e| staging_error("copy the backup", e))?;
    }
    drop(src);
    let conn = open_connection(staging).map_err(|failure| match to_state_error(staging, "open", failure) {
        // A schema this build cannot bring up to date is the backup's problem.
        StateError::Database { detail, .. } | StateError::Corrupt { detail, .. } => bad(detail),
        other => other,
    })?;
    let counts = read_every_record(&conn).map_err(bad)?;
    // The ledger counts are derived: rebuilt from the rows, never trusted.
    conn.execute_batch(
        "DELETE FROM entry_counts;
         INSERT INTO entry_counts (connector_id, status, n)
             SELECT connector_id, status, count(*) FROM entries GROUP BY connector_id, status;",
    )
    .map_err(|e| staging_error("count the ledger", e))?;
    // One self-contained file, so it can be renamed into place.
    conn.pragma_update(None, "journal_mode", "DELETE").map_err(|e| staging_error("leave WAL mode", e))?;
    drop(conn);
    Ok(counts)
}

fn check_header(backup: &Path) -> Result<(), StateError> {
    let bad = |detail: String| StateError::BadBackup { path: backup.to_path_buf(), detail };
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    std::fs::File::open(backup)
        .and_then(|file| file.take(SQLITE_MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(|source| StateError::Io { path: backup.to_path_buf(), source })?;
    if head.is_empty() {
        return Err(bad("is empty (0 bytes): not a state backup".into()));
    }
    if head.as_slice() != SQLITE_MAGIC {
        let looks_json = head.first().is_some_and(|b| *b == b'{') || crate::state::cipher::is_encrypted(&head);
        let hint = if looks_json { " (it looks like a JSON state: is state.backend right?)" } else { "" };
        return Err(bad(format!("is not a SQLite database{hint}")));
    }
    Ok(())
}

fn check_integrity(conn: &Connection) -> Result<(), String> {
    let mut query = conn.prepare("PRAGMA integrity_check(5)").map_err(|e| format!("is not readable: {e}"))?;
    let findings: Vec<String> = query
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(|e| format!("is damaged: {e}"))?;
    match findings.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(format!("is damaged (SQLite integrity check: {})", findings.join("; "))),
    }
}

fn check_schema(conn: &Connection) -> Result<(), String> {
    let version: i64 =
        conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| format!("is not readable: {e}"))?;
    let mut query = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .map_err(|e| format!("is not readable: {e}"))?;
    let tables: Vec<String> = query
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(|e| format!("is not readable: {e}"))?;
    let missing: Vec<&str> = TABLES.into_iter().filter(|t| !tables.iter().any(|have| have == t)).collect();
    if version < 1 || !missing.is_empty() {
        let have = if tables.is_empty() { "none".to_owned() } else { tables.join(", ") };
        return Err(format!(
            "is not a memory-connector state database (schema version {version}; tables: {have}; missing: {})",
            missing.join(", ")
        ));
    }
    if usize::try_from(version).map_or(true, |v| v > SCHEMA_VERSION) {
        return Err(format!(
            "has schema version {version}, newer than this build understands ({SCHEMA_VERSION}); use a newer memory-connector"
        ));
    }
    Ok(())
}

/// Reads every row of every table with the store's own decoders.
fn read_every_record(conn: &Connection) -> Result<Counts, String> {
    let entries = each_row(conn, &format!("SELECT {ENTRY_COLUMNS}, rowid FROM entries"), "ledger entry", 12, |row| {
        entry_from_row(row).map(drop)
    })?;
    let runs = each_row(conn, &format!("SELECT {RUN_COLUMNS}, rowid FROM runs"), "run record", 9, |row| {
        run_from_row(row).map(drop)
    })?;
    each_row(conn, &format!("SELECT {CONNECTOR_COLUMNS}, rowid FROM connectors"), "connector", 12, |row| {
        connector_from_row(row).map(drop)
    })?;
    each_row(conn, "SELECT owner, acquired_at, expires_at, rowid FROM leases", "lease", 3, |row| {
        lease_from_row(row).map(drop)
    })?;
    each_row(conn, "SELECT key, value, expires_at, rowid FROM cache", "cache value", 3, |row| {
        let _: (String, String) = (row.get(0)?, row.get(1)?);
        row.get::<_, Option<String>>(2)?.map(|at| parse_timestamp(2, &at)).transpose().map(drop)
    })?;
    let connectors: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT connector_id FROM connectors UNION SELECT connector_id FROM entries \
             UNION SELECT connector_id FROM runs UNION SELECT connector_id FROM leases)",
            [],
            |row| row.get(0),
        )
        .map_err(|e| format!("is not readable: {e}"))?;
    Ok((usize::try_from(connectors).unwrap_or(0), entries, runs))
}

/// Runs `check` on every row of `sql`, whose column `rowid_column` is the
/// rowid (named in the error). Returns how many rows there were.
fn each_row(
    conn: &Connection,
    sql: &str,
    what: &str,
    rowid_column: usize,
    check: impl Fn(&Row<'_>) -> rusqlite::Result<()>,
) -> Result<u64, String> {
    let unreadable = |e: rusqlite::Error| format!("its {what}s cannot be read: {e}");
    let mut query = conn.prepare(sql).map_err(unreadable)?;
    let mut rows = query.query([]).map_err(unreadable)?;
    let mut count = 0;
    while let Some(row) = rows.next().map_err(unreadable)? {
        if let Err(e) = check(row) {
            let rowid: i64 = row.get(rowid_column).unwrap_or(-1);
            return Err(format!("{what} (row {rowid}) cannot be read: {e}"));
        }
        count += 1;
    }
    Ok(count)
}
