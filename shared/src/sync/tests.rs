//! The digest path against the full-read path (decision 26): the same
//! sequence of pages and LightRAG answers run through two engines, one
//! reading only what the ledger digest cannot vouch for (JSON state), one
//! reading every fetched memory's entry (SQLite state). Run by run they must
//! send the same documents, count the same, and leave the same ledger.

use super::testing::{self, Behaviour, CTX, Page, Sink, doc_id, memory};
use super::{RunOptions, SyncEngine};
use crate::ids::ConnectorId;
use crate::lightrag::RemoteStatus;
use crate::memory_api::model::Memory;
use crate::state::json::JsonStore;
use crate::state::sqlite::SqliteStore;
use crate::state::{EntryStatus, StateStore};
use crate::transform::file_source;
use proptest::prelude::*;
use std::sync::Arc;

/// One change to the world between runs; indexes wrap around the page.
#[derive(Debug, Clone)]
enum Step {
    /// A new text for a memory.
    Edit(usize),
    /// A memory without text gets one (a late transcript).
    Fill(usize),
    /// A memory loses its text.
    Clear(usize),
    /// New memories, some without text.
    Add(usize, bool),
    /// LightRAG refuses this memory's document (it fails, then dies), or stops refusing.
    Reject(usize),
    /// LightRAG defers this memory's replace, or stops deferring.
    Defer(usize),
    /// LightRAG reports this memory's document processed (0, as it does unless told), failed (1) or queued (2).
    Report(usize, u8),
    /// A memory leaves the fetched window (a rolling window, a full page).
    Leave(usize),
    /// A memory that left comes back.
    Back(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<usize>().prop_map(Step::Edit),
        2 => any::<usize>().prop_map(Step::Fill),
        1 => any::<usize>().prop_map(Step::Clear),
        2 => (1..4usize, any::<bool>()).prop_map(|(n, text)| Step::Add(n, text)),
        2 => any::<usize>().prop_map(Step::Reject),
        1 => any::<usize>().prop_map(Step::Defer),
        3 => (any::<usize>(), 0..3u8).prop_map(|(i, s)| Step::Report(i, s)),
        2 => any::<usize>().prop_map(Step::Leave),
        2 => any::<usize>().prop_map(Step::Back),
    ]
}

/// Steps before a run, and how the run is started (0: normal, 1: `--force`, 2: `--dry-run`).
fn runs() -> impl Strategy<Value = Vec<(Vec<Step>, u8)>> {
    prop::collection::vec(
        (prop::collection::vec(step(), 0..6), prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)]),
        2..7,
    )
}

struct World {
    page: Vec<Memory>,
    away: Vec<Memory>,
    behaviour: Behaviour,
    next: usize,
}

impl World {
    fn apply(&mut self, step: &Step, round: usize) {
        let n = self.page.len();
        let source = |i: usize| file_source(CTX, self.page[i % n].id.as_str());
        match *step {
            Step::Edit(i) if n > 0 => self.page[i % n].transcript = Some(format!("edited in round {round} #{i}")),
            Step::Fill(i) if n > 0 => {
                let m = &mut self.page[i % n];
                m.transcript.get_or_insert_with(|| format!("late text {round}"));
            }
            Step::Clear(i) if n > 0 => self.page[i % n].transcript = None,
            Step::Add(count, text) => {
                for _ in 0..count {
                    let id = format!("m{:03}", self.next);
                    self.next += 1;
                    let text = text.then(|| format!("text of {id}"));
                    self.page.push(memory(&id, text.as_deref()));
                }
            }
            Step::Reject(i) if n > 0 => {
                let s = source(i);
                if !self.behaviour.reject.remove(&s) {
                    self.behaviour.reject.insert(s);
                }
            }
            Step::Defer(i) if n > 0 => {
                let s = source(i);
                if !self.behaviour.defer.remove(&s) {
                    self.behaviour.defer.insert(s);
                }
            }
            Step::Report(i, s) if n > 0 => {
                let id = doc_id(CTX, self.page[i % n].id.as_str());
                match s {
                    0 => self.behaviour.remote.remove(&id),
                    1 => self.behaviour.remote.insert(id, RemoteStatus::Failed { error: "llm".into() }),
                    _ => self.behaviour.remote.insert(id, RemoteStatus::Queued { status: "processing".into() }),
                };
            }
            Step::Leave(i) if n > 0 => self.away.push(self.page.remove(i % n)),
            Step::Back(i) if !self.away.is_empty() => {
                let m = self.away.remove(i % self.away.len());
                self.page.push(m);
            }
            _ => {}
        }
    }
}

struct Side {
    engine: SyncEngine,
    page: Page,
    sink: Arc<Sink>,
    store: Arc<dyn StateStore>,
}

fn side(store: Arc<dyn StateStore>, digest: bool, confirming: bool) -> Side {
    let page = Page::default();
    let sink = Arc::new(Sink { confirming, ..Default::default() });
    let engine = testing::engine(Arc::clone(&store), &page, &sink, confirming);
    let engine = if digest { engine } else { engine.reading_every_entry() };
    Side { engine, page, sink, store }
}

