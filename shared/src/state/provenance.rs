//! What the ledger remembers of a memory besides its delivery: the facts a
//! person needs to recognise it when LightRAG cites its document (when and
//! where it was recorded, its tags, its media, its first line). Written with
//! the entry when a document is delivered (`crate::provenance::record`
//! builds it), so a LightRAG name resolves from the ledger alone; decision
//! 0022 weighs it against parsing the document text back.

use crate::memory_api::GeoPoint;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The memory as its delivered document describes it. Fields are left out
/// of the stored form when empty, to keep ledger items small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The Memory API context the memory was read from.
    pub context_id: String,
    /// The memory's `type` (`record`, `note`, `photo`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    /// The place name the document carries (reverse geocoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audio: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image: bool,
    /// The first line of the document's transcript, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
}
