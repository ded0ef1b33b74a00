//! The simulated LightRAG's knowledge graph and questions: `GET /graphs`,
//! `GET /graph/label/search` and `POST /query`, shaped like LightRAG
//! 1.5.7's answers (`lightrag/api/routers/graph_routes.py`,
//! `query_routes.py`, the NetworkX storage's `get_knowledge_graph`).
//!
//! Entities come from each processed document the way the test LLM
//! (`tests/lightrag/fake_llm.py`) extracts them: the first three
//! capitalised words below the document's labels become `concept`
//! entities, consecutive ones are related. A document is one chunk
//! (`<doc id>-chunk-000`); names and chunk ids are merged per entity with
//! LightRAG's limits (75 names, then its placeholder; 200 chunk ids). The
//! graph is rebuilt from the processed documents on each request, so
//! deletions and replacements show at once.

use super::Shared;
use super::store::{SimDocStatus, SimDocument};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// LightRAG's `DEFAULT_MAX_FILE_PATHS`: names kept per entity or relation.
const MAX_FILE_PATHS: usize = 75;
/// LightRAG's `DEFAULT_MAX_SOURCE_IDS_PER_ENTITY` (and per relation).
const MAX_SOURCE_IDS: usize = 200;
const SEP: &str = "<SEP>";
const QUERY_MODES: [&str; 6] = ["local", "global", "hybrid", "naive", "mix", "bypass"];
/// LightRAG's default `chunk_top_k`: chunks a question retrieves at most.
const CHUNK_TOP_K: usize = 20;
const NO_CONTEXT: &str = "Sorry, I'm not able to provide an answer to that question.[no-context]";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/graphs", get(graphs))
        .route("/graph/label/search", get(search_labels))
        .route("/graph/label/list", get(list_labels))
        .route("/query", post(query))
}

/// A line of a document's header (`Type: record`, `## Transcript`).
fn is_label_line(line: &str) -> bool {
    let line = line.trim_start();
    if line.starts_with('#') {
        return true;
    }
    let Some(colon) = line.find(':') else { return false };
    let label = &line[..colon];
    colon <= 31
        && label.starts_with(|c: char| c.is_ascii_alphabetic())
        && label.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
}

/// The entity names the test LLM extracts from a chunk (see the module doc).
pub fn extract_entities(text: &str) -> Vec<String> {
    let body = text.split_once("\n\n").map_or(text, |(_, rest)| rest);
    let content: Vec<&str> = body.lines().filter(|l| !is_label_line(l)).collect();
    let content = content.join("\n");
    let mut names: Vec<String> = Vec::new();
    // Python's `\b[A-Z][a-zA-Z]{2,}\b`: a whole word of ASCII letters, capitalised.
    for word in content.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let capitalised = word.starts_with(|c: char| c.is_ascii_uppercase());
        if capitalised
            && word.len() >= 3
            && word.chars().all(|c| c.is_ascii_alphabetic())
            && !names.iter().any(|n| n == word)
        {
            names.push(word.to_owned());
            if names.len() == 3 {
                break;
            }
        }
    }
    if names.is_empty() {
        names.push("Memory".into());
    }
    names
}

/// Where an entity or relation came from.
#[derive(Debug, Default)]
struct Sources {
    file_paths: Vec<String>,
    chunk_ids: Vec<String>,
    created_at: i64,
}

impl Sources {
    fn add(&mut self, doc: &SimDocument) {
        if !self.file_paths.contains(&doc.file_path) {
            self.file_paths.push(doc.file_path.clone());
        }
        self.chunk_ids.push(format!("{}-chunk-000", doc.id));
        self.created_at = self.created_at.max(doc.updated_at.timestamp());
    }

    /// LightRAG's `file_path` and `source_id` fields, with its limits (KEEP).
    fn fields(&self) -> (String, String) {
        let mut names: Vec<String> = self.file_paths.iter().take(MAX_FILE_PATHS).cloned().collect();
        if self.file_paths.len() > MAX_FILE_PATHS {
            names.push(format!("...truncated...(KEEP {MAX_FILE_PATHS}/{})", self.file_paths.len()));
        }
        let chunks: Vec<&str> = self.chunk_ids.iter().take(MAX_SOURCE_IDS).map(String::as_str).collect();
        (names.join(SEP), chunks.join(SEP))
    }
}

