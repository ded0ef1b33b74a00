//! One sync run of one connector:
//! `lease -> fetch -> plan -> [deliver -> checkpoint] per batch -> report -> release`.
//!
//! The engine owns every decision of a run; the CLI, the scheduler and the
//! Lambda only build it and call [`SyncEngine::run`].

mod plan;
mod report;

pub use plan::{plan, Action, ActionKind};
pub use report::{ItemError, PlannedItem, RunReport};

use crate::config::ConnectorConfig;
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::lightrag::{self, DocumentSink, InsertOutcome, ReplaceOutcome, SinkError, SinkErrorKind};
use crate::memory_api::model::{FetchedPage, Memory};
use crate::memory_api::MemoryApiClient;
use crate::retry::item_backoff;
use crate::state::{
    Checkpoint, ConnectorState, EntryStatus, LeaseOutcome, LedgerEntry, RunRecord, RunStatus, StateError,
    StateStore,
};
use crate::transform::{file_source, Document};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

/// How many item errors a report keeps (the ledger keeps all of them).
const MAX_REPORTED_ERRORS: usize = 50;

/// Where a run's memories come from. The Memory API client is the real one;
/// the trait keeps the engine testable and lets benchmarks measure it alone.
#[async_trait::async_trait]
pub trait MemorySource: Send + Sync {
    async fn fetch(&self, connector: &ConnectorConfig) -> Result<FetchedPage, String>;
}

#[async_trait::async_trait]
impl MemorySource for MemoryApiClient {
    async fn fetch(&self, connector: &ConnectorConfig) -> Result<FetchedPage, String> {
        self.list(&connector.context_id, connector.ingestion.query_range, connector.ingestion.query_limit)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Why a run did not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("connector {connector} is already running (run {owner}, lease until {expires_at})")]
    AlreadyRunning { connector: ConnectorId, owner: RunId, expires_at: DateTime<Utc> },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Re-send every memory that has text, whatever the ledger says.
    pub force: bool,
    /// Plan and report; send nothing, write nothing.
    pub dry_run: bool,
    /// What started the run (`cli`, `schedule`, `api`, `lambda`...).
    pub trigger: String,
    /// Take no new batch after this instant (Lambda remaining time, job timeout).
    pub deadline: Option<Instant>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { force: false, dry_run: false, trigger: "cli".into(), deadline: None }
    }
}

/// Everything a run needs, built once and reusable across runs.
#[derive(Clone)]
pub struct SyncEngine {
    connector: ConnectorConfig,
    lease_ttl: Duration,
    source: Arc<dyn MemorySource>,
    sink: Arc<dyn DocumentSink>,
    store: Arc<dyn StateStore>,
    /// Take over a lease whose holder process on this host is gone (see
    /// [`SyncEngine::without_local_takeover`]).
    local_takeover: bool,
}

/// The outcome of delivering one memory.
struct Delivered {
    memory_id: MemoryId,
    document: Document,
    replace: bool,
    result: Result<Outcome, SinkError>,
}

enum Outcome {
    Inserted(InsertOutcome),
    Replaced(ReplaceOutcome),
}

impl SyncEngine {
    pub fn new(
        connector: ConnectorConfig,
        lease_ttl: Duration,
        source: Arc<dyn MemorySource>,
        sink: Arc<dyn DocumentSink>,
        store: Arc<dyn StateStore>,
    ) -> Self {
        Self { connector, lease_ttl, source, sink, store, local_takeover: true }
    }

    /// Never take a lease over because its holder "on this host" is gone:
    /// in Lambda every sandbox has its own process namespace and host names
    /// repeat, so a live run elsewhere would look dead. Only expiry frees
    /// the lease there.
    pub fn without_local_takeover(mut self) -> Self {
        self.local_takeover = false;
        self
    }

    pub fn connector_id(&self) -> &ConnectorId {
        &self.connector.id
    }

    /// Runs once. `Err` only when the run could not start (already running,
    /// state unreadable); a run that started always ends in a report whose
    /// status says how it went, and that report is in the run history.
    pub async fn run(&self, options: RunOptions) -> Result<RunReport, SyncError> {
        let started_at = Utc::now();
        let run_id = RunId::generate(started_at);
        let span = info_span!("sync", connector_id = %self.connector.id, run_id = %run_id, trigger = %options.trigger);
        self.run_inner(run_id, started_at, options).instrument(span).await
    }

