//! Simulators of the services memory-connector talks to, and the harness that
//! runs the real binary against them, for the end-to-end tests, `make run` and
//! the benchmarks.

pub mod bench;
pub mod browser;
pub mod enrich_sim;
pub mod harness;
pub mod hostile_http;
pub mod lightrag_sim;
pub mod memory_sim;
pub mod serve;
pub mod tools;
