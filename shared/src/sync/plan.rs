//! Planning: what a run does with each fetched memory, decided from the
//! memory's document and its ledger entry alone (a pure function).

use crate::config::ConnectorConfig;
use crate::enrich::Enrichment;
use crate::memory_api::model::Memory;
use crate::state::{EntryStatus, LedgerEntry};
use crate::transform::{self, Document, Rendered};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The document of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Rendered while planning (its hash decided the action).
    Rendered(Document),
    /// A memory the ledger has never seen: nothing to compare, so it is
    /// rendered only when it is sent, and a run does not hold every new
    /// document of the page at once.
    OnSend,
}

/// What to do with one memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Never delivered: insert.
    Insert(Payload),
    /// Delivered with other text (or `--force`): replace the stored document.
    Replace(Document),
    /// In the sink with this very text.
    Unchanged,
    /// No transcript yet; `record` is true when the ledger must be told.
    WaitForTranscript { record: bool },
    /// Failed earlier; its backoff has not run out.
    BackingOff,
    /// Attempts exhausted for this text; `retry-failed` replays it.
    Dead,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Insert(_) => ActionKind::Add,
            Action::Replace(_) => ActionKind::Update,
            Action::Unchanged => ActionKind::Unchanged,
            Action::WaitForTranscript { .. } => ActionKind::WaitingTranscript,
            Action::BackingOff => ActionKind::BackingOff,
            Action::Dead => ActionKind::Dead,
        }
    }
}

/// The action without its payload, for reports and `--dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Add,
    Update,
    Unchanged,
    WaitingTranscript,
    BackingOff,
    Dead,
}

/// Decides the action for `memory` given its ledger entry.
pub fn plan(
    connector: &ConnectorConfig,
    memory: &Memory,
    entry: Option<&LedgerEntry>,
    force: bool,
    now: DateTime<Utc>,
) -> Action {
    plan_enriched(connector, memory, entry, force, now, None)
}

/// [`plan`] for a memory with its enrichment (transcript, photo, place).
pub fn plan_enriched(
    connector: &ConnectorConfig,
    memory: &Memory,
    entry: Option<&LedgerEntry>,
    force: bool,
    now: DateTime<Utc>,
    enrichment: Option<&Enrichment>,
) -> Action {
    let skip_empty = connector.ingestion.skip_empty_transcripts;
    let Some(entry) = entry else {
        return if transform::waits_for_transcript(memory, skip_empty, enrichment) {
            Action::WaitForTranscript { record: true }
        } else {
            Action::Insert(Payload::OnSend)
        };
    };
    let rendered = transform::render(&connector.context_id, memory, &connector.transformation, skip_empty, enrichment);
    plan_rendered(Some(entry), rendered, force, now)
}

