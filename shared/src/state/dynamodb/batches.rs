//! A run's writes (checkpoints with a lease owner), without a transaction
//! per entry (decision 26):
//!
//! 1. One conditional `UpdateItem` of the lease item: the fence (`owner` is
//!    this run), no other writer's batch pending, the count changes the
//!    batch assumes (`ADD`), and the batch itself as pending (ids, statuses
//!    before and after, a random token).
//! 2. One conditional `PutItem` per entry, carrying the token. The status it
//!    assumed comes from what this instance last read or wrote (a new memory:
//!    absent); a put whose condition fails is read and rewritten together
//!    with its count correction in one transaction.
//! 3. The next state write clears the pending batch. A crash between 1 and 3
//!    leaves it: the next writer reads its entries and takes back the count
//!    change of each one that does not carry the token.

use super::DynamoStore;
use super::counts::{Condition, Current};
use super::io::{Transacted, backoff};
use super::keys::*;
use super::units::item_bytes;
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::cost;
use crate::state::marks::{status_code, status_of};
use crate::state::{ConnectorState, DigestWrite, EntryStatus, LedgerEntry, RunRecord, StateError, StateStore};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};

/// Entry puts of one batch in flight at once.
const PUTS_IN_FLIGHT: usize = 16;

/// One entry of a pending batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    pub id: MemoryId,
    pub before: Option<EntryStatus>,
    pub after: EntryStatus,
}

/// `u16` id length, id, status before, status after; per entry.
fn encode(batch: &[Pending]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in batch {
        let id = p.id.as_str().as_bytes();
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id);
        out.push(status_code(p.before));
        out.push(status_code(Some(p.after)));
    }
    out
}

fn decode(mut bytes: &[u8]) -> Result<Vec<Pending>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = bytes.get(..2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))).ok_or("truncated")?;
        let id = bytes.get(2..2 + len).ok_or("truncated id")?;
        let id = std::str::from_utf8(id).map_err(|e| e.to_string())?;
        let codes = bytes.get(2 + len..4 + len).ok_or("truncated statuses")?;
        let after = status_of(codes[1])?.ok_or("a pending entry without a status")?;
        out.push(Pending { id: MemoryId::new(id), before: status_of(codes[0])?, after });
        bytes = &bytes[4 + len..];
    }
    Ok(out)
}

/// The count changes of moving these entries.
fn delta<'a>(moves: impl IntoIterator<Item = (Option<EntryStatus>, EntryStatus)> + 'a) -> BTreeMap<EntryStatus, i64> {
    let mut delta = BTreeMap::new();
    for (before, after) in moves {
        if before != Some(after) {
            if let Some(before) = before {
                *delta.entry(before).or_default() -= 1;
            }
            *delta.entry(after).or_default() += 1;
        }
    }
    delta.retain(|_, n| *n != 0);
    delta
}

impl DynamoStore {
    /// Writes one batch of a run (see the module doc).
    pub(super) async fn fenced_part(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        part: &[LedgerEntry],
    ) -> Result<(), StateError> {
        if self.with_local(connector, |l| l.unsettled) {
            self.settle_pending(connector).await?;
        }
        let batch: Vec<Pending> = self.with_local(connector, |local| {
            part.iter()
                .map(|e| Pending {
                    id: e.memory_id.clone(),
                    before: local.hints.get(&e.memory_id).copied().flatten(),
                    after: e.status,
                })
                .collect()
        });
        let token = format!("{:016x}", fastrand::u64(..));
        self.begin_batch(connector, owner, &batch, &token).await?;
        self.with_local(connector, |l| l.unsettled = true);

        let mut puts = Vec::with_capacity(part.len());
        for (entry, pending) in part.iter().zip(&batch) {
            let item = self.entry_item(connector, entry, Some(&token))?;
            let pending = pending.clone();
            puts.push(async move {
                let written = self.put_one(item, pending.before, pending.after).await?;
                Ok::<_, StateError>((pending, written))
            });
        }
        let results: Vec<Result<(Pending, bool), StateError>> =
            futures_util::stream::iter(puts).buffer_unordered(PUTS_IN_FLIGHT).collect().await;
        let mut conflicts = Vec::new();
        for result in results {
            match result {
                Ok((_, true)) => {}
                Ok((pending, false)) => conflicts.push(pending),
                Err(error) => {
                    // Settle what did get written before reporting.
                    let _ = self.settle_pending(connector).await;
                    return Err(error);
                }
            }
        }
        if !conflicts.is_empty() {
            let entries: HashMap<&MemoryId, &LedgerEntry> = part.iter().map(|e| (&e.memory_id, e)).collect();
            if let Err(error) = self.rewrite_conflicts(connector, &conflicts, &entries, &token).await {
                let _ = self.settle_pending(connector).await;
                return Err(error);
            }
        }
        self.with_local(connector, |l| l.unsettled = false);
        self.remember(connector, part.iter().map(|e| (e.memory_id.clone(), Some(e.status))));
        Ok(())
    }

