//! The media of a memory: `GET /memory/{ctx}/{id}/audio` and `/image`,
//! downloaded with a size limit, a content-type check and a timeout. One
//! attempt only: a failed download costs the document that enrichment, and
//! the next run tries again.

use std::time::Duration;

/// Which recording of a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Image,
}

impl MediaKind {
    /// The last path segment of its URL.
    pub fn segment(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Image => "image",
        }
    }

    /// Whether a `Content-Type` (parameters ignored) is one this kind may have.
    /// Audio: any `audio/*` (the API names mpeg, ogg and webm; wav and mp4
    /// are what other recorders produce). Images: the formats vision models
    /// accept (jpeg, png, gif, webp).
    pub fn accepts(self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match self {
            MediaKind::Audio => essence.strip_prefix("audio/").is_some_and(|sub| !sub.is_empty()),
            MediaKind::Image => {
                matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/png" | "image/gif" | "image/webp")
            }
        }
    }
}

/// Bounds of one download.
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// Downloaded bytes and their declared type (parameters stripped, lower case).
#[derive(Clone, PartialEq, Eq)]
pub struct Media {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("content_type", &self.content_type).field("bytes", &self.bytes.len()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GET {url}: the memory has no {kind} (HTTP 404)")]
    NotFound { url: String, kind: &'static str },
    #[error("GET {url}: larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("GET {url}: content type {content_type:?} is not {kind}")]
    WrongType { url: String, content_type: String, kind: &'static str },
    #[error("GET {url} answered HTTP {status} (body: {body})")]
    Http { url: String, status: u16, body: String },
    #[error("GET {url}: no complete answer within {timeout_secs} s")]
    Timeout { url: String, timeout_secs: u64 },
    #[error("GET {url}: {message}")]
    Network { url: String, message: String },
}