/// The graph of the processed documents.
#[derive(Debug, Default)]
struct Graph {
    nodes: BTreeMap<String, Sources>,
    /// Keyed by the ordered pair (LightRAG's graph is undirected).
    edges: BTreeMap<(String, String), Sources>,
    adjacency: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    fn of(documents: &[SimDocument]) -> Self {
        let mut graph = Graph::default();
        for doc in documents.iter().filter(|d| d.status == SimDocStatus::Processed && d.id.starts_with("doc-")) {
            let names = extract_entities(&doc.text);
            for name in &names {
                graph.nodes.entry(name.clone()).or_default().add(doc);
            }
            for pair in names.windows(2) {
                let key = if pair[0] <= pair[1] {
                    (pair[0].clone(), pair[1].clone())
                } else {
                    (pair[1].clone(), pair[0].clone())
                };
                graph.adjacency.entry(key.0.clone()).or_default().insert(key.1.clone());
                graph.adjacency.entry(key.1.clone()).or_default().insert(key.0.clone());
                graph.edges.entry(key).or_default().add(doc);
            }
        }
        graph
    }

    fn degree(&self, name: &str) -> usize {
        self.adjacency.get(name).map_or(0, BTreeSet::len)
    }

    /// `get_knowledge_graph` of LightRAG's NetworkX storage: `*` takes the
    /// most connected nodes; a label its breadth-first neighbourhood, each
    /// level by degree (then name), up to `max_nodes`.
    fn knowledge_graph(&self, label: &str, max_depth: u64, max_nodes: usize) -> Value {
        let mut truncated = false;
        let chosen: Vec<&str> = if label == "*" {
            let mut all: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
            all.sort_by(|a, b| self.degree(b).cmp(&self.degree(a)).then(a.cmp(b)));
            truncated = all.len() > max_nodes;
            all.truncate(max_nodes);
            all
        } else if !self.nodes.contains_key(label) {
            return json!({"nodes": [], "edges": [], "is_truncated": false});
        } else {
            let mut chosen: Vec<&str> = Vec::new();
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            let mut queue: VecDeque<(&str, u64)> = VecDeque::from([(label, 0)]);
            while let Some(&(_, depth)) = queue.front() {
                let mut level: Vec<&str> = Vec::new();
                while queue.front().is_some_and(|(_, d)| *d == depth) {
                    level.extend(queue.pop_front().map(|(n, _)| n));
                }
                level.sort_by(|a, b| self.degree(b).cmp(&self.degree(a)).then(a.cmp(b)));
                for (i, node) in level.iter().enumerate() {
                    if !seen.insert(node) {
                        continue;
                    }
                    chosen.push(node);
                    if depth < max_depth {
                        for next in self.adjacency.get(*node).into_iter().flatten() {
                            if !seen.contains(next.as_str()) {
                                queue.push_back((next.as_str(), depth + 1));
                            }
                        }
                    }
                    if chosen.len() >= max_nodes {
                        truncated = level[i + 1..].iter().any(|n| !seen.contains(n))
                            || queue.iter().any(|(n, _)| !seen.contains(n));
                        break;
                    }
                }
                if chosen.len() >= max_nodes {
                    break;
                }
            }
            chosen
        };
        let inside: BTreeSet<&str> = chosen.iter().copied().collect();
        let nodes: Vec<Value> = chosen
            .iter()
            .map(|name| {
                let sources = &self.nodes[*name];
                let (file_path, source_id) = sources.fields();
                json!({"id": name, "labels": [name], "properties": {
                    "entity_id": name, "entity_type": "concept",
                    "description": format!("{name} is mentioned in the memory."),
                    "source_id": source_id, "file_path": file_path,
                    "created_at": sources.created_at, "truncate": "",
                }})
            })
            .collect();
        let edges: Vec<Value> = self
            .edges
            .iter()
            .filter(|((a, b), _)| inside.contains(a.as_str()) && inside.contains(b.as_str()))
            .map(|((a, b), sources)| {
                let (file_path, source_id) = sources.fields();
                json!({"id": format!("{a}-{b}"), "type": "DIRECTED", "source": a, "target": b, "properties": {
                    "weight": sources.chunk_ids.len() as f64,
                    "description": format!("{a} and {b} appear in the same memory."),
                    "keywords": "mentioned together", "source_id": source_id, "file_path": file_path,
                    "created_at": sources.created_at, "truncate": "",
                }})
            })
            .collect();
        json!({"nodes": nodes, "edges": edges, "is_truncated": truncated})
    }
}

