//! By entity and by memory: LightRAG's graph read with `GET /graphs`, the
//! documents of each entity and relation resolved through the ledger.

use super::view::{MemoryKey, MemoryView, quoted};
use super::{Lookup, LookupError};
use crate::ids::{ConnectorId, MemoryId};
use crate::lightrag::api::graph::{GraphEdge, GraphNode, Sources};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// The most nodes a look-up asks `GET /graphs` for; the server caps it at
/// its own `MAX_GRAPH_NODES` (1,000 by default).
pub const MAX_GRAPH_REQUEST: u64 = 10_000;
/// Entity names longer than this are refused (LightRAG's are short).
const MAX_ENTITY_CHARS: usize = 1_000;

/// An entity (or the relation between two) and the memories it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityLookup {
    pub entity: String,
    /// With a relation look-up: the other entity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<String>,
    pub entity_type: Option<String>,
    pub description: Option<String>,
    /// The memories it came from, oldest first.
    pub memories: Vec<MemoryView>,
    pub memory_count: usize,
    /// Documents LightRAG attributes it to, resolved or not (with
    /// `names_truncated`, the count LightRAG reported).
    pub mentions: u64,
    /// When the earliest and latest of its memories were recorded.
    pub first_mentioned: Option<DateTime<Utc>>,
    pub last_mentioned: Option<DateTime<Utc>>,
    /// LightRAG keeps only the first names of a busy entity
    /// (`MAX_FILE_PATHS`, 75 by default): memories beyond are not listed.
    pub names_truncated: bool,
    /// Names no ledger holds.
    pub unresolved: Vec<String>,
    /// Its relations (with a relation look-up: that one).
    pub relations: Vec<RelationView>,
}

/// A relation and the memories it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelationView {
    pub source: String,
    pub target: String,
    pub keywords: Option<String>,
    pub description: Option<String>,
    pub memories: Vec<MemoryKey>,
    pub memory_count: usize,
    pub mentions: u64,
    pub first_mentioned: Option<DateTime<Utc>>,
    pub last_mentioned: Option<DateTime<Utc>>,
    pub names_truncated: bool,
}

/// An entity LightRAG extracted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityRef {
    pub name: String,
    pub entity_type: Option<String>,
    pub description: Option<String>,
}

/// A relation LightRAG extracted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelationRef {
    pub source: String,
    pub target: String,
    pub keywords: Option<String>,
    pub description: Option<String>,
}

/// What LightRAG extracted from one memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryLookup {
    /// The memory (one).
    pub memories: Vec<MemoryView>,
    pub entities: Vec<EntityRef>,
    pub relations: Vec<RelationRef>,
    /// `false` when LightRAG returned only part of its graph (`MAX_GRAPH_NODES`):
    /// entities of this memory may be missing.
    pub complete: bool,
    /// Entities LightRAG returned and were searched.
    pub graph_nodes: usize,
    /// The server's cap (`MAX_GRAPH_NODES`), when it reports it.
    pub max_graph_nodes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The memories of `sources` among the resolved names, counted.
struct Tally {
    memories: Vec<MemoryView>,
    mentions: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    truncated: bool,
}

fn tally(sources: &Sources, by_name: &HashMap<String, Vec<MemoryView>>) -> Tally {
    let mut memories: Vec<MemoryView> =
        sources.file_paths.iter().filter_map(|n| by_name.get(n)).flatten().cloned().collect();
    // Oldest first; memories without a known time last.
    memories.sort_by(|a, b| {
        (a.created_at.is_none(), a.created_at, &a.connector_id, &a.memory_id).cmp(&(
            b.created_at.is_none(),
            b.created_at,
            &b.connector_id,
            &b.memory_id,
        ))
    });
    let times = memories.iter().filter_map(|m| m.created_at);
    Tally {
        first: times.clone().min(),
        last: times.max(),
        mentions: sources.file_paths_total.unwrap_or(sources.file_paths.len() as u64),
        truncated: sources.file_paths_total.is_some(),
        memories,
    }
}

fn relation_view(edge: &GraphEdge, by_name: &HashMap<String, Vec<MemoryView>>) -> RelationView {
    let t = tally(&edge.sources, by_name);
    RelationView {
        source: edge.source.clone(),
        target: edge.target.clone(),
        keywords: edge.keywords.clone(),
        description: edge.description.clone(),
        memory_count: t.memories.len(),
        memories: t.memories.iter().map(MemoryView::key).collect(),
        mentions: t.mentions,
        first_mentioned: t.first,
        last_mentioned: t.last,
        names_truncated: t.truncated,
    }
}

