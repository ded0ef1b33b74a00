//! Test data: records with every optional field set, or none of them, and
//! timestamps in whole milliseconds.

use crate::ids::{ConnectorId, ContentHash, DocId, MemoryId, RunId, TrackId};
use crate::memory_api::GeoPoint;
use crate::state::{
    Checkpoint, ConnectorState, EntryStatus, LedgerEntry, Provenance, RunCounts, RunRecord, RunStatus, Totals,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};

/// 2026-03-04T05:06:07.089Z plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    let base = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).single().unwrap_or_default() + TimeDelta::milliseconds(89);
    base + TimeDelta::seconds(seconds)
}

pub fn cid(id: &str) -> ConnectorId {
    ConnectorId::new(id)
}

pub fn mid(id: &str) -> MemoryId {
    MemoryId::new(id)
}

pub fn rid(id: &str) -> RunId {
    RunId::new(id)
}

/// An entry with every optional field set.
pub fn full_entry(id: &str, status: EntryStatus) -> LedgerEntry {
    LedgerEntry {
        memory_id: mid(id),
        status,
        content_hash: Some(ContentHash::new(format!("{:0>64}", "c0ffee"))),
        pending_hash: Some(ContentHash::new(format!("{:0>64}", "beef"))),
        file_source: format!("memory_{id}.txt"),
        doc_id: Some(DocId::new("doc-0123456789abcdef0123456789abcdef")),
        track_id: Some(TrackId::new("insert_20260304_050607_abcd")),
        attempts: 3,
        last_error: Some("LightRAG answered 503: \"busy\" \u{e9}".into()),
        next_attempt_at: Some(at(600)),
        first_seen: at(-86_400),
        last_ingested: Some(at(-3_600)),
        provenance: Some(full_provenance()),
    }
}

/// A provenance record with every field set, odd values included.
pub fn full_provenance() -> Provenance {
    Provenance {
        context_id: "CTX \u{e9}/1".into(),
        kind: Some("record".into()),
        created_at: Some(at(-90_000)),
        updated_at: Some(at(-89_000)),
        location: Some(GeoPoint { lat: -33.868_82, lon: 151.209_296 }),
        place: Some("Café \"Zum Löwen\", Sydney 🎉".into()),
        tags: vec!["sourdough".into(), "Bäckerei".into()],
        audio: true,
        image: true,
        headline: Some("Met Anna at the bakery…".into()),
    }
}

/// An entry with every optional field `None`.
pub fn bare_entry(id: &str, status: EntryStatus) -> LedgerEntry {
    LedgerEntry {
        memory_id: mid(id),
        status,
        content_hash: None,
        pending_hash: None,
        file_source: format!("memory_{id}.txt"),
        doc_id: None,
        track_id: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        first_seen: at(0),
        last_ingested: None,
        provenance: None,
    }
}

pub fn full_state(connector: &str) -> ConnectorState {
    ConnectorState {
        connector_id: cid(connector),
        status: RunStatus::Partial,
        last_run_id: Some(rid("20260304T050607089Z-0badf00d")),
        last_run_started: Some(at(-60)),
        last_run_finished: Some(at(-1)),
        last_success: Some(at(-7_200)),
        consecutive_failures: 2,
        paused: true,
        totals: Totals { runs: 41, ingested: 1_234, updated: 56, failed: 7 },
    }
}

pub fn run(connector: &str, run_id: &str, started_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        run_id: rid(run_id),
        connector_id: cid(connector),
        trigger: crate::state::Trigger::Schedule,
        started_at,
        finished_at: Some(started_at + TimeDelta::milliseconds(12_345)),
        status: RunStatus::Completed,
        counts: RunCounts {
            fetched: 10,
            new: 1,
            updated: 2,
            unchanged: 3,
            skipped: 4,
            failed: 5,
            dead: 6,
            rejected: 7,
            deferred: 8,
            backing_off: 9,
            confirmed: 11,
            lightrag_failed: 12,
            stuck: 13,
            postponed: 14,
            still_dead: 15,
            recovered: 16,
            held_back: 17,
            duplicates_removed: 18,
            awaiting: Some(19),
        },
        possibly_truncated: true,
        error: Some("2 memories failed".into()),
    }
}

/// A run still going: every optional field `None`.
pub fn running(connector: &str, run_id: &str, started_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        finished_at: None,
        status: RunStatus::Running,
        counts: RunCounts::default(),
        possibly_truncated: false,
        error: None,
        trigger: crate::state::Trigger::Cli,
        ..run(connector, run_id, started_at)
    }
}

pub fn entries_only(entries: Vec<LedgerEntry>) -> Checkpoint {
    Checkpoint { entries, ..Checkpoint::default() }
}
