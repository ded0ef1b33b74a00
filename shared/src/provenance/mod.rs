//! From an answer back to the memories: what the ledger keeps of each
//! delivered memory ([`record`]), and the look-ups that turn LightRAG's
//! names, entities and answers into memories.

pub mod record;

pub use record::record;
