//! Asking LightRAG a question: `POST /query` with references, so each part
//! of the answer can be traced to the stored documents it came from.

use super::ApiSink;
use super::transport::BusyConflict;
use crate::lightrag::SinkError;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

const QUERY_PATH: &str = "/query";

/// LightRAG 1.5's query modes.
pub const QUERY_MODES: [&str; 6] = ["mix", "local", "global", "hybrid", "naive", "bypass"];
/// What LightRAG recommends (its own default): knowledge graph and vector
/// retrieval together.
pub const DEFAULT_QUERY_MODE: &str = "mix";

/// A document the answer drew on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub reference_id: String,
    /// The stored name (`file_path`) of the document.
    pub file_path: String,
}

/// What `POST /query` answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryAnswer {
    pub response: String,
    /// The documents the answer drew on, most used first.
    pub references: Vec<Reference>,
    /// Whether the LLM wrote the answer (LightRAG says `false` for its
    /// canned "no context" reply); `None` from servers that do not say.
    pub llm_generated: Option<bool>,
    /// Server-side seconds.
    pub response_time: Option<f64>,
}

impl ApiSink {
    /// `POST /query` with `include_references`, not streamed.
    pub async fn query(&self, question: &str, mode: &str) -> Result<QueryAnswer, SinkError> {
        let body = json!({ "query": question, "mode": mode, "include_references": true, "stream": false });
        let answer = self.call(Method::POST, QUERY_PATH, Some(&body), BusyConflict::Retry).await?;
        let body = self.json_of(&answer, QUERY_PATH, "a query answer")?;
        let Some(response) = body.get("response").and_then(Value::as_str) else {
            return Err(SinkError::transient(format!(
                "{}{QUERY_PATH} answered without a `response`: {}",
                self.shown,
                answer.excerpt(self.secrets())
            )));
        };
        let references = body
            .get("references")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let file_path = r.get("file_path").and_then(Value::as_str)?.to_owned();
                let reference_id = match r.get("reference_id") {
                    Some(Value::String(id)) => id.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                };
                Some(Reference { reference_id, file_path })
            })
            .collect();
        Ok(QueryAnswer {
            response: response.to_owned(),
            references,
            llm_generated: body.get("llm_generated").and_then(Value::as_bool),
            response_time: body.get("response_time").and_then(Value::as_f64),
        })
    }
}
