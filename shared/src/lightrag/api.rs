//! TODO(helper)
#[derive(Debug)]
pub struct ApiSink;
