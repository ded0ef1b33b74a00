//! Delivery: keeps `ingestion.batch_size` documents in flight (one batch
//! request of up to `batch_size` new documents when the sink batches, or
//! that many single requests), checkpoints every `batch_size` completions,
//! and settles each outcome into the ledger.

use super::digest::Finals;
use super::report::RunReport;
use super::{RunOptions, SyncEngine, SyncError};
use crate::enrich::Enrichment;
use crate::ids::{ContentHash, MemoryId, RunId};
use crate::lightrag::{self, InsertOutcome, ReplaceOutcome, SinkError, SinkErrorKind};
use crate::memory_api::model::Memory;
use crate::provenance;
use crate::retry::item_backoff;
use crate::state::{EntryStatus, LedgerEntry, Provenance, RunRecord, RunStatus};
use crate::transform::{self, Document, Rendered};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// How often a delivering run rewrites its `running` record (its counts so
/// far, for `status`, the API and the console): after this many ledger
/// entries, or this long, since the last time. Rewriting it with every
/// checkpoint (every few memories) cost a write unit each (decision 27).
const PROGRESS_ENTRIES: usize = 100;
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// When the run record was last written with the progress so far.
#[derive(Default)]
struct Progress {
    last: Option<Instant>,
    entries: usize,
}

impl Progress {
    /// The run record to write with a checkpoint of `entries` entries, when one is due.
    fn due(&mut self, report: &RunReport, entries: usize) -> Option<RunRecord> {
        self.entries += entries;
        let now = Instant::now();
        let fresh = self.last.is_some_and(|last| now.duration_since(last) < PROGRESS_EVERY);
        if fresh && self.entries < PROGRESS_ENTRIES {
            return None;
        }
        self.last = Some(now);
        self.entries = 0;
        Some(report.record(RunStatus::Running))
    }
}

/// One memory to deliver, as planned.
pub(super) struct Work<'a> {
    pub memory: &'a Memory,
    pub enrichment: Option<&'a Enrichment>,
    pub body: Body,
    pub replace: bool,
}

/// The document of a [`Work`]. Boxed: a run holds one `Work` per planned
/// memory until delivery ends, mostly `OnSend` (8 bytes instead of a
/// `Document`'s 72 each).
pub(super) enum Body {
    Ready(Box<Document>),
    /// Rendered when it enters the window (see [`super::plan::Payload::OnSend`]).
    OnSend,
}

/// One memory with its rendered document, ready to send.
struct Item {
    memory_id: MemoryId,
    document: Document,
    /// What the ledger keeps of the memory once the document is delivered.
    provenance: Provenance,
    replace: bool,
}

/// The outcome of delivering one memory.
struct Delivered {
    memory_id: MemoryId,
    document: Document,
    provenance: Provenance,
    replace: bool,
    result: Result<Outcome, SinkError>,
}

enum Outcome {
    Inserted(InsertOutcome),
    Replaced(ReplaceOutcome),
}

/// A unit of work for the window: one request's worth.
enum Task<T> {
    One(T),
    /// New documents sent in one batch request.
    Batch(Vec<T>),
    /// Changed documents: one delete, then one insert.
    ReplaceBatch(Vec<T>),
}

impl<T> Task<T> {
    fn items(&self) -> &[T] {
        match self {
            Task::One(item) => std::slice::from_ref(item),
            Task::Batch(items) | Task::ReplaceBatch(items) => items,
        }
    }

    fn cost(&self) -> usize {
        match self {
            Task::One(_) => 1,
            Task::Batch(items) | Task::ReplaceBatch(items) => items.len(),
        }
    }

    /// The same task over other items (those `f` keeps); `None` when none is kept.
    fn filter_map<U>(self, mut f: impl FnMut(T) -> Option<U>) -> Option<Task<U>> {
        let mut all =
            |items: Vec<T>| Some(items.into_iter().filter_map(&mut f).collect::<Vec<U>>()).filter(|v| !v.is_empty());
        match self {
            Task::One(item) => f(item).map(Task::One),
            Task::Batch(items) => all(items).map(Task::Batch),
            Task::ReplaceBatch(items) => all(items).map(Task::ReplaceBatch),
        }
    }
}

/// The tasks of a run, made as they are needed: replaces first (LightRAG
/// refuses deletes while it is busy with inserts, and this run's inserts
/// would make it busy), then inserts; batched when the sink batches.
struct Tasks<'a> {
    work: std::iter::Peekable<std::vec::IntoIter<Work<'a>>>,
    batch_size: usize,
    batches: bool,
}

impl<'a> Tasks<'a> {
    fn new(mut work: Vec<Work<'a>>, batch_size: usize, batches: bool) -> Self {
        // Stable: each group keeps the planned (memory id) order.
        work.sort_by_key(|w| !w.replace);
        Self { work: work.into_iter().peekable(), batch_size, batches: batches && batch_size > 1 }
    }
}

