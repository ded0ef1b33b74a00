//! What DynamoDB charges for what the `dynamodb` store sends (on-demand
//! capacity): the one home of the pricing rules. The store counts its own
//! requests with them ([`Units`], `DynamoStore::units`); the cost model
//! ([`model::CostModel`], the bench's figure 8) counts what the store would
//! send for the same calls. A test runs both on one workload and compares.
//!
//! - Reads: strongly consistent, 1 read unit per 4 KB of each item (an
//!   absent key costs 1 too); a Query charges its total size, halved when
//!   eventually consistent (the `open` index), at least 1.
//! - Writes: 1 write unit per 1 KB of the item (an update: of the item as it
//!   ends up), a failed condition 1 too; inside `TransactWriteItems` twice
//!   that, a `ConditionCheck` included; 1 more per change to the sparse
//!   `open` index (2 when an entry moves between two indexed statuses).

pub mod model;

use serde::Serialize;

/// Prices used (AWS us-east-1, on-demand, November 2026 list prices).
pub const DYNAMODB_USD_PER_WRU: f64 = 0.625 / 1e6;
pub const DYNAMODB_USD_PER_RRU: f64 = 0.125 / 1e6;

const READ_BYTES: usize = 4096;
const WRITE_BYTES: usize = 1024;

/// Request units and requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub read_units: u64,
    pub write_units: u64,
    /// Requests sent.
    pub calls: u64,
}

impl Units {
    pub fn add(&mut self, other: Units) {
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.calls += other.calls;
    }

    pub fn usd(&self) -> f64 {
        self.read_units as f64 * DYNAMODB_USD_PER_RRU + self.write_units as f64 * DYNAMODB_USD_PER_WRU
    }
}

/// A strongly consistent read of one item of `bytes` (0: absent).
pub fn read_item(bytes: usize) -> u64 {
    bytes.div_ceil(READ_BYTES).max(1) as u64
}

/// A Query (or Scan) that returned `bytes` in all.
pub fn read_query(bytes: usize, consistent: bool) -> u64 {
    let units = bytes.div_ceil(READ_BYTES).max(1) as u64;
    if consistent { units } else { units.div_ceil(2) }
}

/// A standard write (put, update, delete, or a failed condition) of an item of `bytes`.
pub fn write_item(bytes: usize) -> u64 {
    bytes.div_ceil(WRITE_BYTES).max(1) as u64
}

/// One action of a `TransactWriteItems` on an item of `bytes`.
pub fn transact_item(bytes: usize) -> u64 {
    2 * write_item(bytes)
}

/// Writes to the sparse `open` index when an entry goes from `before` to
/// `after` (`None`: not in the index).
pub fn index_writes<S: PartialEq>(before: Option<S>, after: Option<S>) -> u64 {
    match (before, after) {
        (None, None) => 0,
        (Some(b), Some(a)) if b == a => 0,
        (Some(_), Some(_)) => 2,
        _ => 1,
    }
}

/// A look-up of at least this many ids that are at least one in
/// [`DENSE_SHARE`] of a connector's entries reads them as a key range
/// (DynamoDB): a `Query` charges a unit per 4 KB read, a `BatchGetItem` one
/// per item. The range holds at most `DENSE_SHARE` entries per id wanted,
/// each under 1 KB, so it never costs more than the items one by one, and
/// a fifth of it where the ids are most of the ledger (a confirming run
/// after a first sync). Knowing the ledger's size costs one small read.
pub const DENSE_MIN: usize = 100;
pub const DENSE_SHARE: u64 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_up_per_item() {
        assert_eq!(read_item(0), 1);
        assert_eq!(read_item(4096), 1);
        assert_eq!(read_item(4097), 2);
        assert_eq!(write_item(1024), 1);
        assert_eq!(write_item(1025), 2);
        assert_eq!(transact_item(10), 2);
        assert_eq!(read_query(9000, false), 2);
        assert_eq!(index_writes(Some(1), Some(2)), 2);
        assert_eq!(index_writes(None::<u8>, Some(2)), 1);
        let units = Units { read_units: 1_000_000, write_units: 1_000_000, calls: 2 };
        assert!((units.usd() - 0.75).abs() < 1e-9);
    }
}
