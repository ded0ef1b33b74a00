//! The ledger digest's tables (migration 4, see `state::digest`):
//! `ledger_meta` (generation, root, unconfirmed ids) and `digest_shards`.

use super::{Step, bad_value, get_u64, read_counts};
use crate::ids::{ConnectorId, MemoryId};
use crate::state::{DigestRoot, DigestShard, DigestWrite, LedgerView};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

fn to_sql_error(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

pub(super) fn write(tx: &Transaction<'_>, connector: &ConnectorId, write: DigestWrite) -> Step<()> {
    let unconfirmed = write.unconfirmed.as_ref().map(serde_json::to_string).transpose().map_err(to_sql_error)?;
    let root = write.digest.as_ref().map(|(root, _)| root.to_bytes());
    tx.prepare_cached(
        "INSERT INTO ledger_meta (connector_id, generation, digest_root, unconfirmed) VALUES (?1, 0, ?2, ?3) \
         ON CONFLICT (connector_id) DO UPDATE SET digest_root = excluded.digest_root, unconfirmed = excluded.unconfirmed",
    )?
    .execute(params![connector.as_str(), root, unconfirmed])?;
    match write.digest {
        Some((_, shards)) => {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO digest_shards (connector_id, shard, records) VALUES (?1, ?2, ?3)",
            )?;
            for shard in shards {
                put.execute(params![connector.as_str(), shard.shard, shard.to_bytes()])?;
            }
        }
        None => {
            tx.prepare_cached("DELETE FROM digest_shards WHERE connector_id = ?1")?.execute([connector.as_str()])?;
        }
    }
    Ok(())
}

pub(super) fn read_ledger_view(conn: &Connection, connector: &ConnectorId) -> rusqlite::Result<LedgerView> {
    let entries = read_counts(conn, connector)?.values().sum();
    let meta = conn
        .prepare_cached("SELECT generation, digest_root, unconfirmed FROM ledger_meta WHERE connector_id = ?1")?
        .query_row([connector.as_str()], |row| {
            Ok((get_u64(row, 0)?, row.get::<_, Option<Vec<u8>>>(1)?, row.get::<_, Option<String>>(2)?))
        })
        .optional()?;
    let Some((generation, root, unconfirmed)) = meta else {
        return Ok(LedgerView { entries, ..LedgerView::default() });
    };
    let digest = root
        .map(|bytes| DigestRoot::from_bytes(&bytes).map_err(|e| bad_value(1, e)))
        .transpose()?
        .filter(|root| root.generation == generation);
    let unconfirmed = unconfirmed
        .map(|text| serde_json::from_str::<Vec<MemoryId>>(&text).map_err(|e| bad_value(2, format!("{e}"))))
        .transpose()?;
    Ok(LedgerView { generation, entries, digest, unconfirmed })
}

pub(super) fn read_shards(
    conn: &Connection,
    connector: &ConnectorId,
    shards: Vec<u16>,
) -> rusqlite::Result<Vec<DigestShard>> {
    let mut query = conn.prepare_cached("SELECT records FROM digest_shards WHERE connector_id = ?1 AND shard = ?2")?;
    let mut out = Vec::with_capacity(shards.len());
    for shard in shards {
        let bytes: Option<Vec<u8>> =
            query.query_row(params![connector.as_str(), shard], |row| row.get(0)).optional()?;
        out.push(match bytes {
            Some(bytes) => DigestShard::from_bytes(shard, &bytes).map_err(|e| bad_value(0, e))?,
            None => DigestShard { shard, records: Vec::new() },
        });
    }
    Ok(out)
}
