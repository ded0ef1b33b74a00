//! The core of memory-connector: every rule of the system lives here.
//!
//! The entry points (`cli/`, `functions/*`) only wire these pieces together:
//! a [`config::Config`] names the connectors, a [`memory_api::MemoryApiClient`]
//! reads memories, [`transform`] turns each into a [`transform::Document`], a
//! [`lightrag::DocumentSink`] writes it, a [`state::StateStore`] remembers what
//! was done, and [`sync::SyncEngine`] runs the whole thing once.

pub mod admin;
pub mod api;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
pub mod enrich;
pub mod errors;
pub mod http;
pub mod ids;
#[cfg(test)]
mod layers;
pub mod lightrag;
pub mod liveness;
pub mod memory_api;
pub mod provenance;
pub mod retry;
pub mod schedule;
pub mod secrets;
#[cfg(feature = "aws")]
pub mod serverless;
pub mod service;
pub mod state;
pub mod status;
pub mod sync;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod text;
pub mod transform;
pub mod wiring;

/// The version reported by `--version`, `/health` and the run report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
