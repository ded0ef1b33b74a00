//! A memory as the look-ups show it (ledger entry + provenance record +
//! links to its media), and names resolved to memories through the ledger.

use super::{Lookup, LookupError};
use crate::ids::{ConnectorId, DocId, MemoryId};
use crate::lightrag::api::graph::{self, placeholder_total};
use crate::lightrag::{doc_id, stored_basename};
use crate::memory_api::{GeoPoint, MediaKind, Memory};
use crate::state::{EntryStatus, LedgerEntry, StateError, Watch};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The most names one look-up resolves.
pub const MAX_NAMES: usize = 1_000;

/// One memory: who has it, what LightRAG calls it, when and where it was
/// recorded, what it is about, and where its media are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryView {
    pub connector_id: ConnectorId,
    /// The Memory API context (`None` when neither the record nor the
    /// configuration says).
    pub context_id: Option<String>,
    pub memory_id: MemoryId,
    /// Its name in LightRAG (`file_path` there).
    pub file_source: String,
    pub doc_id: DocId,
    /// Where the ledger stands (`processed`, `submitted`, ...).
    pub status: EntryStatus,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub kind: Option<String>,
    pub location: Option<GeoPoint>,
    pub place: Option<String>,
    pub tags: Vec<String>,
    /// The first line of its transcript (or photo description), shortened.
    pub headline: Option<String>,
    /// `GET {memory_api.url}/memory/{ctx}/{id}/audio` when it has a recording.
    pub audio_url: Option<String>,
    pub image_url: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_ingested: Option<DateTime<Utc>>,
    /// `false` for a memory delivered by a version that kept no provenance
    /// record (its next sync run adds one): dates, place and tags unknown.
    pub recorded: bool,
    /// With `fetch`: the memory as the Memory API lists it now (`null` when
    /// it is not in the connector's window any more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Option<Memory>>,
}

/// A short reference to a memory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MemoryKey {
    pub connector_id: ConnectorId,
    pub memory_id: MemoryId,
}

impl MemoryView {
    pub fn key(&self) -> MemoryKey {
        MemoryKey { connector_id: self.connector_id.clone(), memory_id: self.memory_id.clone() }
    }
}

/// What `resolve` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// The names asked for, split and reduced to what LightRAG stores.
    pub names: Vec<String>,
    /// Their memories, in the order of the names.
    pub memories: Vec<MemoryView>,
    /// Names no ledger holds (documents of another source, or forgotten by a reset).
    pub unresolved: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The names in `input`: LightRAG joins several with `<SEP>`; each is
/// reduced to the basename LightRAG stores; its "more names" placeholder
/// and repeats are dropped.
pub fn split_names(input: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    graph::split(Some(input))
        .filter(|part| placeholder_total(part).is_none())
        .map(stored_basename)
        .filter(|name| !name.is_empty())
        .filter(|name| seen.insert(name.to_owned()))
        .map(str::to_owned)
        .collect()
}

impl Lookup {
    /// The memories named in `input` (see [`split_names`]); with `fetch`,
    /// each also as the Memory API lists it now. 404 when no name resolves.
    pub async fn resolve(&self, input: &str, fetch: bool) -> Result<Resolution, LookupError> {
        let names = split_names(input);
        if names.is_empty() {
            return Err(LookupError::BadRequest(
                "name is empty: give a LightRAG document name (file_path), several joined with <SEP>".into(),
            ));
        }
        let (by_name, unresolved) = self.views_named(&names).await?;
        if by_name.is_empty() {
            return Err(LookupError::NotFound(format!(
                "no memory in the ledger is named {}: LightRAG names a memory `memory_<context>_<id>.txt`; \
                 other names are documents this connector did not send (or a reset forgot)",
                quoted(&unresolved)
            )));
        }
        let mut memories: Vec<MemoryView> = names.iter().filter_map(|n| by_name.get(n)).flatten().cloned().collect();
        let mut notes = Vec::new();
        if fetch {
            self.fetch_live(&mut memories, &mut notes).await?;
        }
        Ok(Resolution { names, memories, unresolved, notes })
    }

    /// The memories of each name the ledger holds, and the names it does not.
    pub(super) async fn views_named(
        &self,
        names: &[String],
    ) -> Result<(HashMap<String, Vec<MemoryView>>, Vec<String>), LookupError> {
        if names.len() > MAX_NAMES {
            return Err(LookupError::BadRequest(format!("{} names in one look-up; at most {MAX_NAMES}", names.len())));
        }
        let mut by_name: HashMap<String, Vec<MemoryView>> = HashMap::new();
        let mut watches = HashMap::new();
        for (connector, entry) in self.store.entries_named(names).await? {
            let entry = self.as_confirmed(&mut watches, &connector, entry).await?;
            by_name.entry(entry.file_source.clone()).or_default().push(self.view(connector, entry));
        }
        let unresolved = names.iter().filter(|n| !by_name.contains_key(*n)).cloned().collect();
        Ok((by_name, unresolved))
    }

