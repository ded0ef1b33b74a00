//! TODO(helper)
use super::StateError;
use std::path::Path;
#[derive(Debug)]
pub struct SqliteStore;
impl SqliteStore { pub async fn open(_p: &Path) -> Result<Self, StateError> { Err(StateError::Unsupported("sqlite".into())) } }
