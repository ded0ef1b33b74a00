//! What the connector remembers: the ledger (one entry per memory), the
//! connector's state, the lease that makes a run single-flight, and the run
//! history. [`StateStore`] is the seam; `json` and `sqlite` (and `dynamodb`,
//! behind the `aws` feature) implement it, and all of them pass the one
//! conformance suite in `conformance` (test support: compiled for this
//! crate's tests, or for another crate's with the `test-support` feature).

pub mod backup;
pub mod cipher;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod cost;
pub mod digest;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod files;
pub mod json;
pub mod marks;
mod provenance;
#[cfg(feature = "aws")]
pub mod recorded;
pub mod sqlite;

pub use provenance::Provenance;

use crate::config::{StateBackend, StateConfig};
use crate::ids::{ConnectorId, ContentHash, DocId, MemoryId, RunId, TrackId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use digest::{DigestRecord, DigestRoot, DigestShard, DigestWrite, LedgerView, Watch};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where one memory stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Seen with an empty transcript; ingested once the text arrives.
    WaitingTranscript,
    /// Handed to the sink by a run that has not recorded the answer yet
    /// (written just before the request leaves). Found after that run died,
    /// it means LightRAG may hold the document or be about to: a later run
    /// asks LightRAG before it sends it again (decision 0009).
    Sending,
    /// Accepted by the sink (api: queued in LightRAG; direct: file written).
    Submitted,
    /// LightRAG reports the document processed.
    Processed,
    /// LightRAG reports the document failed inside its pipeline.
    LightragFailed,
    /// The memory changed but the old document could not be removed yet
    /// (LightRAG busy); the update is retried on the next run.
    UpdatePending,
    /// Delivery failed on the connector side; retried after `next_attempt_at`.
    Failed,
    /// Attempts exhausted: kept, listed by `failed`, replayable by `retry-failed`.
    Dead,
}

impl EntryStatus {
    pub const ALL: [EntryStatus; 8] = [
        EntryStatus::WaitingTranscript,
        EntryStatus::Sending,
        EntryStatus::Submitted,
        EntryStatus::Processed,
        EntryStatus::LightragFailed,
        EntryStatus::UpdatePending,
        EntryStatus::Failed,
        EntryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::WaitingTranscript => "waiting_transcript",
            EntryStatus::Sending => "sending",
            EntryStatus::Submitted => "submitted",
            EntryStatus::Processed => "processed",
            EntryStatus::LightragFailed => "lightrag_failed",
            EntryStatus::UpdatePending => "update_pending",
            EntryStatus::Failed => "failed",
            EntryStatus::Dead => "dead",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// A document for this memory is in the sink (counted as "processed"
    /// by `status`, the metrics and the API).
    pub fn is_delivered(self) -> bool {
        matches!(self, EntryStatus::Submitted | EntryStatus::Processed | EntryStatus::LightragFailed)
    }

    /// Listed by status on the sync path or by an operator (`failed`,
    /// `retry-failed`, deferred updates): the statuses the `dynamodb` store
    /// keeps in its sparse `open` index. Not the settled ones, which are
    /// most of a ledger, and not the two every document passes through once
    /// (`sending`, `submitted`): the run after them finds them through the
    /// ledger digest, or after an interrupted run by reading the ledger
    /// (decisions 16, 26 and 27).
    pub fn listed_by_status(self) -> bool {
        matches!(
            self,
            EntryStatus::Failed | EntryStatus::LightragFailed | EntryStatus::UpdatePending | EntryStatus::Dead
        )
    }

    /// The statuses that need a person's attention: failed on the
    /// connector's side, failed inside LightRAG, or dead. `status` counts
    /// them as "failed", `failed` lists them, the console shows them. An
    /// update deferred because LightRAG was busy (`update_pending`) is not
    /// among them: the next run retries it by itself.
    pub const FAILED: [EntryStatus; 3] = [EntryStatus::Failed, EntryStatus::LightragFailed, EntryStatus::Dead];

    /// One of [`EntryStatus::FAILED`].
    pub fn is_failed(self) -> bool {
        Self::FAILED.contains(&self)
    }

    /// What `retry-failed` makes eligible again (a `lightrag_failed`
    /// document is re-sent by the runs themselves within its budget).
    pub const REPLAYABLE: [EntryStatus; 2] = [EntryStatus::Failed, EntryStatus::Dead];
}

/// Ledger entries per status, every status present (zero when none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EntryCounts(BTreeMap<EntryStatus, u64>);

impl EntryCounts {
    /// From a store's counts, which may leave out statuses with none.
    pub fn from_sparse(mut counts: BTreeMap<EntryStatus, u64>) -> Self {
        for status in EntryStatus::ALL {
            counts.entry(status).or_insert(0);
        }
        Self(counts)
    }