impl Lookup {
    /// The memories the entity `name` came from (with `related`: the
    /// memories of the relation between the two), with its relations.
    pub async fn by_entity(&self, name: &str, related: Option<&str>) -> Result<EntityLookup, LookupError> {
        let name = entity_name(name, "name")?;
        let related = related.map(|r| entity_name(r, "target")).transpose()?;
        let lightrag = self.lightrag()?;
        let graph = lightrag.graph(name, 1, MAX_GRAPH_REQUEST).await?;
        let Some(node) = graph.nodes.iter().find(|n| n.name == name) else {
            return Err(self.unknown_entity(name).await);
        };
        let edges: Vec<&GraphEdge> = graph.edges.iter().filter(|e| e.joins(name, related)).collect();
        if let Some(other) = related
            && edges.is_empty()
        {
            let why = if graph.is_truncated { " among the neighbours LightRAG returned (it cut the list)" } else { "" };
            return Err(LookupError::NotFound(format!("LightRAG has no relation between `{name}` and `{other}`{why}")));
        }
        let names: Vec<String> = node
            .sources
            .file_paths
            .iter()
            .chain(edges.iter().flat_map(|e| e.sources.file_paths.iter()))
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let (by_name, unresolved) = self.views_named(&names).await?;
        let own = match (related, edges.first()) {
            (Some(_), Some(edge)) => &edge.sources,
            _ => &node.sources,
        };
        let t = tally(own, &by_name);
        let unresolved = unresolved.into_iter().filter(|n| own.file_paths.contains(n)).collect();
        Ok(EntityLookup {
            entity: node.name.clone(),
            related: related.map(str::to_owned),
            entity_type: node.entity_type.clone(),
            description: node.description.clone(),
            memory_count: t.memories.len(),
            memories: t.memories,
            mentions: t.mentions,
            first_mentioned: t.first,
            last_mentioned: t.last,
            names_truncated: t.truncated,
            unresolved,
            relations: edges.iter().map(|e| relation_view(e, &by_name)).collect(),
        })
    }

    /// 404 for an entity LightRAG does not have, with the names it has
    /// that come close (LightRAG matches names exactly, case included).
    async fn unknown_entity(&self, name: &str) -> LookupError {
        let close = match self.lightrag() {
            Ok(lightrag) => lightrag.search_labels(name, 5).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let hint = if close.is_empty() { String::new() } else { format!("; close names: {}", quoted(&close)) };
        LookupError::NotFound(format!("LightRAG has no entity named `{name}` (names match exactly){hint}"))
    }

    /// The entities and relations LightRAG extracted from one memory: its
    /// graph (as much as the server returns) searched for the memory's name
    /// in `file_path` and its document id in the chunk ids (`source_id`).
    pub async fn by_memory(&self, connector: &ConnectorId, memory: &MemoryId) -> Result<MemoryLookup, LookupError> {
        let entry = self.store.entries(connector, std::slice::from_ref(memory)).await?.remove(memory);
        let Some(entry) = entry else {
            return Err(LookupError::NotFound(format!(
                "connector `{connector}` has no memory `{memory}` in its ledger"
            )));
        };
        let delivered = entry.content_hash.is_some();
        let entry = self.as_confirmed(&mut HashMap::new(), connector, entry).await?;
        let view = self.view(connector.clone(), entry);
        if !delivered {
            return Ok(MemoryLookup {
                notes: vec![format!("no document of this memory was delivered to LightRAG (status {})", view.status)],
                memories: vec![view],
                entities: Vec::new(),
                relations: Vec::new(),
                complete: true,
                graph_nodes: 0,
                max_graph_nodes: None,
            });
        }
        let lightrag = self.lightrag()?;
        let cap = lightrag.server_info().await?.max_graph_nodes;
        let graph = lightrag.graph("*", 1, cap.unwrap_or(MAX_GRAPH_REQUEST).min(MAX_GRAPH_REQUEST)).await?;
        let mentions = |sources: &Sources| sources.mention(&view.file_source, &view.doc_id);
        let mut entities: Vec<EntityRef> = graph
            .nodes
            .iter()
            .filter(|n| mentions(&n.sources))
            .map(|n: &GraphNode| EntityRef {
                name: n.name.clone(),
                entity_type: n.entity_type.clone(),
                description: n.description.clone(),
            })
            .collect();
        let mut relations: Vec<RelationRef> = graph
            .edges
            .iter()
            .filter(|e| mentions(&e.sources))
            .map(|e| RelationRef {
                source: e.source.clone(),
                target: e.target.clone(),
                keywords: e.keywords.clone(),
                description: e.description.clone(),
            })
            .collect();
        entities.sort_by(|a, b| a.name.cmp(&b.name));
        relations.sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
        let mut notes = Vec::new();
        if graph.is_truncated {
            notes.push(format!(
                "LightRAG returned its {} most connected entities of a larger graph (its MAX_GRAPH_NODES is {}): \
                 entities of this memory outside them are missing; raise MAX_GRAPH_NODES on the server for an exact answer",
                graph.nodes.len(),
                cap.map_or_else(|| "not reported".to_owned(), |c| c.to_string())
            ));
        }
        Ok(MemoryLookup {
            memories: vec![view],
            entities,
            relations,
            complete: !graph.is_truncated,
            graph_nodes: graph.nodes.len(),
            max_graph_nodes: cap,
            notes,
        })
    }
}

fn entity_name<'a>(raw: &'a str, field: &str) -> Result<&'a str, LookupError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(LookupError::BadRequest(format!("{field} is empty: give an entity name as LightRAG shows it")));
    }
    if name.chars().count() > MAX_ENTITY_CHARS || name == "*" {
        return Err(LookupError::BadRequest(format!(
            "{field} is not an entity name (at most {MAX_ENTITY_CHARS} characters, not `*`)"
        )));
    }
    Ok(name)
}
