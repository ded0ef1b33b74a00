//! The Memory API: its client ([`MemoryApiClient`]), the tolerant reading of
//! its answers ([`parse_page`]) and the normalised models ([`model`]).

mod client;
mod media;
pub mod model;
mod parse;

pub use client::{MemoryApiClient, MemoryApiError};
pub use media::{Media, MediaError, MediaKind, MediaLimits};
pub use model::{FetchedPage, GeoPoint, Memory, RejectedMemory};
pub use parse::{parse_page, parse_timestamp};
