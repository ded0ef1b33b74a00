//! A question to LightRAG (`POST /query` with references), each reference
//! resolved to its memory through the ledger.

use super::view::{MemoryKey, MemoryView, split_names};
use super::{Lookup, LookupError};
use crate::ids::ConnectorId;
use crate::lightrag::api::query::{DEFAULT_QUERY_MODE, QUERY_MODES};
use serde::Serialize;
use std::collections::BTreeSet;

/// LightRAG refuses longer questions (`MAX_QUERY_CHARS`).
pub const MAX_QUESTION_CHARS: usize = 64 * 1024;
/// LightRAG's retrieval modes want at least this many characters.
const MIN_QUESTION_CHARS: usize = 3;

/// LightRAG's answer with its references resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskAnswer {
    pub connector_id: ConnectorId,
    pub question: String,
    pub mode: String,
    pub answer: String,
    /// `false` when LightRAG found nothing and answered its canned reply.
    pub llm_generated: Option<bool>,
    /// LightRAG's references, in its order (most used first).
    pub references: Vec<ReferenceView>,
    /// The memories of the references, in reference order, each once.
    pub memories: Vec<MemoryView>,
    /// Referenced names no ledger holds.
    pub unresolved: Vec<String>,
}

/// One reference of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferenceView {
    pub reference_id: String,
    pub file_path: String,
    /// Its memories (a name may be known to several connectors).
    pub memories: Vec<MemoryKey>,
}

impl Lookup {
    /// Asks LightRAG `question` in `mode` (default: what LightRAG
    /// recommends, `mix`). LightRAG serves every connector, so references
    /// are resolved in every ledger; `connector` must be configured.
    pub async fn ask(
        &self,
        connector: &ConnectorId,
        question: &str,
        mode: Option<&str>,
    ) -> Result<AskAnswer, LookupError> {
        if self.config.connector(connector).is_none() {
            return Err(LookupError::NotFound(format!("unknown connector `{connector}`")));
        }
        let question = question.trim();
        let mode = mode.map(str::trim).filter(|m| !m.is_empty()).unwrap_or(DEFAULT_QUERY_MODE);
        if !QUERY_MODES.contains(&mode) {
            return Err(LookupError::BadRequest(format!(
                "mode `{mode}` is not a LightRAG query mode; use one of {}",
                QUERY_MODES.join(", ")
            )));
        }
        let length = question.chars().count();
        if length > MAX_QUESTION_CHARS || (length < MIN_QUESTION_CHARS && mode != "bypass") || length == 0 {
            return Err(LookupError::BadRequest(format!(
                "the question has {length} characters; LightRAG takes {MIN_QUESTION_CHARS} to {MAX_QUESTION_CHARS}"
            )));
        }
        let answer = self.lightrag()?.query(question, mode).await?;
        let names: Vec<String> = answer
            .references
            .iter()
            .flat_map(|r| split_names(&r.file_path))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (by_name, unresolved) = self.views_named(&names).await?;
        let mut memories: Vec<MemoryView> = Vec::new();
        let mut seen = BTreeSet::new();
        let references = answer
            .references
            .into_iter()
            .map(|reference| {
                let views: Vec<&MemoryView> =
                    split_names(&reference.file_path).iter().filter_map(|n| by_name.get(n)).flatten().collect();
                for view in &views {
                    if seen.insert(view.key()) {
                        memories.push((*view).clone());
                    }
                }
                ReferenceView {
                    reference_id: reference.reference_id,
                    file_path: reference.file_path,
                    memories: views.iter().map(|v| v.key()).collect(),
                }
            })
            .collect();
        Ok(AskAnswer {
            connector_id: connector.clone(),
            question: question.to_owned(),
            mode: mode.to_owned(),
            answer: answer.response,
            llm_generated: answer.llm_generated,
            references,
            memories,
            unresolved,
        })
    }
}