    /// The counts as LightRAG last confirmed them: of the `submitted`
    /// entries, all but the `awaiting` ones the last run left on its watch
    /// list are processed (decision 29).
    pub fn confirmed_but(mut self, awaiting: u64) -> Self {
        let submitted = self.get(EntryStatus::Submitted);
        let confirmed = submitted.saturating_sub(awaiting);
        self.0.insert(EntryStatus::Submitted, submitted - confirmed);
        *self.0.entry(EntryStatus::Processed).or_default() += confirmed;
        self
    }

    pub fn get(&self, status: EntryStatus) -> u64 {
        self.0.get(&status).copied().unwrap_or(0)
    }

    /// Memories whose document is in the sink ([`EntryStatus::is_delivered`]).
    pub fn processed(&self) -> u64 {
        self.sum(EntryStatus::is_delivered)
    }

    /// Memories that need attention ([`EntryStatus::FAILED`]).
    pub fn failed(&self) -> u64 {
        self.sum(EntryStatus::is_failed)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (EntryStatus, u64)> + '_ {
        self.0.iter().map(|(s, n)| (*s, *n))
    }

    fn sum(&self, which: fn(EntryStatus) -> bool) -> u64 {
        self.iter().filter(|(s, _)| which(*s)).map(|(_, n)| n).sum()
    }
}

impl Default for EntryCounts {
    fn default() -> Self {
        Self::from_sparse(BTreeMap::new())
    }
}

impl fmt::Display for EntryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The ledger's record of one memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub memory_id: MemoryId,
    pub status: EntryStatus,
    /// Hash of the text that is in the sink; `None` until something was delivered.
    pub content_hash: Option<ContentHash>,
    /// Hash of the text being delivered when that failed or was deferred.
    pub pending_hash: Option<ContentHash>,
    pub file_source: String,
    pub doc_id: Option<DocId>,
    pub track_id: Option<TrackId>,
    /// Failed deliveries since the last success.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    /// When the document was last handed to the sink: delivered, or (status
    /// `sending`) about to be sent.
    pub last_ingested: Option<DateTime<Utc>>,
    /// What the delivered document says about the memory (`None` before
    /// the first delivery, and for entries written by older versions until
    /// their next run backfills it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

impl LedgerEntry {
    /// The mark written before a memory's document leaves for LightRAG: its
    /// entry (`previous`, or a new one first seen `at`) `sending`, with the
    /// name and the hash of the text on its way and when it left; the rest
    /// as it was. Stores that keep marks apart (DynamoDB, decision 28)
    /// rebuild the entry they show with this, from the stored entry.
    pub fn marked(
        previous: Option<&LedgerEntry>,
        memory_id: &MemoryId,
        file_source: &str,
        hash: &ContentHash,
        at: DateTime<Utc>,
    ) -> Self {
        let mut entry = previous
            .cloned()
            .unwrap_or_else(|| LedgerEntry::new(memory_id.clone(), file_source.to_owned(), EntryStatus::Sending, at));
        entry.status = EntryStatus::Sending;
        entry.pending_hash = Some(hash.clone());
        entry.file_source = file_source.to_owned();
        entry.doc_id = Some(DocId::of_name(file_source));
        entry.last_ingested = Some(at);
        entry
    }