    async fn run_inner(&self, run_id: RunId, started_at: DateTime<Utc>, options: RunOptions) -> Result<RunReport, SyncError> {
        let clock = Instant::now();
        let connector_id = self.connector.id.clone();
        let mut report = RunReport::new(&run_id, &connector_id, &options, started_at, self.sink.describe());

        if !options.dry_run {
            self.acquire_lease(&run_id, started_at).await?;
        }

        let result = self.run_leased(&run_id, &options, &mut report, clock).await;
        if !options.dry_run
            && let Err(e) = self.store.release_lease(&connector_id, &run_id).await {
                warn!(error = %e, "could not release the lease; it expires by itself");
            }
        result?;
        Ok(report)
    }

    /// Takes the lease; a lease left by a dead process of this host is
    /// released (by owner, so racing rerunners cannot both win) and retaken.
    async fn acquire_lease(&self, run_id: &RunId, now: DateTime<Utc>) -> Result<(), SyncError> {
        let connector_id = &self.connector.id;
        for _ in 0..2 {
            match self.store.try_acquire_lease(connector_id, run_id, now, self.lease_ttl).await? {
                LeaseOutcome::Acquired(_) => return Ok(()),
                LeaseOutcome::Held(lease) if self.local_takeover && lease.owner.holder_is_gone() => {
                    warn!(previous = %lease.owner, "the previous run's process is gone; taking over its lease");
                    self.store.release_lease(connector_id, &lease.owner).await?;
                }
                LeaseOutcome::Held(lease) => {
                    return Err(SyncError::AlreadyRunning {
                        connector: connector_id.clone(),
                        owner: lease.owner,
                        expires_at: lease.expires_at,
                    });
                }
            }
        }
        Err(SyncError::AlreadyRunning {
            connector: connector_id.clone(),
            owner: run_id.clone(),
            expires_at: now,
        })
    }

    async fn run_leased(
        &self,
        run_id: &RunId,
        options: &RunOptions,
        report: &mut RunReport,
        clock: Instant,
    ) -> Result<(), SyncError> {
        let connector_id = &self.connector.id;
        let mut state = self
            .store
            .connector_state(connector_id)
            .await?
            .unwrap_or_else(|| ConnectorState::new(connector_id.clone()));
        let writes = !options.dry_run;
        if writes {
            state.status = RunStatus::Running;
            state.last_run_id = Some(run_id.clone());
            state.last_run_started = Some(report.started_at);
            self.write(run_id, Vec::new(), Some(state.clone()), Some(report.record(RunStatus::Running))).await?;
        }
        info!(sink = %report.sink, force = options.force, dry_run = options.dry_run, "sync started");

        let outcome = self.fetch_plan_deliver(run_id, options, report).await;
        let status = match &outcome {
            Ok(stopped_early) if report.error.is_none() => {
                if *stopped_early || report.counts.failed > 0 || report.counts.dead > 0 {
                    RunStatus::Partial
                } else {
                    RunStatus::Completed
                }
            }
            Ok(_) => RunStatus::Failed,
            Err(e) => {
                report.error = Some(e.to_string());
                RunStatus::Failed
            }
        };
        report.finish(status, clock.elapsed());
        if report.possibly_truncated {
            warn!(
                limit = self.connector.ingestion.query_limit,
                "the Memory API returned a full page: the window may hold more memories than were fetched \
                 (raise ingestion.query_limit or shorten the schedule)"
            );
        }
        info!(
            status = %status,
            fetched = report.counts.fetched,
            new = report.counts.new,
            updated = report.counts.updated,
            unchanged = report.counts.unchanged,
            skipped = report.counts.skipped,
            failed = report.counts.failed,
            dead = report.counts.dead,
            duration_ms = report.duration_ms,
            "sync finished"
        );
        if writes {
            state.status = status;
            state.last_run_finished = report.finished_at;
            state.totals.runs += 1;
            state.totals.ingested += report.counts.new;
            state.totals.updated += report.counts.updated;
            state.totals.failed += report.counts.failed;
            if status == RunStatus::Failed {
                state.consecutive_failures += 1;
            } else {
                state.consecutive_failures = 0;
                state.last_success = report.finished_at;
            }
            self.write(run_id, Vec::new(), Some(state), Some(report.record(status))).await?;
        }
        outcome.map(|_| ())
    }

