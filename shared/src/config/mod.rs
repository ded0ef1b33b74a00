//! The configuration: schema, loading, interpolation and validation.
mod schema;
pub use schema::*;
