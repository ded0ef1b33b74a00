//! Confirmed ingestion: a 200 from LightRAG only means "queued". Each run
//! asks LightRAG about the documents the ledger holds as submitted and moves
//! them to processed or failed-in-LightRAG (which are sent again, with the
//! memory's retry budget); the end of a run waits, up to a bound, for what
//! it submitted itself. Documents pending too long are reported as stuck.
//! Documents a dead run was sending (`sending`) are asked about the same
//! way: listed by LightRAG, they are its (see [`super::recover`]).

use super::deliver::FailureSide;
use super::digest::Finals;
use super::report::RunReport;
use super::{RunOptions, SyncEngine, SyncError};
use crate::ids::{MemoryId, RunId};
use crate::lightrag::{self, RemoteStatus, TrackedDoc};
use crate::state::{EntryStatus, LedgerEntry};
use chrono::Utc;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The most submitted entries one confirmation looks at (the rest wait for
/// the next run).
const CONFIRM_LIMIT: usize = 10_000;
/// Entries a listing of the watched ones reads at a time.
const LIST_PAGE: usize = 1_000;
pub(super) const FIRST_POLL: Duration = Duration::from_millis(250);
pub(super) const MAX_POLL: Duration = Duration::from_secs(2);

/// Which submitted (and sending) entries a confirmation looks at.
#[derive(Debug, Clone, Copy)]
pub(super) enum Submitted<'a> {
    /// Those the ledger lists as submitted or sending (at most
    /// [`CONFIRM_LIMIT`]): after an interrupted run (its marks and
    /// submissions were never recorded in a digest), or a ledger whose digest
    /// never recorded its unconfirmed ids. A store may list from an
    /// eventually consistent index (DynamoDB), so a write of a moment ago may
    /// be missing.
    Listed,
    /// The unconfirmed ids the last run recorded (the start of a run; the
    /// first [`CONFIRM_LIMIT`]), read back consistently.
    Recorded(&'a [MemoryId]),
    /// These memories' entries, read back consistently, those still
    /// submitted or sending: what this run just sent, or what a dead run
    /// was sending.
    These(&'a [MemoryId]),
}

/// What a confirmation left open.
#[derive(Debug, Default)]
pub(super) struct Unsettled {
    /// Entries looked at that LightRAG still has queued.
    pub queued: usize,
    /// `sending` entries whose document LightRAG does not list (yet).
    pub unseen: Vec<MemoryId>,
    /// `sending` entries whose document LightRAG lists: now submitted (or
    /// settled), for the end-of-run wait.
    pub found: Vec<MemoryId>,
}

impl SyncEngine {
    /// Settles the submitted and sending entries LightRAG has news of.
    /// Returns what is still open. Every entry read goes into `finals` as it
    /// ends up, and at the start of a run (`Listed`, `Recorded`) into `known`
    /// too, so planning needs no second read.
    pub(super) async fn confirm(
        &self,
        run_id: &RunId,
        report: &mut RunReport,
        which: Submitted<'_>,
        known: &mut HashMap<MemoryId, LedgerEntry>,
        finals: &mut Finals,
    ) -> Result<Unsettled, SyncError> {
        let (read, start) = match which {
            Submitted::Listed => (self.listed(finals).await?, true),
            Submitted::Recorded(ids) => {
                let ids = &ids[..ids.len().min(CONFIRM_LIMIT)];
                (self.store.entries(&self.connector.id, ids).await?.into_values().collect(), true)
            }
            Submitted::These(ids) => {
                (self.store.entries(&self.connector.id, ids).await?.into_values().collect(), false)
            }
        };
        let (mut submitted, others): (Vec<LedgerEntry>, Vec<LedgerEntry>) =
            read.into_iter().partition(|e| finals.awaits(e));
        submitted.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
        for entry in others.iter().chain(&submitted) {
            finals.read(entry);
            if start {
                known.insert(entry.memory_id.clone(), entry.clone());
            }
        }
        // Stuck documents are counted once per run, by the listing at its start.
        let listed = start;
        if submitted.is_empty() {
            return Ok(Unsettled::default());
        }
        let doc_id = |e: &LedgerEntry| e.doc_id.clone().unwrap_or_else(|| lightrag::doc_id(&e.file_source));
        // A sending entry's track id is its last delivery's: the list finds it.
        let tracked: Vec<TrackedDoc> = submitted
            .iter()
            .map(|e| TrackedDoc {
                doc_id: doc_id(e),
                track_id: e.track_id.clone().filter(|_| e.status == EntryStatus::Submitted),
                submitted_at: e.last_ingested,
            })
            .collect();
        let statuses = match self.sink.statuses(&tracked).await {
            Ok(statuses) => statuses,
            Err(e) => {
                warn!(error = %e.message, "could not ask LightRAG about submitted documents; the next run asks again");
                report.warnings.push(format!("confirmation skipped: {}", e.message));
                let unseen = submitted
                    .iter()
                    .filter(|e| e.status == EntryStatus::Sending)
                    .map(|e| e.memory_id.clone())
                    .collect();
                return Ok(Unsettled { queued: submitted.len(), unseen, found: Vec::new() });
            }
        };
        let now = Utc::now();
        let mut changed = Vec::new();
        let mut unsettled = Unsettled::default();
        for mut entry in submitted {
            let id = doc_id(&entry);
            let remote = statuses.get(&id);
            // A document LightRAG processed whose entry has nothing to reset
            // stays `submitted`: off the watch list, no write (decision 29).
            let clean = entry.status == EntryStatus::Submitted
                && entry.attempts == 0
                && entry.last_error.is_none()
                && entry.next_attempt_at.is_none();
            if clean && matches!(remote, Some(RemoteStatus::Processed)) {
                report.confirmed_one();
                finals.confirmed(&entry);
                continue;
            }
            if entry.status == EntryStatus::Sending {
                if remote.is_none() {
                    unsettled.unseen.push(entry.memory_id.clone());
                    continue;
                }
                found_in_lightrag(&mut entry);
                report.counts.recovered += 1;
                unsettled.found.push(entry.memory_id.clone());
                if matches!(remote, Some(RemoteStatus::Queued { .. })) {
                    changed.push(entry.clone());
                }
            }
            match remote {
                Some(RemoteStatus::Processed) => {
                    entry.status = EntryStatus::Processed;
                    entry.attempts = 0;
                    entry.last_error = None;
                    entry.next_attempt_at = None;
                    report.confirmed_one();
                    changed.push(entry);
                }
                Some(RemoteStatus::Failed { error }) => {
                    let message = format!("LightRAG failed to process {id}: {error}");
                    let hash = entry.content_hash.clone().unwrap_or_else(|| crate::ids::ContentHash::new(""));
                    self.charge_attempt(&mut entry, &hash, &message, now, FailureSide::Lightrag, report);
                    report.push_error(Some(entry.memory_id.clone()), "lightrag", message);
                    changed.push(entry);
                }
                other => {
                    unsettled.queued += 1;
                    let age = entry.last_ingested.map(|at| now - at);
                    if listed && age.is_some_and(|age| age > self.settings.stuck_after) {
                        let state = match other {
                            Some(RemoteStatus::Queued { status }) => status.clone(),
                            _ => "not listed".into(),
                        };
                        report.counts.stuck += 1;
                        report.push_error(
                            Some(entry.memory_id.clone()),
                            "stuck",
                            format!(
                                "{id} is still {state} in LightRAG {} minutes after it was submitted",
                                age.map_or(0, |a| a.num_minutes())
                            ),
                        );
                    }
                }
            }
        }
        if !changed.is_empty() {
            for entry in &changed {
                finals.record(entry);
                if start {
                    known.insert(entry.memory_id.clone(), entry.clone());
                }
            }
            self.write(run_id, changed, None, None).await?;
        }
        Ok(unsettled)
    }

    /// The entries the watch says wait (marks, and submitted entries it
    /// names), the first [`CONFIRM_LIMIT`] by memory id: the ledger's
    /// `submitted` and `sending` entries, a page at a time.
    async fn listed(&self, finals: &Finals) -> Result<Vec<LedgerEntry>, SyncError> {
        let open = [EntryStatus::Submitted, EntryStatus::Sending];
        let mut kept = Vec::new();
        let mut after: Option<MemoryId> = None;
        loop {
            let page =
                self.store.entries_with_status_after(&self.connector.id, &open, after.as_ref(), LIST_PAGE).await?;
            let last = page.last().map(|e| e.memory_id.clone());
            let full = page.len() == LIST_PAGE;
            kept.extend(page.into_iter().filter(|e| finals.awaits(e)));
            if kept.len() >= CONFIRM_LIMIT || !full {
                kept.truncate(CONFIRM_LIMIT);
                return Ok(kept);
            }
            after = last;
        }
    }

    /// Waits up to `confirm_wait` (and the run's deadline) for the documents
    /// this run submitted to leave LightRAG's queue.
    pub(super) async fn await_processing(
        &self,
        run_id: &RunId,
        options: &RunOptions,
        report: &mut RunReport,
        finals: &mut Finals,
    ) -> Result<(), SyncError> {
        let mut deadline = Instant::now() + self.settings.confirm_wait;
        if let Some(run_deadline) = options.stop_at() {
            deadline = deadline.min(run_deadline);
        }
        let mut pause = FIRST_POLL;
        loop {
            let submitted = finals.submitted.clone();
            let queued =
                self.confirm(run_id, report, Submitted::These(&submitted), &mut HashMap::new(), finals).await?.queued;
            let now = Instant::now();
            if queued == 0 || now >= deadline || self.stop_requested() {
                report.unconfirmed = queued as u64;
                if queued > 0 {
                    info!(queued, "still queued in LightRAG; the next run confirms them");
                }
                return Ok(());
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}

/// A `sending` entry whose document LightRAG lists: the dead run's request
/// reached it. A new document is the text that run sent. A replaced one may
/// still be the old text (the delete not run yet) or already the new one;
/// the ledger keeps the old hash, so the memory is replaced once more.
fn found_in_lightrag(entry: &mut LedgerEntry) {
    entry.status = EntryStatus::Submitted;
    if entry.content_hash.is_none() {
        entry.content_hash = entry.pending_hash.take();
    }
    entry.pending_hash = None;
    entry.track_id = None;
}