    /// Returns whether the run stopped early (deadline). A run-level failure
    /// (fetch failed, sink refused all) is put in `report.error`.
    async fn fetch_plan_deliver(&self, run_id: &RunId, options: &RunOptions, report: &mut RunReport) -> Result<bool, SyncError> {
        let connector_id = &self.connector.id;
        let page = match self.source.fetch(&self.connector).await {
            Ok(page) => page,
            Err(message) => {
                warn!(error = %message, "fetch failed");
                report.error = Some(format!("fetching memories failed: {message}"));
                return Ok(false);
            }
        };
        report.possibly_truncated = page.possibly_truncated;
        report.counts.fetched = (page.memories.len() + page.rejected.len()) as u64;
        report.counts.rejected = page.rejected.len() as u64;
        for rejected in &page.rejected {
            warn!(index = rejected.index, id = ?rejected.id, reason = %rejected.reason, "malformed memory skipped");
            report.push_error(rejected.id.clone().map(MemoryId::new), "fetch", rejected.reason.clone());
        }

        let ids: Vec<MemoryId> = page.memories.iter().map(|m| m.id.clone()).collect();
        let mut entries = self.store.entries(connector_id, &ids).await?;
        let now = Utc::now();

        let mut memories: Vec<&Memory> = page.memories.iter().collect();
        memories.sort_by(|a, b| a.id.cmp(&b.id));
        let mut bookkeeping: Vec<LedgerEntry> = Vec::new();
        let mut work: Vec<(MemoryId, Document, bool)> = Vec::new();
        for memory in memories {
            let entry = entries.get(&memory.id);
            let action = plan(&self.connector, memory, entry, options.force, now);
            let kind = action.kind();
            report.plan_item(&memory.id, kind, options.dry_run);
            match action {
                Action::Insert(document) => work.push((memory.id.clone(), document, false)),
                Action::Replace(document) => work.push((memory.id.clone(), document, true)),
                Action::Unchanged => report.counts.unchanged += 1,
                Action::BackingOff => report.counts.backing_off += 1,
                Action::Dead => report.counts.dead += 1,
                Action::WaitForTranscript { record } => {
                    report.counts.skipped += 1;
                    if record {
                        bookkeeping.push(self.waiting_entry(memory, entry, now));
                    }
                }
            }
        }
        debug!(to_deliver = work.len(), "planned");
        if options.dry_run {
            report.counts.new = work.iter().filter(|w| !w.2).count() as u64;
            report.counts.updated = work.iter().filter(|w| w.2).count() as u64;
            return Ok(false);
        }
        if !bookkeeping.is_empty() {
            self.write(run_id, bookkeeping, None, None).await?;
        }
        self.deliver_all(run_id, options, report, work, &mut entries).await
    }

    /// Keeps `batch_size` deliveries in flight and checkpoints every
    /// `batch_size` completions, so a crash loses at most one batch of
    /// bookkeeping (and a re-sent document is recognised as already there).
    async fn deliver_all(
        &self,
        run_id: &RunId,
        options: &RunOptions,
        report: &mut RunReport,
        work: Vec<(MemoryId, Document, bool)>,
        entries: &mut HashMap<MemoryId, LedgerEntry>,
    ) -> Result<bool, SyncError> {
        let batch_size = self.connector.ingestion.batch_size.max(1) as usize;
        let mut pending = work.into_iter();
        let mut in_flight: JoinSet<Delivered> = JoinSet::new();
        let mut done: Vec<LedgerEntry> = Vec::with_capacity(batch_size);
        let mut deadline_hit = false;
        let mut fatal: Option<String> = None;

        loop {
            while fatal.is_none() && !deadline_hit && in_flight.len() < batch_size && pending.len() > 0 {
                if options.deadline.is_some_and(|d| Instant::now() >= d) {
                    deadline_hit = true;
                    break;
                }
                let Some((memory_id, document, replace)) = pending.next() else { break };
                let sink = Arc::clone(&self.sink);
                in_flight.spawn(async move {
                    let result = if replace {
                        sink.replace(&document).await.map(Outcome::Replaced)
                    } else {
                        sink.insert(&document).await.map(Outcome::Inserted)
                    };
                    Delivered { memory_id, document, replace, result }
                });
            }
            let Some(joined) = in_flight.join_next().await else { break };
            match joined {
                Err(e) => {
                    fatal.get_or_insert_with(|| format!("a delivery task failed: {e}"));
                }
                Ok(Delivered { result: Err(SinkError { kind: SinkErrorKind::Fatal, message }), memory_id, .. }) => {
                    // Not the memory's fault: its entry stays as it was.
                    warn!(memory_id = %memory_id, error = %message, "the sink refused; stopping the run");
                    fatal.get_or_insert(message);
                }
                Ok(delivered) => {
                    let previous = entries.remove(&delivered.memory_id);
                    done.push(self.settle(delivered, previous, report));
                }
            }
            if done.len() >= batch_size {
                self.write(run_id, std::mem::take(&mut done), None, Some(report.record(RunStatus::Running))).await?;
            }
        }
        if !done.is_empty() {
            self.write(run_id, done, None, Some(report.record(RunStatus::Running))).await?;
        }
        let stopped_early = deadline_hit && pending.len() > 0;
        if stopped_early {
            report.stopped_early = true;
            info!(remaining = pending.len(), "deadline reached: stopped after a checkpoint; the next run continues");
        }
        if let Some(message) = fatal {
            report.error = Some(message);
        }
        Ok(stopped_early)
    }

