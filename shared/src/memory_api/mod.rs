//! The Memory API client and its models.
pub mod model;