    /// Step 1: the fenced update of the lease item that makes `batch` pending.
    pub(super) async fn begin_batch(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        batch: &[Pending],
        token: &str,
    ) -> Result<(), StateError> {
        let items = encode(batch);
        let changes = delta(batch.iter().map(|p| (p.before, p.after)));
        let mut sets = ["#po = :me", "#pt = :token", "#pi = :items"].join(", ");
        let mut adds = Vec::new();
        for i in 0..changes.len() {
            adds.push(format!("#c{i} :c{i}"));
        }
        if !adds.is_empty() {
            sets = format!("SET {sets} ADD {}", adds.join(", "));
        } else {
            sets = format!("SET {sets}");
        }
        let fence = Condition::batch_fence(owner, self.batch_owner(owner));
        for attempt in 1..=MAX_RETRIES {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(connector, LEASE_SK)))
                .update_expression(&sets)
                .condition_expression(fence.expression)
                .set_expression_attribute_names(Some(fence.names.clone()))
                .set_expression_attribute_values(fence.values.clone())
                .expression_attribute_values(":token", AttributeValue::S(token.to_owned()))
                .expression_attribute_values(":items", AttributeValue::B(items.clone().into()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            for (i, (status, n)) in changes.iter().enumerate() {
                update = update
                    .expression_attribute_names(format!("#c{i}"), count_attr(*status))
                    .expression_attribute_values(format!(":c{i}"), AttributeValue::N(n.to_string()));
            }
            let sent = update.send().await;
            self.charge(0, cost::write_item(LEASE_ITEM_BYTES + items.len()));
            let error = match sent {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let refused = error.as_service_error().and_then(|s| match s {
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                    Some(c.item().cloned())
                }
                _ => None,
            });
            let Some(current) = refused else {
                return Err(self.fail("UpdateItem (batch)", &error));
            };
            let current = match current {
                Some(item) => item,
                None => self.get(connector, LEASE_SK, "GetItem (lease)").await?.unwrap_or_default(),
            };
            if self.lease_from(&current)?.map(|l| l.owner).as_ref() != Some(owner) {
                return Err(StateError::LeaseLost { connector: connector.clone(), owner: owner.clone() });
            }
            // Another writer's batch is pending (a run that died): settle it first.
            self.settle_item(connector, &current).await?;
            backoff(attempt).await;
        }
        Err(self.fail_text("UpdateItem (batch)", "another writer's pending batch kept coming back"))
    }

