//! Reading LightRAG's knowledge graph: `GET /graphs` (an entity and its
//! neighbourhood, or `*` for the most connected nodes) and `GET
//! /graph/label/search` (entity names close to a text). Every entity and
//! relation carries the names of the documents it was extracted from
//! (`file_path`) and the chunks (`source_id`), each list joined with
//! `<SEP>`; [`Sources`] reads them.

use super::ApiSink;
use super::transport::{Answer, BusyConflict};
use crate::ids::DocId;
use crate::lightrag::SinkError;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

/// How LightRAG joins the names and chunk ids of one entity or relation.
pub const GRAPH_FIELD_SEP: &str = "<SEP>";

/// The documents an entity or relation came from, as LightRAG records them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Sources {
    /// Stored document names (`file_path`), in LightRAG's order.
    pub file_paths: Vec<String>,
    /// Chunk ids (`source_id`); a text document's chunks are `<doc id>-chunk-NNN`.
    pub chunk_ids: Vec<String>,
    /// When LightRAG kept only the first (or last) names (`MAX_FILE_PATHS`,
    /// 75 by default), how many there were: its placeholder
    /// `...truncated...(KEEP 75/120)` says 120.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_paths_total: Option<u64>,
}

impl Sources {
    pub fn parse(file_path: Option<&str>, source_id: Option<&str>) -> Self {
        let mut sources = Sources::default();
        for name in split(file_path) {
            match placeholder_total(name) {
                Some(total) => sources.file_paths_total = Some(total),
                None => sources.file_paths.push(name.to_owned()),
            }
        }
        sources.chunk_ids = split(source_id).map(str::to_owned).collect();
        sources
    }

    /// Whether the document named `name` (id `doc_id`) is among the sources:
    /// by name, or by one of its chunks (LightRAG keeps up to 200 chunk ids
    /// but only 75 names by default).
    pub fn mention(&self, name: &str, doc_id: &DocId) -> bool {
        let prefix = format!("{}-", doc_id.as_str());
        self.file_paths.iter().any(|n| n == name) || self.chunk_ids.iter().any(|c| c.starts_with(&prefix))
    }
}

/// The non-empty parts of a `<SEP>`-joined field.
pub fn split(joined: Option<&str>) -> impl Iterator<Item = &str> {
    joined.unwrap_or_default().split(GRAPH_FIELD_SEP).map(str::trim).filter(|part| !part.is_empty())
}

/// The original count in LightRAG's placeholder for names it did not keep
/// (`...truncated...(KEEP 75/120)`); `None` for a real name.
pub fn placeholder_total(part: &str) -> Option<u64> {
    let rest = part.strip_prefix("...")?;
    let (_, counts) = rest.split_once("...(")?;
    let counts = counts.strip_suffix(')')?;
    let (_, total) = counts.rsplit_once('/')?;
    total.trim().parse().ok()
}

/// One entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphNode {
    pub name: String,
    pub entity_type: Option<String>,
    pub description: Option<String>,
    pub sources: Sources,
}

/// One relation (LightRAG's graph is undirected).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphEdge {
    pub source: String,
    pub target: String,
    pub keywords: Option<String>,
    pub description: Option<String>,
    pub sources: Sources,
}

impl GraphEdge {
    /// Whether the relation joins `entity` (to `other`, when given).
    pub fn joins(&self, entity: &str, other: Option<&str>) -> bool {
        let (a, b) = (self.source.as_str(), self.target.as_str());
        match other {
            Some(other) => (a == entity && b == other) || (a == other && b == entity),
            None => a == entity || b == entity,
        }
    }
}

/// What `GET /graphs` answered.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct KnowledgeGraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// LightRAG left nodes out (its `max_nodes`, capped by the server's
    /// `MAX_GRAPH_NODES`, or the depth).
    pub is_truncated: bool,
}

