//! HTTP support every client of the connector shares (the Memory API, the
//! LightRAG sink, enrichment's OpenAI-compatible and geocoding services):
//! - bodies read with a limit ([`read_body`], [`read_error_body`]);
//! - the excerpt of a body quoted in an error, secrets scrubbed before it is
//!   cut ([`excerpt`]);
//! - URLs as messages show them, passwords masked ([`shown_url`],
//!   [`shown_url_text`]);
//! - an error with its causes ([`error_chain`], [`transport_error`]);
//! - the server's `Retry-After` ([`retry_after`]);
//! - the client itself ([`client_builder`]).
//!
//! Which answers are retried, and how, is [`crate::retry`]'s.

mod body;

pub use body::{BodyError, ERROR_BODY_BYTES, EXCERPT_BYTES, excerpt, read_body, read_error_body};

use crate::secrets::REDACTED;
use std::time::Duration;
use url::Url;

/// The URL as it may appear in messages and logs: a password in it is masked.
pub fn shown_url(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Fails only for URLs without a host, which have no password either.
    let _ = shown.set_password(Some(REDACTED));
    shown.to_string()
}

/// A URL-like text as it may appear in messages: parsed and masked when it
/// parses, else everything between `://` and the last `@` is masked.
pub fn shown_url_text(text: &str) -> String {
    if let Ok(url) = Url::parse(text) {
        return shown_url(&url);
    }
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://{REDACTED}@{}", &text[..scheme_end], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

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

/// A `reqwest` error with its causes but without the URL (which may hold a
/// password): callers name the URL themselves, masked.
pub fn transport_error(error: reqwest::Error) -> String {
    error_chain(&error.without_url())
}

/// The `Retry-After` of an answer: delay-seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    crate::retry::parse_retry_after(value, chrono::Utc::now())
}

/// A client builder with the connector's user agent, a whole-request
/// `timeout` and a connect timeout of at most 10 s. For `http://` base URLs
/// no trust store is loaded (it is most of a short run's start-up time).
pub fn client_builder(timeout: Duration, plain_http: bool) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("memory-connector/", env!("CARGO_PKG_VERSION")));
    if plain_http {
        builder = builder.tls_certs_only(std::iter::empty::<reqwest::Certificate>());
    }
    builder
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        let url = Url::parse("http://user:hunter2@host/memory/X").unwrap();
        assert_eq!(shown_url(&url), "http://user:***@host/memory/X");
        assert_eq!(shown_url(&Url::parse("https://host/p?q=1").unwrap()), "https://host/p?q=1");
        assert_eq!(shown_url_text("http://u:p@h x"), "http://***@h x");
        assert_eq!(shown_url_text("http://u:p@h:99999/"), "http://***@h:99999/", "a bad port does not parse");
        assert_eq!(shown_url_text("http://u:p@ss@h x/a@b"), "http://***@h x/a@b");
        assert_eq!(shown_url_text("http://host x/a@b"), "http://host x/a@b", "an @ in the path is no password");
        assert_eq!(shown_url_text("not a url"), "not a url");
    }

    #[test]
    fn error_chains_name_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
