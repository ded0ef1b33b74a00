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
pub mod config;
pub mod enrich;
pub mod http;
pub mod ids;
pub mod lightrag;
pub mod memory_api;
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
pub mod transform;
pub mod wiring;

/// The version reported by `--version`, `/health` and the run report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
