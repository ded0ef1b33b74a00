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

pub use crate::errors::error_chain;
use crate::secrets::mask_url_credentials;
use std::time::Duration;
use url::Url;

/// The URL as it may appear in messages and logs: its credentials masked
/// ([`crate::secrets::mask_url_credentials`], the one rule for URLs shown).
pub fn shown_url(url: &Url) -> String {
    mask_url_credentials(url.as_str()).into_owned()
}

/// A URL-like text as it may appear in messages, parsed or not: its
/// credentials masked ([`crate::secrets::mask_url_credentials`]).
pub fn shown_url_text(text: &str) -> String {
    mask_url_credentials(text).into_owned()
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
        assert_eq!(shown_url_text("http://u:p@h x"), "http://u:***@h x");
        assert_eq!(shown_url_text("http://u:p@h:99999/"), "http://u:***@h:99999/", "a bad port does not parse");
        assert_eq!(shown_url_text("http://u:p@ss@h/a@b"), "http://u:***@h/a@b");
        assert_eq!(shown_url_text("http://host x/a@b"), "http://host x/a@b", "an @ in the path is no password");
        assert_eq!(shown_url_text("not a url"), "not a url");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