    /// A memory's first entry: seen now, nothing delivered, no attempt yet.
    pub fn new(memory_id: MemoryId, file_source: String, status: EntryStatus, now: DateTime<Utc>) -> Self {
        Self {
            memory_id,
            status,
            content_hash: None,
            pending_hash: None,
            file_source,
            doc_id: None,
            track_id: None,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            first_seen: now,
            last_ingested: None,
            provenance: None,
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `memory-connector sync`.
    Cli,
    /// The schedule (`serve`'s scheduler, or a scheduled Lambda invocation).
    Schedule,
    /// The management API's `trigger` in `serve`.
    Api,
    /// A `SyncRequested` event (the api function's `trigger`).
    Event,
    /// A direct invocation of the `sync` function.
    Lambda,
    /// A value this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl Trigger {
    pub const ALL: [Trigger; 6] =
        [Trigger::Cli, Trigger::Schedule, Trigger::Api, Trigger::Event, Trigger::Lambda, Trigger::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Event => "event",
            Trigger::Lambda => "lambda",
            Trigger::Unknown => "unknown",
        }
    }

    /// Whether a paused connector skips a run started this way: scheduled
    /// runs do; a run a person asked for (CLI, API, event, direct invoke)
    /// still runs.
    pub fn honours_pause(self) -> bool {
        self == Trigger::Schedule
    }

    /// Reads a stored or sent name; anything else is [`Trigger::Unknown`].
    pub fn parse(value: &str) -> Self {
        Self::ALL.into_iter().find(|t| t.as_str() == value).unwrap_or(Trigger::Unknown)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the connector was doing or did last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Idle,
    Running,
    /// Every memory of the run ended where it should.
    Completed,
    /// The run finished but some memories failed, or it stopped early
    /// (deadline) and the next run continues.
    Partial,
    Failed,
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Idle => "idle",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            RunStatus::Idle,
            RunStatus::Running,
            RunStatus::Completed,
            RunStatus::Partial,
            RunStatus::Failed,
            RunStatus::TimedOut,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Per-connector state (the lease is kept apart, see [`Lease`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorState {
    pub connector_id: ConnectorId,
    pub status: RunStatus,
    pub last_run_id: Option<RunId>,
    pub last_run_started: Option<DateTime<Utc>>,
    pub last_run_finished: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub paused: bool,
    pub totals: Totals,
}

impl ConnectorState {
    pub fn new(connector_id: ConnectorId) -> Self {
        Self {
            connector_id,
            status: RunStatus::Idle,
            last_run_id: None,
            last_run_started: None,
            last_run_finished: None,
            last_success: None,
            consecutive_failures: 0,
            paused: false,
            totals: Totals::default(),
        }
    }
}

/// Running sums over all runs of a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub runs: u64,
    pub ingested: u64,
    pub updated: u64,
    pub failed: u64,
}

/// Counts of one run (also the body of the run report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    /// Memories the Memory API returned (malformed ones included).
    pub fetched: u64,
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Waiting for a transcript.
    pub skipped: u64,
    /// Failed this run (kept for retry).
    pub failed: u64,
    /// Became dead this run (attempts exhausted).
    pub dead: u64,
    /// Dead before this run and skipped: waiting for `retry-failed`. They do
    /// not make the run partial (nothing failed in it); `status`, the
    /// `failed` listing and the dead-memories alert show them.
    pub still_dead: u64,
    /// Malformed items the Memory API sent (reported, skipped).
    pub rejected: u64,
    /// Updates deferred because LightRAG was busy.
    pub deferred: u64,
    /// Memories left for the next run because this run's time ran out
    /// before they were enriched.
    pub postponed: u64,
    /// Failed earlier and still inside their backoff window.
    pub backing_off: u64,
    /// Submitted documents LightRAG reported processed during this run.
    pub confirmed: u64,
    /// Submitted documents LightRAG reported failed during this run.
    pub lightrag_failed: u64,
    /// Submitted documents still pending/processing past `stuck_after_minutes`.
    pub stuck: u64,
    /// Documents an interrupted run was sending that LightRAG listed: its
    /// request got through, so they are not sent again.
    pub recovered: u64,
    /// Documents an interrupted run was sending that LightRAG did not list
    /// yet while it was still enqueuing: not sent again by this run.
    pub held_back: u64,
    /// `dup-` records LightRAG had made of this connector's documents
    /// (a name sent twice), deleted; the originals are kept.
    pub duplicates_removed: u64,
    /// Documents still waiting for LightRAG's word when the run ended (the
    /// watch list it left, decision 29); `None` when not known. A document
    /// LightRAG confirmed keeps its `submitted` entry, so `status` counts
    /// the other submitted entries as processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<u64>,
}

impl RunCounts {
    /// Memories that failed in this run, on the connector's side or inside
    /// LightRAG's pipeline (what the console charts as "failed").
    pub fn failed_memories(&self) -> u64 {
        self.failed + self.lightrag_failed
    }
}

/// One run, kept as history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub connector_id: ConnectorId,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub counts: RunCounts,
    pub possibly_truncated: bool,
    pub error: Option<String>,
}

/// The single-flight lease of a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: RunId,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// A lease for `owner` from `now` for `ttl`. Timestamps are cut to whole
    /// milliseconds so every store gives back exactly what it returned from
    /// [`StateStore::try_acquire_lease`]; an absurd `ttl` ends at year 9999.
    pub fn new(owner: RunId, now: DateTime<Utc>, ttl: Duration) -> Self {
        use chrono::{SubsecRound, TimeDelta};
        let acquired_at = now.trunc_subsecs(3);
        let latest = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let expires_at = TimeDelta::from_std(ttl)
            .ok()
            .and_then(|ttl| acquired_at.checked_add_signed(ttl))
            .map_or(latest, |at| at.min(latest));
        Self { owner, acquired_at, expires_at }
    }

    /// Past its expiry at `now` (a lease ending exactly at `now` is expired).
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    /// Held by a run that may still be going at `now`: not expired, and its
    /// holder is not a process of this host that is gone (see
    /// [`RunId::holder_is_gone`]).
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        !self.is_expired_at(now) && !self.owner.holder_is_gone()
    }

