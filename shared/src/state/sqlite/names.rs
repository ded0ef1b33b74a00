//! Entries by their LightRAG name (`file_source`), through the
//! `entries_by_name` index (migration 4): a look-up costs O(names log ledger).

use super::{ENTRY_COLUMNS, entry_from_row};
use crate::ids::ConnectorId;
use crate::state::LedgerEntry;
use rusqlite::Connection;
use std::collections::BTreeSet;

/// Names per statement (SQLite allows 32,766 parameters; smaller statements
/// stay in the prepared-statement cache).
const NAMES_PER_QUERY: usize = 200;
/// The columns of [`ENTRY_COLUMNS`]; the connector id follows them.
const ENTRY_COLUMN_COUNT: usize = 13;

/// Ledger entries, in every connector, whose `file_source` is one of `names`,
/// ordered by connector then memory id.
pub(super) fn entries_named(
    conn: &mut Connection,
    names: &[String],
) -> rusqlite::Result<Vec<(ConnectorId, LedgerEntry)>> {
    let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let unique: Vec<&str> = unique.into_iter().collect();
    // One read transaction: every chunk sees the same snapshot.
    let tx = conn.transaction()?;
    let mut found = Vec::new();
    for chunk in unique.chunks(NAMES_PER_QUERY) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let mut query = tx.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS}, connector_id FROM entries WHERE file_source IN ({placeholders})"
        ))?;
        let rows = query.query_map(rusqlite::params_from_iter(chunk.iter()), |row| {
            // The entry's columns come first, as `entry_from_row` reads them.
            Ok((ConnectorId::new(row.get::<_, String>(ENTRY_COLUMN_COUNT)?), entry_from_row(row)?))
        })?;
        for row in rows {
            found.push(row?);
        }
    }
    tx.commit()?;
    found.sort_by(|(a, x), (b, y)| (a, &x.memory_id).cmp(&(b, &y.memory_id)));
    Ok(found)
}

#[cfg(test)]
#[test]
fn the_connector_column_follows_the_entry_columns() {
    assert_eq!(ENTRY_COLUMNS.split(',').count(), ENTRY_COLUMN_COUNT);
}
