//! TODO(helper)
use super::StateError;
use std::path::Path;
#[derive(Debug)]
pub struct JsonStore;
impl JsonStore { pub async fn open(_p: &Path) -> Result<Self, StateError> { Err(StateError::Unsupported("json".into())) } }