    /// A conditional put of one entry; `false` when the condition failed.
    pub(super) async fn put_one(
        &self,
        item: Item,
        before: Option<EntryStatus>,
        after: EntryStatus,
    ) -> Result<bool, StateError> {
        let units = cost::write_item(item_bytes(&item))
            + cost::index_writes(before.filter(|s| is_open(*s)), Some(after).filter(|s| is_open(*s)));
        let condition = Condition::status_still(before);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values);
        match put.send().await {
            Ok(_) => {
                self.charge(0, units);
                Ok(true)
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                self.charge(0, 1);
                Ok(false)
            }
            Err(e) => Err(self.fail("PutItem (ledger entry)", &e)),
        }
    }

    /// Entries whose status was not the one the batch assumed: read, then
    /// written with their count correction in one transaction (while the
    /// batch is still the pending one).
    async fn rewrite_conflicts(
        &self,
        connector: &ConnectorId,
        conflicts: &[Pending],
        entries: &HashMap<&MemoryId, &LedgerEntry>,
        token: &str,
    ) -> Result<(), StateError> {
        let mut attempt = 0;
        loop {
            let ids: Vec<&MemoryId> = conflicts.iter().map(|p| &p.id).collect();
            let now: HashMap<MemoryId, Current> = self.current(connector, &ids).await?;
            let mut actions = Vec::with_capacity(conflicts.len() + 1);
            let mut units = 0;
            // Assumed `before -> after`, counted; really `actual -> after`.
            let mut correction: BTreeMap<EntryStatus, i64> = BTreeMap::new();
            for p in conflicts {
                let actual = now.get(&p.id).map(|c| c.status);
                if let Some(before) = p.before {
                    *correction.entry(before).or_default() += 1;
                }
                if let Some(actual) = actual {
                    *correction.entry(actual).or_default() -= 1;
                }
                let Some(entry) = entries.get(&p.id) else { continue };
                let item = self.entry_item(connector, entry, Some(token))?;
                units += cost::transact_item(item_bytes(&item))
                    + cost::index_writes(actual.filter(|s| is_open(*s)), Some(entry.status).filter(|s| is_open(*s)));
                actions.push(self.put_entry(item, actual)?);
            }
            correction.retain(|_, n| *n != 0);
            actions.push(self.add_counts(connector, &correction, false, Some(token))?);
            units += cost::transact_item(LEASE_ITEM_BYTES);
            match self.transact(actions, false, units).await? {
                Transacted::Done => return Ok(()),
                _ => {
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(
                            self.fail_text("TransactWriteItems", "ledger entries kept changing while being written")
                        );
                    }
                    backoff(attempt).await;
                }
            }
        }
    }

    /// Settles whatever batch is pending on the lease item.
    pub(super) async fn settle_pending(&self, connector: &ConnectorId) -> Result<(), StateError> {
        if let Some(item) = self.get(connector, LEASE_SK, "GetItem (lease)").await? {
            self.settle_item(connector, &item).await?;
        }
        self.with_local(connector, |l| l.unsettled = false);
        Ok(())
    }

    /// Settles the pending batch of this lease item: the count change of each
    /// entry that does not carry the batch's token is taken back, and the
    /// batch is removed (unless another writer did it first).
    pub(super) async fn settle_item(&self, connector: &ConnectorId, lease: &Item) -> Result<(), StateError> {
        let Some(token) = lease.get(PENDING_TOKEN).and_then(|v| v.as_s().ok()) else {
            return Ok(());
        };
        let batch = match lease.get(PENDING_ITEMS).and_then(|v| v.as_b().ok()) {
            Some(bytes) => decode(bytes.as_ref()).map_err(|e| self.corrupt("pending batch", e))?,
            None => Vec::new(),
        };
        let ids: Vec<&MemoryId> = batch.iter().map(|p| &p.id).collect();
        let now = if ids.is_empty() { HashMap::new() } else { self.current(connector, &ids).await? };
        let undone = batch.iter().filter(|p| now.get(&p.id).and_then(|c| c.token.as_deref()) != Some(token.as_str()));
        // Taking back `before -> after` is counting `after -> before`.
        let mut back: BTreeMap<EntryStatus, i64> = BTreeMap::new();
        for p in undone {
            *back.entry(p.after).or_default() -= 1;
            if let Some(before) = p.before {
                *back.entry(before).or_default() += 1;
            }
        }
        back.retain(|_, n| *n != 0);
        let mut expression = String::from("REMOVE #po, #pt, #pi");
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(connector, LEASE_SK)))
            .condition_expression("#pt = :token")
            .expression_attribute_names("#po", PENDING_OWNER)
            .expression_attribute_names("#pt", PENDING_TOKEN)
            .expression_attribute_names("#pi", PENDING_ITEMS)
            .expression_attribute_values(":token", AttributeValue::S(token.clone()));
        if !back.is_empty() {
            let adds: Vec<String> = (0..back.len()).map(|i| format!("#c{i} :c{i}")).collect();
            expression.push_str(&format!(" ADD {}", adds.join(", ")));
            for (i, (status, n)) in back.iter().enumerate() {
                update = update
                    .expression_attribute_names(format!("#c{i}"), count_attr(*status))
                    .expression_attribute_values(format!(":c{i}"), AttributeValue::N(n.to_string()));
            }
        }
        let settled = update.update_expression(expression).send().await;
        self.charge(0, cost::write_item(LEASE_ITEM_BYTES));
        match settled {
            Ok(_) => {
                tracing::info!(connector = %connector, entries = batch.len(), "settled the pending batch of an interrupted writer");
                Ok(())
            }
            // Settled (or replaced) by another writer meanwhile.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.fail("UpdateItem (settle batch)", &e)),
        }
    }

    /// After a run's entries: the state, digest and run record. With a state
    /// or a digest, one transaction fenced by the lease item (which clears
    /// this run's settled batch); a run record alone after a batch is a plain
    /// put (the batch was fenced); nothing at all is a check of the lease.
    pub(super) async fn fenced_tail(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        state: Option<ConnectorState>,
        run: Option<RunRecord>,
        digest: Option<DigestWrite>,
        after_entries: bool,
    ) -> Result<(), StateError> {
        let lost = || StateError::LeaseLost { connector: connector.clone(), owner: owner.clone() };
        if state.is_none() && digest.is_none() {
            return match run {
                Some(run) if after_entries => {
                    self.put_item(self.run_item(connector, &run)?, "PutItem (run record)").await
                }
                Some(run) => {
                    let (put, units) = self.put(self.run_item(connector, &run)?)?;
                    let actions = vec![self.fence(connector, owner)?, put];
                    match self.transact(actions, true, units + cost::transact_item(LEASE_ITEM_BYTES)).await? {
                        Transacted::Done => Ok(()),
                        _ => Err(lost()),
                    }
                }
                None if after_entries => Ok(()),
                None => match self.lease(connector).await?.map(|l| l.owner) {
                    Some(holder) if &holder == owner => Ok(()),
                    _ => Err(lost()),
                },
            };
        }
        let tail = self.tail(connector, state.as_ref(), run.as_ref(), digest.as_ref()).await?;
        for attempt in 1..=MAX_RETRIES {
            if self.with_local(connector, |l| l.unsettled) {
                self.settle_pending(connector).await?;
            }
            let mut actions = vec![self.clear_own_batch(connector, owner)?];
            actions.extend(tail.iter().map(|(a, _)| a.clone()));
            let units = cost::transact_item(LEASE_ITEM_BYTES) + tail.iter().map(|(_, u)| u).sum::<u64>();
            match self.transact(actions, true, units).await? {
                Transacted::Done => return Ok(()),
                _ => {
                    let Some(current) = self.get(connector, LEASE_SK, "GetItem (lease)").await? else {
                        return Err(lost());
                    };
                    if self.lease_from(&current)?.map(|l| l.owner).as_ref() != Some(owner) {
                        return Err(lost());
                    }
                    self.settle_item(connector, &current).await?;
                    backoff(attempt).await;
                }
            }
        }
        Err(self.fail_text("TransactWriteItems", "another writer's pending batch kept coming back"))
    }

    /// The tail's fence: `owner` holds the lease and no other writer's batch
    /// is pending; this run's own (settled) batch is removed.
    fn clear_own_batch(&self, connector: &ConnectorId, owner: &RunId) -> Result<TransactWriteItem, StateError> {
        let fence = Condition::batch_fence(owner, self.batch_owner(owner));
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(connector, LEASE_SK)))
            .update_expression("REMOVE #po, #pt, #pi")
            .condition_expression(fence.expression)
            .set_expression_attribute_names(Some(fence.names))
            .set_expression_attribute_values(fence.values)
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_batches_round_trip() {
        let batch = vec![
            Pending { id: MemoryId::new("m1"), before: None, after: EntryStatus::Submitted },
            Pending { id: MemoryId::new("é/2"), before: Some(EntryStatus::Failed), after: EntryStatus::Dead },
        ];
        assert_eq!(decode(&encode(&batch)), Ok(batch));
        assert!(decode(&[5, 0, b'a']).is_err());
        let moves = [(None, EntryStatus::Submitted), (Some(EntryStatus::Failed), EntryStatus::Failed)];
        assert_eq!(delta(moves), BTreeMap::from([(EntryStatus::Submitted, 1)]));
    }
}
