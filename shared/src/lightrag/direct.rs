//! TODO(helper)
#[derive(Debug)]
pub struct DirectSink;