/// The ledger without its clock fields.
async fn ledger(store: &dyn StateStore) -> Vec<String> {
    let c = ConnectorId::new("c");
    let mut entries = store.entries_with_status(&c, &EntryStatus::ALL, usize::MAX).await.expect("ledger");
    entries.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {:?} {:?} {} {:?} {:?}",
                e.memory_id, e.status, e.content_hash, e.pending_hash, e.attempts, e.last_error, e.track_id
            )
        })
        .collect()
}

async fn check(runs: Vec<(Vec<Step>, u8)>, initial: Vec<Option<bool>>, confirming: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.expect("json"));
    let sqlite: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite"));
    let digest = side(json, true, confirming);
    let full = side(sqlite, false, confirming);
    let mut world = World { page: Vec::new(), away: Vec::new(), behaviour: Behaviour::default(), next: 0 };
    for (i, text) in initial.into_iter().enumerate() {
        let id = format!("m{i:03}");
        world.page.push(memory(&id, text.map(|t| if t { "first text" } else { "other text" })));
        world.next = i + 1;
    }
    for (round, (steps, how)) in runs.into_iter().enumerate() {
        for step in &steps {
            world.apply(step, round);
        }
        let options = RunOptions { force: how == 1, dry_run: how == 2, ..RunOptions::default() };
        let mut reports = Vec::new();
        for side in [&digest, &full] {
            side.page.set(world.page.clone());
            *side.sink.behaviour.lock().expect("behaviour") = world.behaviour.clone();
            let report = side.engine.run(options.clone()).await.expect("run");
            reports.push((report, side.sink.take_sent(), ledger(side.store.as_ref()).await));
        }
        let (d, f) = (&reports[0], &reports[1]);
        let context = format!("round {round} ({steps:?}, how {how})");
        assert_eq!(d.1, f.1, "{context}: the documents sent differ");
        assert_eq!(d.0.counts, f.0.counts, "{context}: the counts differ");
        assert_eq!(d.0.plan, f.0.plan, "{context}: the plans differ");
        assert_eq!(d.2, f.2, "{context}: the ledgers differ");
        assert_eq!(d.0.status, f.0.status, "{context}: the outcome differs");
    }
    // A run that wrote leaves a digest (the property above shows it is right).
    let view = digest.store.ledger_view(&ConnectorId::new("c")).await.expect("view");
    assert!(view.digest.is_some() || view.entries == 0, "a digest is left: {view:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random edits, late and lost transcripts, new memories, documents
    /// LightRAG refuses (failed, then dead), deferred updates, processing
    /// reported processed or failed, forced and dry runs: the digest path
    /// acts exactly as reading every entry does.
    #[test]
    fn the_digest_path_acts_as_reading_every_entry(
        initial in prop::collection::vec(prop::option::of(any::<bool>()), 0..12),
        runs in runs(),
        confirming in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(check(runs, initial, confirming));
    }
}

/// A rerun with nothing changed reads no ledger entry; one edit reads that
/// memory's entry and nothing else; a new memory in a complete digest is
/// known new without a read.
#[tokio::test]
async fn a_rerun_reads_only_what_changed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite"));
    let counting = Arc::new(crate::state::cost::model::CostModel::new(sqlite));
    let mut side = side(counting.clone(), true, false);
    side.engine = side.engine.with_salt(11);
    let mut page: Vec<Memory> = (0..400).map(|i| memory(&format!("m{i:03}"), Some("text"))).collect();
    side.page.set(page.clone());
    let first = side.engine.run(RunOptions::default()).await.expect("first");
    assert_eq!(first.counts.new, 400);
    let first_units = counting.take();
    assert!(first_units.read_units < 20, "a first sync reads no entry: {first_units:?}");

    let noop = side.engine.run(RunOptions::default()).await.expect("no-op");
    assert_eq!(noop.counts.unchanged, 400);
    let noop_units = counting.take();
    assert!(noop_units.read_units <= 8, "{noop_units:?}");

    page[7].transcript = Some("edited".into());
    page.push(memory("new", Some("new text")));
    side.page.set(page);
    let edited = side.engine.run(RunOptions::default()).await.expect("edited");
    assert_eq!((edited.counts.updated, edited.counts.new), (1, 1));
    let edited_units = counting.take();
    // View (2) + state reads + at most two shards + the edited entry.
    assert!(edited_units.read_units <= noop_units.read_units + 3, "{edited_units:?} vs {noop_units:?}");
}

/// A memory that left the window and came back is read, not taken for new
/// (the digest describes the last page, not the whole ledger).
#[tokio::test]
async fn a_memory_back_in_the_window_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite"));
    let side = side(store, true, false);
    let page: Vec<Memory> = (0..5).map(|i| memory(&format!("m{i}"), Some("text"))).collect();
    side.page.set(page.clone());
    assert_eq!(side.engine.run(RunOptions::default()).await.expect("first").counts.new, 5);
    side.page.set(page[1..].to_vec());
    assert_eq!(side.engine.run(RunOptions::default()).await.expect("without m0").counts.unchanged, 4);
    side.page.set(page.clone());
    let back = side.engine.run(RunOptions::default()).await.expect("m0 back");
    assert_eq!((back.counts.new, back.counts.unchanged), (0, 5), "{:?}", back.counts);
    assert!(side.sink.take_sent().len() == 5, "only the first sync sent");
}

