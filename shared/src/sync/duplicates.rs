//! `dup-` records of this connector's documents: LightRAG records a failed
//! `dup-` document when a name it already holds comes again before the first
//! copy was listed (decision 0009). This connector does not send such a copy
//! knowingly ([`super::recover`]), but an older version of it or another
//! writer using its names may have; at the end of a run that talked to
//! LightRAG about documents, they are deleted (the original is a record of
//! its own and stays) and the report says how many.

use super::SyncEngine;
use super::report::RunReport;
use crate::ids::DocId;
use crate::lightrag::Removal;
use crate::transform;
use std::time::Duration;
use tracing::warn;

/// How long a run waits for LightRAG to allow and finish the deletion.
const REMOVE_WAIT: Duration = Duration::from_secs(15);

impl SyncEngine {
    pub(super) async fn remove_duplicates(&self, report: &mut RunReport) {
        let prefix = transform::name_prefix(&self.connector.context_id);
        let found = match self.sink.duplicates().await {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e.message, "could not look for duplicate records in LightRAG");
                report.warnings.push(format!("looking for duplicate records in LightRAG failed: {}", e.message));
                return;
            }
        };
        let ours: Vec<_> = found.into_iter().filter(|d| d.file_path.starts_with(&prefix)).collect();
        let Some(first) = ours.first() else { return };
        let example = format!(
            "{} of {} (original {})",
            first.id,
            first.file_path,
            first.original.as_ref().map_or("not named", DocId::as_str)
        );
        let ids: Vec<DocId> = ours.iter().map(|d| d.id.clone()).collect();
        let message = match self.sink.remove(&ids, REMOVE_WAIT).await {
            Ok(Removal::Removed) => {
                report.counts.duplicates_removed += ids.len() as u64;
                format!(
                    "removed {} duplicate record(s) LightRAG had made of this connector's documents (a name sent \
                     again before LightRAG listed its first copy), e.g. {example}; the originals are kept",
                    ids.len()
                )
            }
            Ok(Removal::Busy { reason }) => format!(
                "found {} duplicate record(s) LightRAG had made of this connector's documents, e.g. {example}; \
                 not removed yet ({reason}); a later run removes them",
                ids.len()
            ),
            Err(e) => format!(
                "found {} duplicate record(s) LightRAG had made of this connector's documents, e.g. {example}; \
                 removing them failed: {}",
                ids.len(),
                e.message
            ),
        };
        warn!("{message}");
        report.warnings.push(message);
    }
}