    /// Whether `owner` may take the lease at `now`: it is expired, or `owner`
    /// already holds it (taking it again renews it).
    pub fn can_be_taken_by(&self, owner: &RunId, now: DateTime<Utc>) -> bool {
        self.is_expired_at(now) || &self.owner == owner
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired(Lease),
    /// Someone else holds an unexpired lease.
    Held(Lease),
}

/// Everything one batch changed. SQLite writes it in one transaction, JSON
/// as one journal record (or one file); DynamoDB writes a run's entries
/// without a transaction per entry and settles a batch a crash cut (decision 26).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub entries: Vec<LedgerEntry>,
    /// Memories whose documents are about to leave, each marked with
    /// [`LedgerEntry::marked`] over its entry as last read (or none). Reads
    /// show them as `sending` entries until an entry of the same memory is
    /// written (in `entries` here, or later). A store may keep them apart
    /// from the ledger: DynamoDB keeps a run's marks in one item (decision
    /// 28); SQLite and JSON write them as entries, before `entries`.
    pub marks: Vec<LedgerEntry>,
    pub connector: Option<ConnectorState>,
    /// Inserted or replaced (by `run_id`).
    pub run: Option<RunRecord>,
    /// When set, the write fails with [`StateError::LeaseLost`] unless this
    /// run still holds the connector's lease (is its owner; an expired lease
    /// nobody took over still counts, there is no clock here).
    pub lease_owner: Option<RunId>,
    /// A run's last write: the new ledger digest (see [`digest`]).
    pub digest: Option<DigestWrite>,
}

impl Checkpoint {
    /// The same checkpoint with its marks written as entries, before the
    /// entries (a later entry of a memory replaces its mark): how the
    /// stores that keep no marks apart write them.
    pub fn marks_as_entries(mut self) -> Self {
        if !self.marks.is_empty() {
            let entries = std::mem::take(&mut self.entries);
            self.entries = std::mem::take(&mut self.marks);
            self.entries.extend(entries);
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is not valid: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("state database {path}: {detail}")]
    Database { path: PathBuf, detail: String },
    #[error("state {path} is locked by another process: {detail}")]
    Locked { path: PathBuf, detail: String },
    #[error("connector {connector}: the run {owner} no longer holds the lease (it expired and another run took it)")]
    LeaseLost { connector: ConnectorId, owner: RunId },
    #[error("connector {connector} is running (run {owner}, lease until {expires_at}); try again when it has finished")]
    Busy { connector: ConnectorId, owner: RunId, expires_at: DateTime<Utc> },
    #[error("state backend {0}")]
    Unsupported(String),
    #[error("backup {path} cannot be restored: it {detail}; the current state was not changed")]
    BadBackup { path: PathBuf, detail: String },
}

#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Takes the connector's lease if free or expired at `now`, or renews it
    /// if `owner` already holds it (see [`Lease::new`] for the timestamps).
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError>;

