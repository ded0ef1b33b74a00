//! Simulators of the services memory-connector talks to, for the end-to-end
//! tests, `make run` and the benchmarks.

pub mod memory_sim;
