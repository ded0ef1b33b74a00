//! What each request costs (`state::cost`'s rules applied to the items sent
//! and received): every call adds to [`DynamoStore::units`].

use super::DynamoStore;
use super::keys::Item;
use crate::state::cost::{self, Units};
use aws_sdk_dynamodb::types::AttributeValue;
use std::sync::PoisonError;

/// An item's size as DynamoDB counts it: names plus values.
pub(super) fn item_bytes(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_bytes(value)).sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        // ~1 byte per two significant digits, plus one.
        AttributeValue::N(n) => n.trim_start_matches('-').trim_start_matches('0').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_bytes(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_bytes(e)).sum::<usize>(),
        _ => 0,
    }
}

impl DynamoStore {
    /// Units (and requests) spent so far; clones share them.
    pub fn units(&self) -> Units {
        *self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn charge(&self, read_units: u64, write_units: u64) {
        self.units.lock().unwrap_or_else(PoisonError::into_inner).add(Units { read_units, write_units, calls: 1 });
    }

    /// A strongly consistent read of these items (plus `absent` keys that found nothing).
    pub(super) fn charge_reads(&self, items: &[Item], absent: usize) {
        let units: u64 = items.iter().map(|i| cost::read_item(item_bytes(i))).sum::<u64>() + absent as u64;
        self.charge(units, 0);
    }
}