    /// Releases the lease if `owner` holds it; otherwise does nothing.
    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError>;

    /// The current lease, expired or not.
    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError>;

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError>;

    /// Connectors that have any state (connector state, ledger entries, run
    /// records or a lease), sorted.
    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError>;

    /// Ledger entries for these memory ids (missing ids are simply absent).
    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError>;

    /// The entries, in every connector, whose `file_source` is one of
    /// `names` (LightRAG's stored names), ordered by connector then memory
    /// id. One name may belong to several connectors. The stores look names
    /// up through an index; this default reads every ledger.
    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        entries_named_by_reading_all(self, names).await
    }

    /// Entries with one of these statuses, ordered by memory id, at most `limit`.
    async fn entries_with_status(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        self.entries_with_status_after(connector, statuses, None, limit).await
    }

    /// [`StateStore::entries_with_status`] from the first memory id after
    /// `after` (`None`: from the first): a listing read a page at a time.
    async fn entries_with_status_after(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError>;

    /// Number of entries per status (statuses with none are absent).
    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError>;

    /// What `status` shows of a connector, read together: its state, the
    /// lease, the entry counts and the newest run. Stores that can read all
    /// four in one go (one transaction, one hop to the blocking pool)
    /// override this; the default asks four times.
    async fn status_snapshot(&self, connector: &ConnectorId) -> Result<StatusSnapshot, StateError> {
        Ok(StatusSnapshot {
            state: self.connector_state(connector).await?,
            lease: self.lease(connector).await?,
            counts: self.status_counts(connector).await?,
            last_run: self.runs(connector, 1).await?.into_iter().next(),
        })
    }

    /// The state and the lease of each of these connectors, in their order
    /// (what `list` and `GET /connectors` show). Stores that can read many
    /// items in one request (DynamoDB: 50 connectors a `BatchGetItem`)
    /// override this; the default asks twice per connector.
    async fn overviews(&self, connectors: &[ConnectorId]) -> Result<Vec<Overview>, StateError> {
        let mut out = Vec::with_capacity(connectors.len());
        for connector in connectors {
            out.push(Overview { state: self.connector_state(connector).await?, lease: self.lease(connector).await? });
        }
        Ok(out)
    }

    /// Writes a batch's entries, the connector state, the run record and the
    /// digest. Entries written without `lease_owner` move the connector's
    /// ledger generation on (a digest made before no longer describes it).
    /// Each store says in its docs what "atomically" means for it.
    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError>;

    /// The ledger generation, the number of entries, the digest while it
    /// still describes the ledger, and the unconfirmed ids (see [`digest`]).
    async fn ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError>;

    /// The records of these digest shards (a shard never written is empty).
    /// Each is checked against the root by its reader.
    async fn digest_shards(&self, connector: &ConnectorId, shards: &[u16]) -> Result<Vec<DigestShard>, StateError>;

    /// Run history, newest first, at most `limit`.
    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError>;

    /// Forgets the connector's ledger, digest and state, and an expired lease
    /// (history stays). Fails with [`StateError::Busy`] while an unexpired
    /// lease is held at `now`.
    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError>;

    /// Removes the connector's run records that started before `before`;
    /// returns how many. Per connector, so a store with many connectors is
    /// never scanned (retention walks the configured connectors).
    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError>;

    /// A cached value (enrichments: place names, transcripts, photo
    /// descriptions) that has not expired at `now`. Stores without a cache
    /// answer `None`, which only costs a repeated lookup.
    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        let _ = (key, now);
        Ok(None)
    }