impl ApiSink {
    /// `GET /graphs?label=&max_depth=&max_nodes=`: the entity named `label`
    /// (exactly; an unknown one gives an empty graph) and its neighbours up
    /// to `max_depth` hops, or with `*` the `max_nodes` most connected
    /// entities. The server caps `max_nodes` at its `MAX_GRAPH_NODES`.
    pub async fn graph(&self, label: &str, max_depth: u32, max_nodes: u64) -> Result<KnowledgeGraph, SinkError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("label", label)
            .append_pair("max_depth", &max_depth.max(1).to_string())
            .append_pair("max_nodes", &max_nodes.max(1).to_string())
            .finish();
        let path = format!("/graphs?{query}");
        let answer = self.call(Method::GET, &path, None, BusyConflict::Retry).await?;
        let body = self.json_of(&answer, &path, "a knowledge graph")?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let sources = |props: &Value| {
            Sources::parse(
                props.get("file_path").and_then(Value::as_str),
                props.get("source_id").and_then(Value::as_str),
            )
        };
        let list = |key: &str| body.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let nodes = list("nodes")
            .iter()
            .filter_map(|node| {
                let props = node.get("properties").cloned().unwrap_or(Value::Null);
                Some(GraphNode {
                    name: text(node, "id")?,
                    entity_type: text(&props, "entity_type"),
                    description: text(&props, "description"),
                    sources: sources(&props),
                })
            })
            .collect();
        let edges = list("edges")
            .iter()
            .filter_map(|edge| {
                let props = edge.get("properties").cloned().unwrap_or(Value::Null);
                Some(GraphEdge {
                    source: text(edge, "source")?,
                    target: text(edge, "target")?,
                    keywords: text(&props, "keywords"),
                    description: text(&props, "description"),
                    sources: sources(&props),
                })
            })
            .collect();
        let is_truncated = body.get("is_truncated").and_then(Value::as_bool).unwrap_or(false);
        Ok(KnowledgeGraph { nodes, edges, is_truncated })
    }

    /// `GET /graph/label/search?q=&limit=`: entity names close to `text`
    /// (LightRAG's fuzzy match), best first.
    pub async fn search_labels(&self, text: &str, limit: u32) -> Result<Vec<String>, SinkError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", text)
            .append_pair("limit", &limit.clamp(1, 100).to_string())
            .finish();
        let path = format!("/graph/label/search?{query}");
        let answer = self.call(Method::GET, &path, None, BusyConflict::Retry).await?;
        let body = self.json_of(&answer, &path, "a list of entity names")?;
        Ok(body.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect())
    }

    /// The JSON of a successful answer, or an error naming the route and
    /// quoting the answer.
    pub(super) fn json_of(&self, answer: &Answer, path: &str, what: &str) -> Result<Value, SinkError> {
        answer.json().ok_or_else(|| {
            let route = path.split('?').next().unwrap_or(path);
            SinkError::transient(format!(
                "{}{route} answered {} with something that is not {what}: {}",
                self.shown,
                answer.status,
                answer.excerpt(self.secrets())
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_names_chunks_and_lightrags_placeholder() {
        let sources = Sources::parse(
            Some("memory_C_1.txt<SEP>memory_C_2.txt<SEP>...truncated...(KEEP 2/120)"),
            Some("doc-aa-chunk-000<SEP> doc-bb-chunk-001 <SEP>"),
        );
        assert_eq!(sources.file_paths, vec!["memory_C_1.txt", "memory_C_2.txt"]);
        assert_eq!(sources.chunk_ids, vec!["doc-aa-chunk-000", "doc-bb-chunk-001"]);
        assert_eq!(sources.file_paths_total, Some(120));
        assert!(sources.mention("memory_C_2.txt", &DocId::new("doc-zz")));
        assert!(sources.mention("memory_C_9.txt", &DocId::new("doc-bb")), "by chunk id");
        assert!(!sources.mention("memory_C_9.txt", &DocId::new("doc-b")), "a doc id prefix is not a doc id");
        assert_eq!(Sources::parse(None, None), Sources::default());
        assert_eq!(placeholder_total("...truncated...(FIFO 75/76)"), Some(76));
        assert_eq!(placeholder_total("memory_C_1.txt"), None);
        assert_eq!(placeholder_total("...x...(y)"), None);
    }

    #[test]
    fn relations_join_either_way() {
        let edge = GraphEdge {
            source: "Anna".into(),
            target: "Bruno".into(),
            keywords: None,
            description: None,
            sources: Sources::default(),
        };
        assert!(edge.joins("Bruno", None) && edge.joins("Bruno", Some("Anna")) && edge.joins("Anna", Some("Bruno")));
        assert!(!edge.joins("Anna", Some("Clara")) && !edge.joins("Clara", None));
    }
}