impl<'a> Iterator for Tasks<'a> {
    type Item = Task<Work<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = self.work.next()?;
        if !self.batches {
            return Some(Task::One(first));
        }
        let replace = first.replace;
        let mut group = Vec::with_capacity(self.batch_size);
        group.push(first);
        while group.len() < self.batch_size {
            match self.work.next_if(|w| w.replace == replace) {
                Some(w) => group.push(w),
                None => break,
            }
        }
        Some(if replace { Task::ReplaceBatch(group) } else { Task::Batch(group) })
    }
}

/// Sends one task and pairs each document with its outcome.
async fn run_task(sink: Arc<dyn crate::lightrag::DocumentSink>, task: Task<Item>) -> Vec<Delivered> {
    match task {
        Task::One(Item { memory_id, document, provenance, replace }) => {
            let result = if replace {
                sink.replace(&document).await.map(Outcome::Replaced)
            } else {
                sink.insert(&document).await.map(Outcome::Inserted)
            };
            vec![Delivered { memory_id, document, provenance, replace, result }]
        }
        Task::ReplaceBatch(items) => {
            let documents: Vec<Document> = items.iter().map(|w| w.document.clone()).collect();
            pair(items, sink.replace_batch(&documents).await, true, Outcome::Replaced)
        }
        Task::Batch(items) => {
            let documents: Vec<Document> = items.iter().map(|w| w.document.clone()).collect();
            pair(items, sink.insert_batch(&documents).await, false, Outcome::Inserted)
        }
    }
}

/// Each item of a batch with its own outcome.
fn pair<T>(
    items: Vec<Item>,
    outcomes: Vec<Result<T, SinkError>>,
    replace: bool,
    wrap: fn(T) -> Outcome,
) -> Vec<Delivered> {
    items
        .into_iter()
        .zip(outcomes)
        .map(|(w, result)| Delivered {
            memory_id: w.memory_id,
            document: w.document,
            provenance: w.provenance,
            replace,
            result: result.map(wrap),
        })
        .collect()
}

impl SyncEngine {
    /// Returns whether the run stopped early at its deadline. A sink error
    /// that is the sink's fault (`Fatal`) stops new work and goes into
    /// `report.error`; the memories concerned are not charged an attempt.
    ///
    /// When the sink confirms (LightRAG), every document is marked `sending`
    /// in the ledger, in one checkpoint with the window's refill, before its
    /// request leaves: a run that dies leaves the names it may have handed
    /// over (see [`super::recover`]).
    pub(super) async fn deliver_all(
        &self,
        run_id: &RunId,
        options: &RunOptions,
        report: &mut RunReport,
        work: Vec<Work<'_>>,
        entries: &mut HashMap<MemoryId, LedgerEntry>,
        finals: &mut Finals,
    ) -> Result<bool, SyncError> {
        let batch_size = self.connector.ingestion.batch_size.max(1) as usize;
        let mut pending = Tasks::new(work, batch_size, self.sink.batches()).peekable();
        let mut in_flight: JoinSet<Vec<Delivered>> = JoinSet::new();
        let mut slots_used = 0usize;
        let mut done: Vec<LedgerEntry> = Vec::with_capacity(batch_size);
        let mut deadline_hit = false;
        let mut fatal: Option<String> = None;
        let mut abandoned = 0usize;
        let marks = self.settings.confirm;
        let mut progress = Progress::default();
        let abandon_at = options.abandon_at().map_or_else(super::far_future, tokio::time::Instant::from_std);

        loop {
            if fatal.is_none() {
                // With marks, a refill costs a checkpoint: wait for half a
                // window (a batch request frees the whole window at once).
                let room = batch_size - slots_used.min(batch_size);
                if !marks || slots_used == 0 || room >= batch_size.div_ceil(2) {
                    let tasks = self.take_tasks(&mut pending, slots_used, batch_size, options, &mut deadline_hit);
                    if !tasks.is_empty() {
                        if marks {
                            let now = Utc::now();
                            let write = std::mem::take(&mut done);
                            let mut marked = Vec::new();
                            for item in tasks.iter().flat_map(Task::items) {
                                let document = &item.document;
                                let mark = LedgerEntry::marked(
                                    entries.get(&item.memory_id),
                                    &item.memory_id,
                                    &document.file_source,
                                    &document.hash,
                                    now,
                                );
                                // Never settled: the digest this run leaves vouches for it only once answered.
                                finals.record(&mark);
                                marked.push(mark);
                            }
                            let record = progress.due(report, write.len() + marked.len());
                            self.write_marked(run_id, write, marked, record).await?;
                        }
                        for task in tasks {
                            slots_used += task.cost();
                            in_flight.spawn(run_task(Arc::clone(&self.sink), task));
                        }
                    }
                }
            }
            if done.len() >= batch_size {
                let record = progress.due(report, done.len());
                self.write(run_id, std::mem::take(&mut done), None, record).await?;
            }
            let joined = match tokio::time::timeout_at(abandon_at, in_flight.join_next()).await {
                Ok(Some(joined)) => joined,
                Ok(None) => break,
                Err(_) => {
                    // Past the point where only the last checkpoint fits:
                    // what has not answered is given up. Its `sending` mark
                    // (or, without marks, its unchanged entry) leaves it to
                    // the next run; nobody is charged.
                    abandoned = in_flight.len();
                    in_flight.abort_all();
                    warn!(
                        abandoned,
                        "requests still in flight at the deadline are given up; the next run settles them"
                    );
                    break;
                }
            };
            let delivered = match joined {
                Ok(delivered) => delivered,
                Err(e) => {
                    fatal.get_or_insert_with(|| format!("a delivery task failed: {e}"));
                    continue;
                }
            };
            slots_used = slots_used.saturating_sub(delivered.len());
            for item in delivered {
                if let Err(SinkError { kind: SinkErrorKind::Fatal, message }) = &item.result {
                    // Not the memory's fault: its entry stays as it was (a new
                    // memory's mark stays; the next run finds it never arrived).
                    warn!(memory_id = %item.memory_id, error = %message, "the sink refused; stopping the run");
                    fatal.get_or_insert_with(|| message.clone());
                    if let Some(previous) = entries.get(&item.memory_id).filter(|_| marks) {
                        finals.read(previous);
                        done.push(previous.clone());
                    }
                    continue;
                }
                let previous = entries.remove(&item.memory_id);
                let entry = self.settle(item, previous, report);
                if entry.status == EntryStatus::Submitted {
                    finals.submitted.push(entry.memory_id.clone());
                    report.counts.awaiting = report.counts.awaiting.map(|n| n + 1);
                }
                finals.record(&entry);
                done.push(entry);
            }
        }
        if !done.is_empty() {
            self.write(run_id, done, None, Some(report.record(RunStatus::Running))).await?;
        }
        let remaining: usize = pending.map(|t| t.cost()).sum::<usize>() + abandoned;
        let stopped_early = (deadline_hit && remaining > 0) || abandoned > 0;
        if stopped_early {
            report.stopped_early = true;
            info!(remaining, "deadline reached: stopped after a checkpoint; the next run continues");
        }
        if let Some(message) = fatal {
            report.error = Some(message);
        }
        Ok(stopped_early)
    }