/// An entry under a name an older rule made is read even when the digest
/// is valid, so a memory whose new name is that name is still refused
/// (decision 0001): vouched unread, the run would take the entry's name for
/// the rule's and send a document over the other memory's.
#[tokio::test]
async fn an_entry_under_an_older_name_is_read_through_a_valid_digest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite"));
    let side = side(Arc::clone(&store), true, false);
    let c = ConnectorId::new("c");
    side.page.set(vec![memory("m0", Some("zero")), memory("m1", Some("one"))]);
    assert_eq!(side.engine.run(RunOptions::default()).await.expect("first").counts.new, 2);
    // m0 was delivered under the name the rule now makes for m3.
    let mut m0 = store.entries(&c, &[crate::ids::MemoryId::new("m0")]).await.expect("read").into_values().next();
    let m0 = m0.take().map(|e| crate::state::LedgerEntry { file_source: file_source(CTX, "m3"), ..e }).expect("m0");
    store.checkpoint(&c, crate::state::Checkpoint { entries: vec![m0], ..Default::default() }).await.expect("rename");
    side.sink.take_sent();
    side.page.set(vec![memory("m0", Some("zero")), memory("m1", Some("one")), memory("m3", Some("three"))]);
    for run in ["reads every entry", "through the digest it left"] {
        let view = store.ledger_view(&c).await.expect("view");
        let report = side.engine.run(RunOptions::default()).await.expect(run);
        assert_eq!((report.counts.rejected, report.counts.unchanged), (1, 2), "{run}: {:?}", report.counts);
        assert!(side.sink.take_sent().is_empty(), "{run}: nothing sent");
        if run.starts_with("through") {
            assert!(view.digest.is_some(), "the second run starts from a valid digest: {view:?}");
        }
    }
}

/// A document a run submitted and did not record on the watch list (it was
/// killed), followed by a run that failed before it read anything (LightRAG
/// down): the next run still asks LightRAG about it, off the page as it is,
/// and finds it failed there (decision 29, `Watch::since`).
#[tokio::test]
async fn what_an_unclean_run_submitted_is_confirmed_after_a_failed_run() {
    use crate::ids::{ContentHash, RunId};
    use crate::state::{Checkpoint, ConnectorState, LedgerEntry, RunRecord, RunStatus, Trigger};
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite"));
    let page = Page::default();
    let sink = Arc::new(Sink { confirming: true, ..Sink::default() });
    let engine = testing::engine(Arc::clone(&store), &page, &sink, true);
    let c = ConnectorId::new("c");
    page.set(vec![memory("a", Some("text a"))]);
    let clean = engine.run(RunOptions::default()).await.expect("clean run");
    assert_eq!(clean.counts.new, 1);

    // A run submits "b" and is killed before its last write.
    let now = chrono::Utc::now();
    let name = file_source(CTX, "b");
    let b = LedgerEntry {
        content_hash: Some(ContentHash::new("5e".repeat(32))),
        doc_id: Some(doc_id(CTX, "b")),
        last_ingested: Some(now),
        provenance: Some(crate::state::conformance::data::full_provenance()),
        ..LedgerEntry::new(crate::ids::MemoryId::new("b"), name, EntryStatus::Submitted, now)
    };
    let mut state = store.connector_state(&c).await.expect("state").expect("a state");
    state.status = RunStatus::Running;
    state.last_run_started = Some(now);
    store
        .checkpoint(&c, Checkpoint { entries: vec![b], connector: Some(state.clone()), ..Checkpoint::default() })
        .await
        .expect("killed run");
    // The next run fails before it reads anything.
    let failed = RunRecord {
        run_id: RunId::new("failed"),
        connector_id: c.clone(),
        trigger: Trigger::Schedule,
        started_at: now,
        finished_at: Some(now),
        status: RunStatus::Failed,
        counts: Default::default(),
        possibly_truncated: false,
        error: Some("LightRAG is down".into()),
    };
    let state = ConnectorState { status: RunStatus::Failed, last_run_finished: Some(now), ..state };
    store
        .checkpoint(&c, Checkpoint { connector: Some(state), run: Some(failed), ..Checkpoint::default() })
        .await
        .expect("failed run");

    // LightRAG failed "b"; the page no longer holds it.
    sink.behaviour
        .lock()
        .expect("behaviour")
        .remote
        .insert(doc_id(CTX, "b"), RemoteStatus::Failed { error: "llm".into() });
    let next = engine.run(RunOptions::default()).await.expect("next run");
    assert_eq!(next.counts.lightrag_failed, 1, "{next:?}");
    let entries = store.entries(&c, &[crate::ids::MemoryId::new("b")]).await.expect("entries");
    assert_eq!(entries.values().map(|e| e.status).collect::<Vec<_>>(), [EntryStatus::LightragFailed]);
}