/// [`plan_enriched`] for a memory already rendered (`rendered` is what
/// `transform::render` made of it with its enrichment).
pub fn plan_rendered(entry: Option<&LedgerEntry>, rendered: Rendered, force: bool, now: DateTime<Utc>) -> Action {
    let Some(entry) = entry else {
        return match rendered {
            Rendered::WaitingForTranscript => Action::WaitForTranscript { record: true },
            Rendered::Document(_) => Action::Insert(Payload::OnSend),
        };
    };
    let mut document = match rendered {
        Rendered::Document(document) => document,
        Rendered::WaitingForTranscript => {
            // A memory already delivered that lost its transcript keeps its document.
            return if entry.content_hash.is_some() {
                Action::Unchanged
            } else {
                Action::WaitForTranscript { record: entry.status != EntryStatus::WaitingTranscript }
            };
        }
    };
    // The ledger's name is the memory's identity in the sink: a name made by
    // an older rule stays, or an update would leave the old document behind.
    if !entry.file_source.is_empty() {
        document.file_source.clone_from(&entry.file_source);
    }
    let delivered_same = entry.content_hash.as_ref() == Some(&document.hash);
    let retry_target_same = entry.pending_hash.as_ref() == Some(&document.hash);
    let deliver = |document: Document| {
        if entry.content_hash.is_some() {
            Action::Replace(document)
        } else {
            Action::Insert(Payload::Rendered(document))
        }
    };
    match entry.status {
        EntryStatus::Dead if retry_target_same && !force => Action::Dead,
        EntryStatus::Failed if retry_target_same && !force && entry.next_attempt_at.is_some_and(|at| at > now) => {
            Action::BackingOff
        }
        EntryStatus::Submitted | EntryStatus::Processed if delivered_same && !force => Action::Unchanged,
        // Failed inside LightRAG: sent again (replace) once its backoff ran out.
        EntryStatus::LightragFailed if !force && entry.next_attempt_at.is_some_and(|at| at > now) => Action::BackingOff,
        _ => deliver(document),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConnectorConfig;
    use crate::ids::{ContentHash, MemoryId};
    use chrono::{Duration, TimeZone};

    fn connector() -> ConnectorConfig {
        ConnectorConfig { context_id: "C".into(), ..Default::default() }
    }

    fn memory(transcript: Option<&str>) -> Memory {
        crate::sync::testing::memory("m1", transcript)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 12, 18, 16, 0, 0).unwrap()
    }

    fn entry(status: EntryStatus, content: Option<ContentHash>, pending: Option<ContentHash>) -> LedgerEntry {
        LedgerEntry {
            memory_id: MemoryId::new("m1"),
            status,
            content_hash: content,
            pending_hash: pending,
            file_source: transform::file_source("C", "m1"),
            doc_id: None,
            track_id: None,
            attempts: 1,
            last_error: None,
            next_attempt_at: Some(now() + Duration::seconds(30)),
            first_seen: now(),
            last_ingested: None,
            provenance: None,
        }
    }

    fn hash_of(m: &Memory) -> ContentHash {
        match transform::render("C", m, &connector().transformation, true, None) {
            Rendered::Document(d) => d.hash,
            Rendered::WaitingForTranscript => unreachable!(),
        }
    }

    #[test]
    fn new_unchanged_changed() {
        let m = memory(Some("hello"));
        // Nothing to compare a new memory with: rendered only when sent.
        assert_eq!(plan(&connector(), &m, None, false, now()), Action::Insert(Payload::OnSend));
        // A retry is compared with the text that failed: rendered now.
        let failed = entry(EntryStatus::Failed, None, Some(hash_of(&m)));
        let later = now() + Duration::minutes(5);
        assert!(
            matches!(plan(&connector(), &m, Some(&failed), false, later), Action::Insert(Payload::Rendered(d)) if d.hash == hash_of(&m))
        );
        let delivered = entry(EntryStatus::Submitted, Some(hash_of(&m)), None);
        assert_eq!(plan(&connector(), &m, Some(&delivered), false, now()), Action::Unchanged);
        assert!(matches!(plan(&connector(), &m, Some(&delivered), true, now()), Action::Replace(_)));
        let edited = memory(Some("hello again"));
        assert!(matches!(plan(&connector(), &edited, Some(&delivered), false, now()), Action::Replace(_)));
    }

    #[test]
    fn waiting_for_transcript() {
        let m = memory(None);
        assert_eq!(plan(&connector(), &m, None, false, now()), Action::WaitForTranscript { record: true });
        let waiting = entry(EntryStatus::WaitingTranscript, None, None);
        assert_eq!(plan(&connector(), &m, Some(&waiting), false, now()), Action::WaitForTranscript { record: false });
        let filled = memory(Some("now with text"));
        assert!(matches!(plan(&connector(), &filled, Some(&waiting), false, now()), Action::Insert(_)));
    }

    #[test]
    fn failed_backs_off_then_retries_and_dead_stays_dead_until_changed() {
        let m = memory(Some("x"));
        let failed = entry(EntryStatus::Failed, None, Some(hash_of(&m)));
        assert_eq!(plan(&connector(), &m, Some(&failed), false, now()), Action::BackingOff);
        let later = now() + Duration::seconds(60);
        assert!(matches!(plan(&connector(), &m, Some(&failed), false, later), Action::Insert(_)));
        let dead = entry(EntryStatus::Dead, None, Some(hash_of(&m)));
        assert_eq!(plan(&connector(), &m, Some(&dead), false, later), Action::Dead);
        let changed = memory(Some("y"));
        assert!(matches!(plan(&connector(), &changed, Some(&dead), false, later), Action::Insert(_)));
    }

    #[test]
    fn a_memory_in_the_ledger_keeps_its_stored_name() {
        let old = memory(Some("old"));
        let mut delivered = entry(EntryStatus::Submitted, Some(hash_of(&old)), None);
        delivered.file_source = "memory_C_m1~0123456789abcdef.txt".into();
        let edited = memory(Some("new"));
        match plan(&connector(), &edited, Some(&delivered), false, now()) {
            Action::Replace(document) => assert_eq!(document.file_source, delivered.file_source),
            other => panic!("expected a replace, got {other:?}"),
        }
        let failed = LedgerEntry { status: EntryStatus::Failed, next_attempt_at: None, ..delivered.clone() };
        match plan(&connector(), &edited, Some(&failed), false, now()) {
            Action::Replace(document) => assert_eq!(document.file_source, delivered.file_source),
            other => panic!("expected a replace, got {other:?}"),
        }
    }

    #[test]
    fn update_pending_retries_the_replace() {
        let old = memory(Some("old"));
        let new = memory(Some("new"));
        let pending = entry(EntryStatus::UpdatePending, Some(hash_of(&old)), Some(hash_of(&new)));
        assert!(matches!(plan(&connector(), &new, Some(&pending), false, now()), Action::Replace(_)));
    }
}