fn processed(shared: &Shared) -> Vec<SimDocument> {
    shared.store().documents(Instant::now())
}

/// FastAPI's 422 body for a query parameter.
fn invalid(kind: &str, name: &str, msg: &str, input: Value) -> Value {
    json!({"detail": [{"type": kind, "loc": ["query", name], "msg": msg, "input": input}]})
}

fn unprocessable(body: Value) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

fn params(raw: Option<String>) -> HashMap<String, String> {
    url_pairs(raw.as_deref().unwrap_or_default())
}

fn url_pairs(raw: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://sim/?{raw}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// An integer query parameter at least `min`, or FastAPI's 422.
fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    min: u64,
    max: Option<u64>,
) -> Result<u64, Value> {
    let Some(raw) = params.get(name) else { return Ok(default) };
    let value: i64 = raw.trim().parse().map_err(|_| {
        invalid(
            "int_parsing",
            name,
            "Input should be a valid integer, unable to parse string as an integer",
            json!(raw),
        )
    })?;
    if value < min as i64 {
        return Err(invalid(
            "greater_than_equal",
            name,
            &format!("Input should be greater than or equal to {min}"),
            json!(raw),
        ));
    }
    match max {
        Some(max) if value > max as i64 => {
            Err(invalid("less_than_equal", name, &format!("Input should be less than or equal to {max}"), json!(raw)))
        }
        _ => Ok(value as u64),
    }
}

async fn graphs(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let params = params(raw);
    let Some(label) = params.get("label") else {
        return unprocessable(invalid("missing", "label", "Field required", Value::Null));
    };
    let depth = match int_param(&params, "max_depth", 3, 1, None) {
        Ok(depth) => depth,
        Err(refused) => return unprocessable(refused),
    };
    let max_nodes = match int_param(&params, "max_nodes", 1000, 1, None) {
        Ok(n) => n.min(shared.options.max_graph_nodes as u64) as usize,
        Err(refused) => return unprocessable(refused),
    };
    Json(Graph::of(&processed(&shared)).knowledge_graph(label, depth, max_nodes)).into_response()
}

/// LightRAG's fuzzy label search, simplified: case-insensitive, exact
/// matches first, then prefixes, then names containing the text.
async fn search_labels(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let params = params(raw);
    let Some(text) = params.get("q") else {
        return unprocessable(invalid("missing", "q", "Field required", Value::Null));
    };
    let limit = match int_param(&params, "limit", 50, 1, Some(100)) {
        Ok(limit) => limit as usize,
        Err(refused) => return unprocessable(refused),
    };
    let wanted = text.trim().to_lowercase();
    let graph = Graph::of(&processed(&shared));
    let mut found: Vec<(u8, &String)> = graph
        .nodes
        .keys()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let rank = if lower == wanted {
                0
            } else if lower.starts_with(&wanted) {
                1
            } else if !wanted.is_empty() && lower.contains(&wanted) {
                2
            } else {
                return None;
            };
            Some((rank, name))
        })
        .collect();
    found.sort();
    Json(found.into_iter().take(limit).map(|(_, n)| n.clone()).collect::<Vec<_>>()).into_response()
}

async fn list_labels(State(shared): State<Arc<Shared>>) -> Response {
    Json(Graph::of(&processed(&shared)).nodes.into_keys().collect::<Vec<_>>()).into_response()
}

/// The words a question and a document are compared by.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3).map(str::to_lowercase).collect()
}