    /// The next tasks while the window has room, the work lasts and the
    /// deadline (or a stop) has not come, their documents rendered.
    fn take_tasks(
        &self,
        pending: &mut std::iter::Peekable<Tasks<'_>>,
        slots_used: usize,
        batch_size: usize,
        options: &RunOptions,
        deadline_hit: &mut bool,
    ) -> Vec<Task<Item>> {
        let mut taken = Vec::new();
        let mut filled = 0;
        while !*deadline_hit {
            let Some(next) = pending.peek() else { break };
            let used = slots_used + filled;
            if used > 0 && used + next.cost() > batch_size {
                break;
            }
            if options.stop_at().is_some_and(|d| Instant::now() >= d) || self.stop_requested() {
                *deadline_hit = true;
                break;
            }
            let Some(task) = pending.next() else { break };
            let Some(task) = task.filter_map(|work| self.ready(work)) else { continue };
            filled += task.cost();
            taken.push(task);
        }
        taken
    }

    /// The planned work with its document rendered; `None` (never expected:
    /// the plan asked the same question) when the memory turns out to wait
    /// for its transcript, which leaves it out of the ledger for the next
    /// run to plan again.
    fn ready(&self, work: Work<'_>) -> Option<Item> {
        let Work { memory, enrichment, body, replace } = work;
        let memory_id = memory.id.clone();
        let document = match body {
            Body::Ready(document) => *document,
            Body::OnSend => match transform::render(
                &self.connector.context_id,
                memory,
                &self.connector.transformation,
                self.connector.ingestion.skip_empty_transcripts,
                enrichment,
            ) {
                Rendered::Document(document) => document,
                Rendered::WaitingForTranscript => {
                    warn!(memory_id = %memory_id, "planned as new but has no text to send; left for the next run");
                    return None;
                }
            },
        };
        let provenance =
            provenance::record(&self.connector.context_id, memory, &self.connector.transformation, enrichment);
        Some(Item { memory_id, document, provenance, replace })
    }

