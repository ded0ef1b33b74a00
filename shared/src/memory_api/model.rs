//! The memory as the connector understands it, after tolerant parsing.

use crate::ids::MemoryId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A place; `None` on the memory when the API sent null, nothing, or `0.0, 0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

/// One memory, normalised: a numeric id became its decimal string, naive
/// timestamps were read as UTC, `0,0` locations became `None`, an empty or
/// whitespace-only transcript became `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub id: MemoryId,
    /// Free text (`record`, `note`, `photo`, ...); `None` when absent.
    pub kind: Option<String>,
    pub audio: bool,
    pub image: bool,
    pub transcript: Option<String>,
    pub location: Option<GeoPoint>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub gcs_uri: Option<String>,
    pub gcs_uri_img: Option<String>,
}

/// An item of the list that could not be read as a memory: reported, skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedMemory {
    /// Position in the `memories` array.
    pub index: usize,
    /// The id, when one could be read.
    pub id: Option<String>,
    pub reason: String,
}

/// One answer of `GET /memory/{ctx}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FetchedPage {
    pub memories: Vec<Memory>,
    pub rejected: Vec<RejectedMemory>,
    /// `len == limit`: the window may hold more than was returned.
    pub possibly_truncated: bool,
    /// Requests it took to get this answer (1 = no retry).
    #[serde(default)]
    pub attempts: u32,
}
