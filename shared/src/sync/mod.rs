//! One sync run of one connector:
//! `lease -> fetch -> plan -> [deliver -> checkpoint] per batch -> report -> release`.
//!
//! The engine owns every decision of a run; the CLI, the scheduler and the
//! Lambda only build it and call [`SyncEngine::run`].

mod confirm;
#[cfg(all(test, feature = "aws"))]
mod cost_tests;
mod deliver;
mod digest;
mod duplicates;
pub mod limits;
mod lookup;
mod plan;
mod recover;
mod report;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use deliver::{Body, Work};
use digest::{Finals, Keys};

pub use limits::RunLimits;
pub use plan::{Action, ActionKind, Payload, plan, plan_enriched, plan_rendered};
pub use report::{ItemError, PlannedItem, RunReport};

use crate::config::{ConnectorConfig, LightragConfig, LightragMode};
use crate::enrich::{EnrichMode, Enricher, Enrichments};
use crate::ids::{ConnectorId, DocId, MemoryId, RunId};
use crate::lightrag::{self, DocumentSink};
use crate::memory_api::MemoryApiClient;
use crate::memory_api::model::{FetchedPage, Memory};
use crate::provenance;
use crate::state::{
    Checkpoint, ConnectorState, DigestWrite, EntryStatus, LeaseOutcome, LedgerEntry, RunRecord, RunStatus, StateError,
    StateStore, Trigger,
};
use crate::transform::file_source;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, debug, info, info_span, warn};

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
    /// A scheduled run of a paused connector (see [`Trigger::honours_pause`]):
    /// nothing was done or written.
    #[error("connector {0} is paused; the scheduled run was skipped")]
    Paused(ConnectorId),
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
    /// What started the run.
    pub trigger: Trigger,
    /// How long the run may go on ([`RunLimits`]); `None`: from the
    /// engine's job timeout, starting when the run starts.
    pub limits: Option<RunLimits>,
}

impl RunOptions {
    /// No new work starts after this.
    pub fn stop_at(&self) -> Option<Instant> {
        self.limits.map(|l| l.stop_at)
    }

    /// Work still in flight then is given up.
    pub fn abandon_at(&self) -> Option<Instant> {
        self.limits.map(|l| l.abandon_at)
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { force: false, dry_run: false, trigger: Trigger::Cli, limits: None }
    }
}

/// Everything a run needs, built once and reusable across runs.
#[derive(Clone)]
pub struct SyncEngine {
    connector: ConnectorConfig,
    /// `job_timeout_minutes`: the budget of a run given no [`RunLimits`].
    job_timeout: Duration,
    source: Arc<dyn MemorySource>,
    sink: Arc<dyn DocumentSink>,
    store: Arc<dyn StateStore>,
    settings: SinkSettings,
    /// When it turns `true` (service shutdown), the run takes no new work,
    /// like at its deadline.
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Transcripts, photo descriptions, place names (see [`crate::enrich`]).
    enricher: Option<Arc<Enricher>>,
    /// Take over a lease whose holder process on this host is gone (see
    /// [`SyncEngine::without_local_takeover`]).
    local_takeover: bool,
    /// Consult the ledger digest (see [`SyncEngine::reading_every_entry`]).
    digest: bool,
    /// The salt of a digest built anew (tests compare two stores on one salt).
    #[cfg(test)]
    salt: Option<u64>,
}

/// How the engine follows documents in the sink (api mode).
#[derive(Debug, Clone)]
struct SinkSettings {
    /// `lightrag.api.workspace`, compared with the server's.
    workspace: String,
    /// Ask the sink about submitted documents (LightRAG api mode).
    confirm: bool,
    confirm_wait: Duration,
    stuck_after: chrono::Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            workspace: String::new(),
            confirm: false,
            confirm_wait: Duration::ZERO,
            stuck_after: chrono::Duration::hours(1),
        }
    }
}

impl SyncEngine {
    /// An engine for `connector`; a run without [`RunOptions::limits`] may
    /// go on for `job_timeout` (its lease a little longer, see [`RunLimits`]).
    pub fn new(
        connector: ConnectorConfig,
        job_timeout: Duration,
        source: Arc<dyn MemorySource>,
        sink: Arc<dyn DocumentSink>,
        store: Arc<dyn StateStore>,
    ) -> Self {
        Self {
            connector,
            job_timeout,
            source,
            sink,
            store,
            settings: SinkSettings::default(),
            stop: None,
            enricher: None,
            local_takeover: true,
            digest: true,
            #[cfg(test)]
            salt: None,
        }
    }

