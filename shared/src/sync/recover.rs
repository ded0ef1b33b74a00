//! After a run that died while sending (killed, out of memory, a Lambda
//! timeout): the documents its ledger marks `sending` may be in LightRAG,
//! or on their way into it, and a second copy sent now would be turned into
//! a failed `dup-` record by LightRAG (decision 0009). Before anything is
//! sent, each of them is settled by what LightRAG lists, or shown never to
//! have reached it, or held back to a later run.

use super::confirm::{FIRST_POLL, MAX_POLL, Submitted};
use super::digest::Finals;
use super::report::RunReport;
use super::{RunOptions, SyncEngine, SyncError};
use crate::ids::{MemoryId, RunId};
use crate::state::{EntryStatus, LedgerEntry};
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use tracing::{info, warn};

/// How long LightRAG may take to take up a request that had left before
/// its sender died (read it, count it in `pending_enqueues`). A mark older
/// than this whose document LightRAG neither lists nor is enqueuing never
/// reached it.
pub(super) const TAKE_UP: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

impl SyncEngine {
    /// Settles the `sending` entries among `entries` (the fetched memories'):
    /// those LightRAG lists become its documents (`entries` is refreshed;
    /// their ids are added to `found`), those it cannot have are left to be
    /// sent again. The ones still in doubt when the wait ends
    /// (`confirm_wait_seconds`, the run's deadline) are returned: this run
    /// must not send them.
    pub(super) async fn recover_in_flight(
        &self,
        run_id: &RunId,
        options: &RunOptions,
        report: &mut RunReport,
        entries: &mut HashMap<MemoryId, LedgerEntry>,
        found: &mut Vec<MemoryId>,
        finals: &mut Finals,
    ) -> Result<HashSet<MemoryId>, SyncError> {
        let marked: Vec<&LedgerEntry> = entries.values().filter(|e| e.status == EntryStatus::Sending).collect();
        if marked.is_empty() {
            return Ok(HashSet::new());
        }
        let now = Utc::now();
        let settled_after = marked.iter().filter_map(|e| e.last_ingested).max().unwrap_or(now) + TAKE_UP;
        let mut all: Vec<MemoryId> = marked.iter().map(|e| e.memory_id.clone()).collect();
        all.sort();
        info!(
            count = all.len(),
            "a previous run stopped while sending these documents; asking LightRAG about them first"
        );
        let mut deadline = Instant::now() + self.settings.confirm_wait;
        if let Some(run_deadline) = options.stop_at() {
            deadline = deadline.min(run_deadline);
        }
        let mut unseen = all.clone();
        let mut pause = FIRST_POLL;
        let held: Vec<MemoryId> = loop {
            // The pipeline first, the list after: what was enqueued by the
            // time the pipeline said "nothing pending" is in the list.
            let pipeline = self.sink.pipeline().await;
            let confirmed =
                self.confirm(run_id, report, Submitted::These(&unseen), &mut HashMap::new(), finals).await?;
            found.extend(confirmed.found);
            unseen = confirmed.unseen;
            if unseen.is_empty() {
                break Vec::new();
            }
            let enqueued_everything = match &pipeline {
                Ok(state) => state.is_none_or(|s| s.enqueued_everything()),
                Err(e) => {
                    warn!(error = %e.message, "could not read LightRAG's pipeline status");
                    false
                }
            };
            if enqueued_everything && Utc::now() >= settled_after {
                info!(count = unseen.len(), "LightRAG neither lists nor enqueues them: they never reached it");
                break Vec::new();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop_requested() {
                break std::mem::take(&mut unseen);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_POLL);
        };
        if !held.is_empty() {
            let message = format!(
                "{} document(s) a previous run was sending are not listed by LightRAG yet while it is still enqueuing \
                 (e.g. {}); not sent again by this run, so LightRAG does not record them twice; a later run checks again",
                held.len(),
                held[0]
            );
            warn!("{message}");
            report.warnings.push(message);
        }
        entries.extend(self.store.entries(&self.connector.id, &all).await?);
        Ok(held.into_iter().collect())
    }
}

/// What the end-of-run wait reads back before this run's own submissions
/// join: what dead runs were sending that LightRAG turned out to hold
/// (`found_sent`) and, after an interrupted run, every submitted document of
/// the page (what the dead runs, maybe several in a row, had sent and
/// recorded).
pub(super) fn followed_at_the_end(
    interrupted: bool,
    entries: &HashMap<MemoryId, LedgerEntry>,
    found_sent: Vec<MemoryId>,
    finals: &Finals,
) -> Vec<MemoryId> {
    let mut followed: Vec<MemoryId> = if interrupted {
        entries
            .values()
            .filter(|e| e.status == EntryStatus::Submitted && finals.awaits(e))
            .map(|e| e.memory_id.clone())
            .collect()
    } else {
        Vec::new()
    };
    let known: HashSet<MemoryId> = followed.iter().cloned().collect();
    followed.extend(found_sent.into_iter().filter(|id| !known.contains(id)));
    followed
}