    /// The entry with its status as LightRAG last confirmed it (a processed
    /// document keeps its `submitted` entry, decision 29); `watches` keeps
    /// each connector's watch for the next entries.
    pub(super) async fn as_confirmed(
        &self,
        watches: &mut HashMap<ConnectorId, Watch>,
        connector: &ConnectorId,
        mut entry: LedgerEntry,
    ) -> Result<LedgerEntry, StateError> {
        if entry.status == EntryStatus::Submitted {
            if !watches.contains_key(connector) {
                watches.insert(connector.clone(), Watch::of(self.store.as_ref(), connector).await?);
            }
            if let Some(watch) = watches.get(connector) {
                entry.status = watch.status_of(&entry);
            }
        }
        Ok(entry)
    }

    pub(super) fn view(&self, connector_id: ConnectorId, entry: LedgerEntry) -> MemoryView {
        let record = entry.provenance.as_ref();
        let context_id = record
            .map(|r| r.context_id.clone())
            .or_else(|| self.config.connector(&connector_id).map(|c| c.context_id.clone()));
        let link = |present: bool, kind: MediaKind| {
            let (ctx, client) = (context_id.as_deref()?, self.memory_api.as_ref().ok()?);
            present.then(|| client.media_url(ctx, entry.memory_id.as_str(), kind))
        };
        MemoryView {
            context_id: context_id.clone(),
            doc_id: doc_id(&entry.file_source),
            status: entry.status,
            created_at: record.and_then(|r| r.created_at),
            updated_at: record.and_then(|r| r.updated_at),
            kind: record.and_then(|r| r.kind.clone()),
            location: record.and_then(|r| r.location),
            place: record.and_then(|r| r.place.clone()),
            tags: record.map(|r| r.tags.clone()).unwrap_or_default(),
            headline: record.and_then(|r| r.headline.clone()),
            audio_url: link(record.is_some_and(|r| r.audio), MediaKind::Audio),
            image_url: link(record.is_some_and(|r| r.image), MediaKind::Image),
            first_seen: entry.first_seen,
            last_ingested: entry.last_ingested,
            recorded: record.is_some(),
            live: None,
            connector_id,
            memory_id: entry.memory_id,
            file_source: entry.file_source,
        }
    }

    /// Adds the live memory to each view: one list call per connector (its
    /// context, range and limit), as a sync run reads it.
    async fn fetch_live(&self, memories: &mut [MemoryView], notes: &mut Vec<String>) -> Result<(), LookupError> {
        let client = self.memory_api.as_ref().map_err(|e| LookupError::MemoryApi(e.clone()))?;
        let wanted: BTreeSet<ConnectorId> = memories.iter().map(|v| v.connector_id.clone()).collect();
        let mut live: HashMap<(ConnectorId, MemoryId), Memory> = HashMap::new();
        let mut listed: HashSet<ConnectorId> = HashSet::new();
        for connector_id in wanted {
            let Some(connector) = self.config.connector(&connector_id) else {
                notes.push(format!("connector {connector_id} is not configured: its memories were not fetched"));
                continue;
            };
            let ingestion = &connector.ingestion;
            let page = client
                .list(&connector.context_id, ingestion.query_range, ingestion.query_limit)
                .await
                .map_err(|e| LookupError::MemoryApi(e.to_string()))?;
            for memory in page.memories {
                live.insert((connector_id.clone(), memory.id.clone()), memory);
            }
            listed.insert(connector_id);
        }
        for view in memories.iter_mut().filter(|v| listed.contains(&v.connector_id)) {
            let found = live.remove(&(view.connector_id.clone(), view.memory_id.clone()));
            if found.is_none()
                && let Some(connector) = self.config.connector(&view.connector_id)
            {
                notes.push(format!(
                    "memory {} ({}) is not in the Memory API's list of context {} (range {}, limit {})",
                    view.memory_id,
                    view.connector_id,
                    connector.context_id,
                    connector.ingestion.query_range.as_str(),
                    connector.ingestion.query_limit
                ));
            }
            view.live = Some(found);
        }
        Ok(())
    }
}

/// `a`, `b` and 3 more.
pub(super) fn quoted(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    match names.len() {
        0 => "(no name)".into(),
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_reduced_to_basenames_and_deduplicated() {
        assert_eq!(
            split_names(
                " memory_C_1.txt<SEP>dir/memory_C_2.txt <SEP><SEP>memory_C_1.txt<SEP>...truncated...(KEEP 75/80)"
            ),
            vec!["memory_C_1.txt", "memory_C_2.txt"]
        );
        assert!(split_names(" <SEP> ").is_empty());
        assert_eq!(quoted(&["a".into(), "b".into(), "c".into(), "d".into()]), "`a`, `b`, `c` and 1 more");
    }
}