/// `POST /query`: LightRAG's validation, then the documents sharing at
/// least half of the question's words, most shared first (a stand-in for
/// vector retrieval: a question that is a document's text finds it first).
async fn query(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let started = Instant::now();
    let refuse = |loc: Value, kind: &str, msg: String, input: Value| {
        let body = json!({"detail": [{"type": kind, "loc": loc, "msg": msg, "input": input}]});
        (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
    };
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            json!(["body"]),
            "model_attributes_type",
            "Input should be a valid dictionary or object".into(),
            Value::Null,
        );
    };
    let input = Value::Object(request.clone());
    let Some(question) = request.get("query").and_then(Value::as_str).map(str::trim) else {
        return refuse(json!(["body", "query"]), "missing", "Field required".into(), input);
    };
    let mode = request.get("mode").and_then(Value::as_str).unwrap_or("mix");
    if !QUERY_MODES.contains(&mode) {
        let msg = "Input should be 'local', 'global', 'hybrid', 'naive', 'mix' or 'bypass'".to_owned();
        return refuse(json!(["body", "mode"]), "literal_error", msg, json!(mode));
    }
    if question.is_empty() {
        return refuse(
            json!(["body", "query"]),
            "value_error",
            "Value error, Query must not be empty".into(),
            json!(""),
        );
    }
    if mode != "bypass" && question.chars().count() < 3 {
        let msg = "Value error, RAG query is too short. Enter at least 3 English characters or an equivalent \
                   combination where each Chinese, Japanese or Korean character counts as 2."
            .to_owned();
        return refuse(json!(["body"]), "value_error", msg, input);
    }
    let include_references = request.get("include_references").and_then(Value::as_bool).unwrap_or(true);
    let include_content = request.get("include_chunk_content").and_then(Value::as_bool).unwrap_or(false);
    let mut ranked: Vec<(usize, SimDocument)> = Vec::new();
    if mode != "bypass" {
        let asked = words(question);
        for doc in
            processed(&shared).into_iter().filter(|d| d.status == SimDocStatus::Processed && d.id.starts_with("doc-"))
        {
            let shared_words = words(&doc.text).intersection(&asked).count();
            if !asked.is_empty() && shared_words * 2 >= asked.len() {
                ranked.push((shared_words, doc));
            }
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.created_at.cmp(&a.1.created_at)));
        ranked.truncate(CHUNK_TOP_K);
    }
    let (response, generated) = match (mode, ranked.is_empty()) {
        ("bypass", _) => ("A short summary.".to_owned(), true),
        (_, true) => (NO_CONTEXT.to_owned(), false),
        (_, false) => (format!("A short summary drawn from {} documents.", ranked.len()), true),
    };
    let references: Vec<Value> = ranked
        .iter()
        .enumerate()
        .map(|(i, (_, doc))| {
            let content = if include_content { json!([doc.text]) } else { Value::Null };
            json!({"reference_id": (i + 1).to_string(), "file_path": doc.file_path, "content": content})
        })
        .collect();
    let time = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let references = if include_references { json!(references) } else { Value::Null };
    Json(json!({"response": response, "references": references, "response_time": time, "llm_generated": generated}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_come_from_below_the_labels_like_the_test_llm() {
        let standard = "Memory 42\nType: record\nRecorded: 2025-12-18 14:30:00 UTC\nContext: CTX1\n\nmet Anna and Bruno in Lisbon, then Anna";
        assert_eq!(extract_entities(standard), vec!["Anna", "Bruno", "Lisbon"]);
        let rich = "# Voice recording on Monday\n\nWhen: Monday\nWhere: Paris\nMemory: 1 (context C)\n\n## Transcript\n\nsaw Carla at Dover with Ellen";
        assert_eq!(extract_entities(rich), vec!["Carla", "Dover", "Ellen"]);
        assert_eq!(extract_entities("Ada met Grace in London."), vec!["Ada", "Grace", "London"]);
        assert_eq!(extract_entities("no capitals here, Ab, ABc2, Émile"), vec!["Memory"]);
        assert_eq!(extract_entities("Anna's Bäckerei and O'Neil"), vec!["Anna", "Neil"]);
    }
}
