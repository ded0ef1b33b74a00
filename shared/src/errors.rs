//! Formatting an error with its causes: one rule for every adapter (HTTP
//! clients, the AWS SDK, the stores), below all of them so any may use it;
//! `http` re-exports it with the rest of the HTTP support.

/// An error with its causes, each once (`reqwest`'s and the AWS SDK's own
/// message alone say little: "error sending request", "service error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_name_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }
}
