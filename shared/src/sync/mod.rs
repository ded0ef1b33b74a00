//! sync engine