    /// The ledger entry after one delivery, and its count in the report.
    fn settle(&self, delivered: Delivered, previous: Option<LedgerEntry>, report: &mut RunReport) -> LedgerEntry {
        let now = Utc::now();
        let Delivered { memory_id, document, provenance, replace, result } = delivered;
        let mut entry = previous.unwrap_or_else(|| {
            LedgerEntry::new(memory_id.clone(), document.file_source.clone(), EntryStatus::Failed, now)
        });
        entry.file_source = document.file_source.clone();
        entry.doc_id = Some(lightrag::doc_id(&document.file_source));
        // With confirmation, the retry budget is spent until LightRAG says
        // `processed` (a document failing inside LightRAG must not loop).
        let keep_attempts = self.settings.confirm;
        // The record follows the document that is in the sink: a deferred
        // or failed delivery keeps the previous one.
        let delivered_as = |entry: &mut LedgerEntry, status: EntryStatus| {
            entry.status = status;
            entry.provenance = Some(provenance.clone());
            entry.content_hash = Some(document.hash.clone());
            entry.pending_hash = None;
            if !keep_attempts || status == EntryStatus::Processed {
                entry.attempts = 0;
            }
            entry.last_error = None;
            entry.next_attempt_at = None;
            entry.last_ingested = Some(now);
        };
        match result {
            Ok(Outcome::Inserted(InsertOutcome::Accepted { track_id })) => {
                delivered_as(&mut entry, EntryStatus::Submitted);
                entry.track_id = track_id;
                count_delivery(report, replace);
                debug!(memory_id = %memory_id, file_source = %document.file_source, "inserted");
            }
            Ok(Outcome::Inserted(InsertOutcome::AlreadyStored { status })) => {
                // Sent before (a crash before the checkpoint): the document is
                // there; confirmation reads its real status.
                let stored = match status.as_deref() {
                    Some("processed") => EntryStatus::Processed,
                    Some("failed") => EntryStatus::LightragFailed,
                    _ => EntryStatus::Submitted,
                };
                delivered_as(&mut entry, stored);
                count_delivery(report, replace);
                debug!(memory_id = %memory_id, ?status, "already stored in the sink; counted as delivered");
            }
            Ok(Outcome::Replaced(ReplaceOutcome::Replaced { track_id })) => {
                delivered_as(&mut entry, EntryStatus::Submitted);
                entry.track_id = track_id;
                report.counts.updated += 1;
                debug!(memory_id = %memory_id, "replaced");
            }
            Ok(Outcome::Replaced(ReplaceOutcome::Deferred { reason })) => {
                entry.status = EntryStatus::UpdatePending;
                entry.pending_hash = Some(document.hash.clone());
                entry.last_error = Some(reason.clone());
                report.counts.deferred += 1;
                info!(memory_id = %memory_id, %reason, "update deferred to the next run");
            }
            Err(error) => {
                self.charge_attempt(&mut entry, &document.hash, &error.message, now, FailureSide::Connector, report);
                report.push_error(Some(memory_id), if replace { "replace" } else { "insert" }, error.message);
            }
        }
        entry
    }

    /// One failed attempt: back off, or dead when the budget is spent.
    pub(super) fn charge_attempt(
        &self,
        entry: &mut LedgerEntry,
        hash: &ContentHash,
        error: &str,
        now: chrono::DateTime<Utc>,
        side: FailureSide,
        report: &mut RunReport,
    ) {
        entry.attempts += 1;
        entry.pending_hash = Some(hash.clone());
        entry.last_error = Some(error.to_owned());
        let retry = &self.connector.retry;
        if entry.attempts >= retry.max_attempts {
            entry.status = EntryStatus::Dead;
            entry.next_attempt_at = None;
            report.counts.dead += 1;
            warn!(memory_id = %entry.memory_id, attempts = entry.attempts, %error, "memory is dead (attempts exhausted); `retry-failed` replays it");
            return;
        }
        let wait = item_backoff(entry.attempts, retry.backoff_multiplier, retry.max_backoff_seconds);
        entry.next_attempt_at = chrono::Duration::from_std(wait).ok().map(|w| now + w);
        match side {
            FailureSide::Connector => {
                entry.status = EntryStatus::Failed;
                report.counts.failed += 1;
                warn!(memory_id = %entry.memory_id, attempts = entry.attempts, %error, "delivery failed; kept for retry");
            }
            FailureSide::Lightrag => {
                entry.status = EntryStatus::LightragFailed;
                report.counts.lightrag_failed += 1;
                warn!(memory_id = %entry.memory_id, attempts = entry.attempts, %error, "LightRAG failed to process the document; it is sent again on a later run");
            }
        }
    }
}

/// Where a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureSide {
    /// The connector could not deliver it (network, 4xx/5xx after retries).
    Connector,
    /// LightRAG accepted it and then failed to process it.
    Lightrag,
}

fn count_delivery(report: &mut RunReport, replace: bool) {
    if replace {
        report.counts.updated += 1;
    } else {
        report.counts.new += 1;
    }
}