    /// Follows documents through LightRAG as `lightrag` configures it (api
    /// mode): checks the server at the start, confirms submitted documents
    /// each run and waits up to `confirm_wait_seconds` at the end.
    pub fn with_lightrag_settings(mut self, lightrag: &LightragConfig) -> Self {
        if lightrag.mode == LightragMode::Api && self.sink.confirms() {
            let api = &lightrag.api;
            self.settings = SinkSettings {
                workspace: api.workspace.clone(),
                confirm: true,
                confirm_wait: Duration::from_secs(api.confirm_wait_seconds),
                stuck_after: chrono::Duration::minutes(
                    i64::try_from(api.stuck_after_minutes).unwrap_or(i64::MAX / 120_000),
                ),
            };
        }
        self
    }

    /// Stops runs at the next batch boundary once `stop` turns `true`.
    pub fn with_stop_signal(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Enriches memories before they are rendered (`include_audio`,
    /// `include_image`, `geocoding`).
    pub fn with_enricher(mut self, enricher: Option<Arc<Enricher>>) -> Self {
        self.enricher = enricher;
        self
    }

    /// Enrichments of the page's memories; a dry run reads only the cache.
    async fn enrich(&self, page: &FetchedPage, options: &RunOptions) -> Enrichments {
        let mode = if options.dry_run { EnrichMode::CacheOnly } else { EnrichMode::Full };
        match &self.enricher {
            Some(enricher) => enricher.enrich(page, mode, options.limits.map(|l| l.enrich_until())).await,
            None => Enrichments::default(),
        }
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
        self.run_with_id(RunId::generate(started_at), options).await
    }

    /// Like [`run`](Self::run) under a run id chosen by the caller (the
    /// scheduler answers a trigger with the id before the run starts; it may
    /// already hold the lease under that id).
    pub async fn run_with_id(&self, run_id: RunId, options: RunOptions) -> Result<RunReport, SyncError> {
        let started_at = Utc::now();
        let span = info_span!("sync", connector_id = %self.connector.id, run_id = %run_id, trigger = %options.trigger);
        self.run_inner(run_id, started_at, options).instrument(span).await
    }

    async fn run_inner(
        &self,
        run_id: RunId,
        started_at: DateTime<Utc>,
        mut options: RunOptions,
    ) -> Result<RunReport, SyncError> {
        let clock = Instant::now();
        let limits = *options
            .limits
            .get_or_insert_with(|| RunLimits::new(clock, self.job_timeout, None, limits::DEFAULT_MARGIN));
        let connector_id = self.connector.id.clone();
        let mut report = RunReport::new(&run_id, &connector_id, &options, started_at, self.sink.describe());

        if !options.dry_run {
            self.acquire_lease(&run_id, started_at, limits.lease_ttl).await?;
        }

        let result = self.run_leased(&run_id, &options, &mut report, clock).await;
        if !options.dry_run
            && let Err(e) = self.store.release_lease(&connector_id, &run_id).await
        {
            warn!(error = %e, "could not release the lease; it expires by itself");
        }
        result?;
        Ok(report)
    }

    /// Takes the lease; a lease left by a dead process of this host is
    /// released (by owner, so racing rerunners cannot both win) and retaken.
    async fn acquire_lease(&self, run_id: &RunId, now: DateTime<Utc>, ttl: Duration) -> Result<(), SyncError> {
        let connector_id = &self.connector.id;
        for _ in 0..2 {
            match self.store.try_acquire_lease(connector_id, run_id, now, ttl).await? {
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
        Err(SyncError::AlreadyRunning { connector: connector_id.clone(), owner: run_id.clone(), expires_at: now })
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
        if state.paused && options.trigger.honours_pause() {
            info!("paused: the scheduled run is skipped");
            return Err(SyncError::Paused(connector_id.clone()));
        }
        // The previous run never finished (killed): what it sent must be
        // recognised, not sent twice.
        let interrupted_at = (state.status == RunStatus::Running).then_some(state.last_run_started).flatten();
        // What a run that did not end cleanly submitted may be on no watch list.
        let since = if self.settings.confirm {
            crate::state::Watch::since(self.store.as_ref(), connector_id, Some(&state)).await?
        } else {
            None
        };
        let writes = !options.dry_run;
        if writes {
            state.status = RunStatus::Running;
            state.last_run_id = Some(run_id.clone());
            state.last_run_started = Some(report.started_at);
            self.write(run_id, Vec::new(), Some(state.clone()), Some(report.record(RunStatus::Running))).await?;
        }
        info!(sink = %report.sink, force = options.force, dry_run = options.dry_run, "sync started");

        // The server's health and the page are read at the same time: a run
        // waits for the slower of the two, not for both. Nothing is sent
        // before the health check passed, and a failed one ends the run at
        // once (a fetch still retrying is dropped).
        // Both within the run's time: a Memory API or LightRAG that keeps
        // retrying past it fails the run (nothing was sent, nothing charged).
        let health = self.sink.preflight(&self.settings.workspace);
        let fetch = self.source.fetch(&self.connector);
        let abandon_at = options.abandon_at().map_or_else(far_future, tokio::time::Instant::from_std);
        let timed_out = || {
            "the run's time ran out before the Memory API and LightRAG had both answered; nothing was sent".to_owned()
        };
        tokio::pin!(health, fetch);
        let ready: Result<Result<FetchedPage, String>, (String, Option<String>)> = tokio::select! {
            server = &mut health => match self.preflight(report, server) {
                Ok(()) => tokio::time::timeout_at(abandon_at, fetch).await.map_err(|_| (timed_out(), None)),
                Err(message) => Err((message, None)),
            },
            page = &mut fetch => match tokio::time::timeout_at(abandon_at, health).await {
                Ok(server) => match self.preflight(report, server) {
                    Ok(()) => Ok(page),
                    Err(message) => Err((message, page.err())),
                },
                Err(_) => Err((timed_out(), None)),
            },
            _ = tokio::time::sleep_until(abandon_at) => Err((timed_out(), None)),
        };
        let outcome = match ready {
            Ok(fetched) => self.fetch_plan_deliver(run_id, options, report, interrupted_at, since, fetched).await,
            Err((message, fetch_error)) => {
                if let Some(fetch_error) = fetch_error {
                    warn!(error = %fetch_error, "fetch failed too");
                    report.warnings.push(format!("fetching memories failed too: {fetch_error}"));
                }
                report.error = Some(message);
                Ok((false, None))
            }
        };
        // A run that failed half-way may have written entries its digest does
        // not know: the next run reads in full and looks for what it
        // submitted beyond the list, which stays (`Watch::since`).
        let digest = match &outcome {
            Ok((_, digest)) => digest.clone(),
            Err(_) => {
                let kept = self.store.ledger_view(connector_id).await.ok().and_then(|view| view.unconfirmed);
                Some(DigestWrite { digest: None, unconfirmed: kept })
            }
        };
        let outcome = outcome.map(|(stopped_early, _)| stopped_early);
        let status = match &outcome {
            Ok(stopped_early) if report.error.is_none() => {
                let lost = report.counts.failed + report.counts.dead + report.counts.lightrag_failed;
                if *stopped_early || lost > 0 { RunStatus::Partial } else { RunStatus::Completed }
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
            // `pause`/`resume` may have come in while the run went on.
            if let Ok(Some(current)) = self.store.connector_state(&self.connector.id).await {
                state.paused = current.paused;
            }
            if status == RunStatus::Failed {
                state.consecutive_failures += 1;
            } else {
                state.consecutive_failures = 0;
                state.last_success = report.finished_at;
            }
            let last = Checkpoint {
                connector: Some(state),
                run: Some(report.record(status)),
                digest,
                ..Checkpoint::default()
            };
            self.write_run(run_id, last).await?;
        }
        outcome.map(|_| ())
    }

    /// Takes in the server's health, read before anything is sent: reports
    /// its version and workspace, warns on a mismatch; an unreachable or
    /// refusing server fails the run up front, charging no memory an attempt.
    fn preflight(
        &self,
        report: &mut RunReport,
        server: Result<Option<crate::lightrag::Preflight>, crate::lightrag::SinkError>,
    ) -> Result<(), String> {
        match server {
            Ok(Some(server)) => {
                info!(version = ?server.core_version, workspace = ?server.workspace, "LightRAG server");
                report.warnings.extend(server.warnings.iter().cloned());
                report.server = Some(server);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(format!("LightRAG is not usable, nothing was sent: {}", e.message)),
        }
    }

    /// Returns whether the run left work to the next one (its deadline, or
    /// documents held back after an interrupted run), and the digest (and
    /// unconfirmed ids) its last write leaves. A run-level failure
    /// (fetch failed, sink refused all) is put in `report.error`.
    async fn fetch_plan_deliver(
        &self,
        run_id: &RunId,
        options: &RunOptions,
        report: &mut RunReport,
        interrupted_at: Option<DateTime<Utc>>,
        since: Option<DateTime<Utc>>,
        fetched: Result<FetchedPage, String>,
    ) -> Result<(bool, Option<DigestWrite>), SyncError> {
        let connector_id = &self.connector.id;
        let page = match fetched {
            Ok(page) => page,
            Err(message) => {
                warn!(error = %message, "fetch failed");
                report.error = Some(format!("fetching memories failed: {message}"));
                return Ok((false, None));
            }
        };
        report.possibly_truncated = page.possibly_truncated;
        report.counts.fetched = (page.memories.len() + page.rejected.len()) as u64;
        report.counts.rejected = page.rejected.len() as u64;
        for rejected in &page.rejected {
            warn!(index = rejected.index, id = ?rejected.id, reason = %rejected.reason, "malformed memory skipped");
            let message = format!("item #{} of the answer: {}", rejected.index, rejected.reason);
            report.push_error(rejected.id.clone().map(MemoryId::new), "fetch", message);
        }

        // Read before any entry: a write without the lease after this makes
        // the digest this run leaves invalid (see `state::digest`).
        let view = self.store.ledger_view(connector_id).await?;
        let keys = view.digest.as_ref().map_or_else(|| self.new_keys(), |root| Keys { salt: root.salt });
        let watch = crate::state::Watch::new(view.unconfirmed.as_deref(), since);
        // Killed, timed out or failed: it may have written entries no digest
        // or list knows of.
        let unclean = interrupted_at.is_some() || since.is_some();
        if self.settings.confirm {
            // Kept up to date through the run, so `status` can count the rest as processed.
            report.counts.awaiting = view.unconfirmed.as_ref().map(|ids| ids.len() as u64);
        }
        let mut finals = Finals::new(keys, watch);
        let mut known = HashMap::new();
        // Documents a dead run was sending that LightRAG turned out to hold:
        // the end-of-run wait follows them too.
        let mut found_sent = Vec::new();
        let recovering = self.settings.confirm && !options.dry_run;
        if recovering {
            // A dead run's marks and submissions never reached a digest: list them.
            let which = match &view.unconfirmed {
                Some(ids) if !unclean => confirm::Submitted::Recorded(ids),
                _ => confirm::Submitted::Listed,
            };
            found_sent = self.confirm(run_id, report, which, &mut known, &mut finals).await?.found;
        }
        if let Some(at) = interrupted_at {
            info!(since = %at, "the previous run was interrupted; what it was sending is checked before anything is sent");
        }
        let enriched = self.enrich(&page, options).await;
        let full = options.force || unclean || !self.digest;
        let mut lookup = self.look_up(&view, keys, &page, &enriched, full, known).await?;
        debug!(read = lookup.read, vouched = lookup.vouched.len(), "ledger looked up");
        // A `sending` entry is never vouched for (its leaf is 0): every one
        // of the page is among the entries read.
        let held_back = if recovering {
            self.recover_in_flight(run_id, options, report, &mut lookup.entries, &mut found_sent, &mut finals).await?
        } else {
            std::collections::HashSet::new()
        };
        let now = Utc::now();

        let connector_ctx = self.connector.context_id.as_str();
        let mut memories: Vec<&Memory> = page.memories.iter().collect();
        memories.sort_by(|a, b| a.id.cmp(&b.id));
        let mut bookkeeping: Vec<LedgerEntry> = Vec::new();
        let mut work: Vec<Work> = Vec::new();
        let mut identities: HashMap<DocId, &MemoryId> = HashMap::with_capacity(memories.len());
        for memory in memories {
            if held_back.contains(&memory.id) {
                report.counts.held_back += 1;
                continue;
            }
            if enriched.is_postponed(&memory.id) {
                // Its enrichment did not fit in this run: the next run
                // enriches and sends it (nothing recorded, nothing charged).
                report.counts.postponed += 1;
                report.stopped_early = true;
                continue;
            }
            let entry = lookup.entries.get(&memory.id);
            // Two memories of one page under one identity in the sink (names
            // stored by an older rule, or an md5 collision of LightRAG's doc
            // id): the second is refused before anything is sent (decision 0001).
            // A memory the digest vouches for has the name the rule makes (the
            // digest holds only those), so its identity is exact unread.
            let name = entry.map(|e| e.file_source.clone()).filter(|n| !n.is_empty());
            let identity = lightrag::doc_id(&name.unwrap_or_else(|| file_source(connector_ctx, memory.id.as_str())));
            if let Some(first) = identities.get(&identity) {
                let message = format!(
                    "its document identity {identity} in LightRAG is already that of memory {first}; not sent, so neither overwrites the other"
                );
                warn!(memory_id = %memory.id, %message, "memory refused");
                report.counts.rejected += 1;
                report.push_error(Some(memory.id.clone()), "plan", message);
                continue;
            }
            identities.insert(identity, &memory.id);
            let enrichment = enriched.get(&memory.id);
            let action = match lookup.vouched.get(&memory.id) {
                Some((action, _)) => action.clone(),
                None => plan_enriched(&self.connector, memory, entry, options.force, now, enrichment),
            };
            let kind = action.kind();
            report.plan_item(&memory.id, kind, options.dry_run);
            match action {
                Action::Insert(Payload::Rendered(document)) => {
                    work.push(Work { memory, enrichment, body: Body::Ready(Box::new(document)), replace: false });
                }
                Action::Insert(Payload::OnSend) => {
                    work.push(Work { memory, enrichment, body: Body::OnSend, replace: false });
                }
                Action::Replace(document) => {
                    work.push(Work { memory, enrichment, body: Body::Ready(Box::new(document)), replace: true });
                }
                Action::Unchanged => {
                    report.counts.unchanged += 1;
                    // Delivered by a version without provenance records: keep one now.
                    if let Some(entry) = entry.filter(|e| e.provenance.is_none() && e.content_hash.is_some()) {
                        let record = provenance::record(
                            &self.connector.context_id,
                            memory,
                            &self.connector.transformation,
                            enrichment,
                        );
                        bookkeeping.push(LedgerEntry { provenance: Some(record), ..entry.clone() });
                    }
                }
                Action::BackingOff => report.counts.backing_off += 1,
                Action::Dead => report.counts.still_dead += 1,
                Action::WaitForTranscript { record } => {
                    report.counts.skipped += 1;
                    if record {
                        bookkeeping.push(self.waiting_entry(memory, entry, now));
                    }
                }
            }
        }
        // Only planning needs it (~90 bytes a memory): not held through delivery.
        drop(identities);
        debug!(to_deliver = work.len(), "planned");
        if options.dry_run {
            report.counts.new = work.iter().filter(|w| !w.replace).count() as u64;
            report.counts.updated = work.iter().filter(|w| w.replace).count() as u64;
            return Ok((false, None));
        }
        if !bookkeeping.is_empty() {
            for entry in &bookkeeping {
                finals.read(entry);
            }
            self.write(run_id, bookkeeping, None, None).await?;
        }
        finals.submitted = recover::followed_at_the_end(unclean, &lookup.entries, found_sent, &finals);
        let stopped_early = self.deliver_all(run_id, options, report, work, &mut lookup.entries, &mut finals).await?
            || report.stopped_early;
        if self.settings.confirm && report.error.is_none() {
            if self.settings.confirm_wait.is_zero() {
                // `confirm_wait_seconds: 0`: not waited for; all this run
                // sent (and found sent by an interrupted run) is unconfirmed until the next run asks.
                report.unconfirmed = finals.submitted.len() as u64;
            } else {
                self.await_processing(run_id, options, report, &mut finals).await?;
            }
            let c = &report.counts;
            if unclean || c.new + c.updated + c.recovered + c.confirmed + c.lightrag_failed > 0 {
                self.remove_duplicates(report).await;
            }
        }
        let digest = self.digest_write(&view, &lookup, &page, &finals);
        if self.settings.confirm {
            let left = match &digest {
                Some(write) => write.unconfirmed.as_ref(),
                None => view.unconfirmed.as_ref(),
            };
            report.counts.awaiting = left.map(|ids| ids.len() as u64);
        }
        Ok((stopped_early || report.counts.held_back > 0, digest))
    }

    fn waiting_entry(&self, memory: &Memory, entry: Option<&LedgerEntry>, now: DateTime<Utc>) -> LedgerEntry {
        let mut entry = entry.cloned().unwrap_or_else(|| {
            let name = file_source(&self.connector.context_id, memory.id.as_str());
            LedgerEntry::new(memory.id.clone(), name, EntryStatus::WaitingTranscript, now)
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
        self.write_run(run_id, Checkpoint { entries, connector, run, ..Checkpoint::default() }).await
    }

    /// A checkpoint of this run that also marks documents about to leave
    /// (see [`Checkpoint::marks`]).
    async fn write_marked(
        &self,
        run_id: &RunId,
        entries: Vec<LedgerEntry>,
        marks: Vec<LedgerEntry>,
        run: Option<RunRecord>,
    ) -> Result<(), StateError> {
        self.write_run(run_id, Checkpoint { entries, marks, run, ..Checkpoint::default() }).await
    }

    /// A checkpoint of this run: fenced by its lease.
    async fn write_run(&self, run_id: &RunId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let checkpoint = Checkpoint { lease_owner: Some(run_id.clone()), ..checkpoint };
        self.store.checkpoint(&self.connector.id, checkpoint).await
    }
}

/// An instant no run reaches (a run without limits).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