    /// The ledger entry after one delivery, and its count in the report.
    fn settle(&self, delivered: Delivered, previous: Option<LedgerEntry>, report: &mut RunReport) -> LedgerEntry {
        let now = Utc::now();
        let Delivered { memory_id, document, replace, result } = delivered;
        let mut entry = previous.unwrap_or_else(|| LedgerEntry {
            memory_id: memory_id.clone(),
            status: EntryStatus::Failed,
            content_hash: None,
            pending_hash: None,
            file_source: document.file_source.clone(),
            doc_id: None,
            track_id: None,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            first_seen: now,
            last_ingested: None,
        });
        entry.file_source = document.file_source.clone();
        entry.doc_id = Some(lightrag::doc_id(&document.file_source));
        let delivered_as = |entry: &mut LedgerEntry, status: EntryStatus| {
            entry.status = status;
            entry.content_hash = Some(document.hash.clone());
            entry.pending_hash = None;
            entry.attempts = 0;
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
                // Sent before (a crash before the checkpoint): the document is there.
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
                entry.attempts += 1;
                entry.pending_hash = Some(document.hash.clone());
                entry.last_error = Some(error.message.clone());
                let retry = &self.connector.retry;
                if entry.attempts >= retry.max_attempts {
                    entry.status = EntryStatus::Dead;
                    entry.next_attempt_at = None;
                    report.counts.dead += 1;
                    warn!(memory_id = %memory_id, attempts = entry.attempts, error = %error.message, "memory is dead (attempts exhausted); `retry-failed` replays it");
                } else {
                    entry.status = EntryStatus::Failed;
                    let wait = item_backoff(entry.attempts, retry.backoff_multiplier, retry.max_backoff_seconds);
                    entry.next_attempt_at = chrono::Duration::from_std(wait).ok().map(|w| now + w);
                    report.counts.failed += 1;
                    warn!(memory_id = %memory_id, attempts = entry.attempts, error = %error.message, "delivery failed; kept for retry");
                }
                report.push_error(Some(memory_id), if replace { "replace" } else { "insert" }, error.message);
            }
        }
        entry
    }

    fn waiting_entry(&self, memory: &Memory, entry: Option<&LedgerEntry>, now: DateTime<Utc>) -> LedgerEntry {
        let mut entry = entry.cloned().unwrap_or_else(|| LedgerEntry {
            memory_id: memory.id.clone(),
            status: EntryStatus::WaitingTranscript,
            content_hash: None,
            pending_hash: None,
            file_source: file_source(&self.connector.context_id, memory.id.as_str()),
            doc_id: None,
            track_id: None,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            first_seen: now,
            last_ingested: None,
        });
        entry.status = EntryStatus::WaitingTranscript;
        entry
    }

    async fn write(
        &self,
        run_id: &RunId,
        entries: Vec<LedgerEntry>,
        connector: Option<ConnectorState>,
        run: Option<RunRecord>,
    ) -> Result<(), StateError> {
        let checkpoint = Checkpoint { entries, connector, run, lease_owner: Some(run_id.clone()) };
        self.store.checkpoint(&self.connector.id, checkpoint).await
    }
}

fn count_delivery(report: &mut RunReport, replace: bool) {
    if replace {
        report.counts.updated += 1;
    } else {
        report.counts.new += 1;
    }
}

/// Makes dead and failed memories eligible again on the next run (attempts
/// reset). Returns how many were replayed.
pub async fn replay_failed(store: &dyn StateStore, connector: &ConnectorId) -> Result<usize, StateError> {
    let stuck = store.entries_with_status(connector, &[EntryStatus::Dead, EntryStatus::Failed], 1_000_000).await?;
    let replayed: Vec<LedgerEntry> = stuck
        .into_iter()
        .map(|mut e| {
            e.status = EntryStatus::Failed;
            e.attempts = 0;
            e.next_attempt_at = None;
            e
        })
        .collect();
    let count = replayed.len();
    if count > 0 {
        store.checkpoint(connector, Checkpoint { entries: replayed, ..Default::default() }).await?;
    }
    Ok(count)
}

/// Counts of ledger entries per status, with every status present.
pub async fn ledger_counts(
    store: &dyn StateStore,
    connector: &ConnectorId,
) -> Result<std::collections::BTreeMap<EntryStatus, u64>, StateError> {
    let mut counts = store.status_counts(connector).await?;
    for status in EntryStatus::ALL {
        counts.entry(status).or_insert(0);
    }
    Ok(counts)
}