    /// Stores `value` under `key` (replacing it) until `expires_at`; `None`
    /// keeps it until it is replaced. The cache is shared by all connectors.
    async fn cache_put(&self, key: &str, value: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        let _ = (key, value, expires_at);
        Ok(())
    }
}

/// A connector's state and lease, as [`StateStore::overviews`] reads them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overview {
    pub state: Option<ConnectorState>,
    /// The lease, expired or not.
    pub lease: Option<Lease>,
}

/// A connector's state as [`StateStore::status_snapshot`] reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusSnapshot {
    pub state: Option<ConnectorState>,
    /// The lease, expired or not.
    pub lease: Option<Lease>,
    /// Entries per status (statuses with none may be absent).
    pub counts: BTreeMap<EntryStatus, u64>,
    pub last_run: Option<RunRecord>,
}

/// One value of the key-value cache of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheValue {
    pub value: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl CacheValue {
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// [`StateStore::entries_named`] the slow way: every ledger read whole
/// (the default, and a store's fallback when its index is missing).
pub(crate) async fn entries_named_by_reading_all<S: StateStore + ?Sized>(
    store: &S,
    names: &[String],
) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
    let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    for connector in store.connectors().await? {
        for entry in store.entries_with_status(&connector, &EntryStatus::ALL, usize::MAX).await? {
            if wanted.contains(entry.file_source.as_str()) {
                found.push((connector.clone(), entry));
            }
        }
    }
    Ok(found)
}

/// Opens the store of a whole config: like [`open`], with the at-rest
/// encryption of `advanced.security` (JSON: the whole file; SQLite: refused,
/// see decision 0008).
pub async fn open_for(config: &crate::config::Config) -> Result<Arc<dyn StateStore>, StateError> {
    match cipher_for(config)? {
        Some(cipher) => Ok(Arc::new(json::JsonStore::open_encrypted(&config.state.path, cipher).await?)),
        None => open(&config.state).await,
    }
}

/// The cipher of the local state under `advanced.security.encrypt_secrets`
/// (`None` when it is off, or for DynamoDB, which AWS encrypts); an error
/// when it is on without a key or for SQLite (decision 0008).
pub fn cipher_for(config: &crate::config::Config) -> Result<Option<cipher::StateCipher>, StateError> {
    let security = &config.advanced.security;
    if !security.encrypt_secrets {
        return Ok(None);
    }
    let key = security.encryption_key.as_ref().filter(|k| !k.is_empty()).ok_or_else(|| {
        StateError::Unsupported(
            "advanced.security.encrypt_secrets is on but advanced.security.encryption_key (ENCRYPTION_KEY) is empty"
                .into(),
        )
    })?;
    match config.state.backend {
        StateBackend::Json => Ok(Some(cipher::StateCipher::from_key(key.expose()))),
        StateBackend::Sqlite => Err(StateError::Unsupported(
            "sqlite cannot be encrypted at rest by this build (advanced.security.encrypt_secrets): use state.backend: json, or an encrypted filesystem".into(),
        )),
        StateBackend::Dynamodb => Ok(None),
    }
}

/// Opens the store the config names.
pub async fn open(config: &StateConfig) -> Result<Arc<dyn StateStore>, StateError> {
    match config.backend {
        StateBackend::Json => Ok(Arc::new(json::JsonStore::open(&config.path).await?)),
        StateBackend::Sqlite => Ok(Arc::new(sqlite::SqliteStore::open(&config.path).await?)),
        #[cfg(feature = "aws")]
        StateBackend::Dynamodb => Ok(Arc::new(dynamodb::DynamoStore::from_config(config).await?)),
        #[cfg(not(feature = "aws"))]
        StateBackend::Dynamodb => {
            Err(StateError::Unsupported("dynamodb is only available in the AWS build (the Lambda functions)".into()))
        }
    }
}
