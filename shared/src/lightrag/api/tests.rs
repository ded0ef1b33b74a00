use super::documents::stored_status;
use super::transport::Answer;
use super::*;
use crate::lightrag::{DocumentSink, SinkErrorKind};
use crate::secrets::Secret;
use crate::transform::Document;
use reqwest::StatusCode;
use std::time::Duration;

fn config(url: &str) -> LightragApiConfig {
    LightragApiConfig { url: url.into(), api_key: Some(Secret::new("k-secret")), ..Default::default() }
}

#[test]
fn reads_the_status_of_an_already_stored_document() {
    let detail = "Document storage already contains 'm1.txt' (Status: processed). Delete the existing record before re-inserting.";
    assert_eq!(stored_status(detail).as_deref(), Some("processed"));
    assert_eq!(stored_status("... (Status: DocStatus.FAILED) ...").as_deref(), Some("failed"));
    assert_eq!(stored_status("no status here"), None);
}

#[test]
fn urls_are_checked_and_shown_without_password() {
    assert_eq!(ApiSink::new(&config("not a url")).unwrap_err().kind, SinkErrorKind::Fatal);
    assert_eq!(ApiSink::new(&config("ftp://x")).unwrap_err().kind, SinkErrorKind::Fatal);
    let sink = ApiSink::new(&config("http://user:pw@127.0.0.1:9621/")).unwrap();
    assert_eq!(sink.describe(), "http://user:***@127.0.0.1:9621");
    assert!(!format!("{sink:?}").contains("k-secret"));
}

#[test]
fn empty_key_sends_no_header() {
    let mut c = config("http://127.0.0.1:1");
    c.api_key = Some(Secret::new(""));
    assert!(ApiSink::new(&c).unwrap().api_key.is_none());
}

#[test]
fn excerpts_are_bounded_and_scrubbed() {
    let key = Secret::new("k-secret");
    let answer =
        Answer { status: StatusCode::BAD_REQUEST, body: format!("bad key k-secret {}", "é".repeat(300)).into_bytes() };
    let excerpt = answer.excerpt(vec![&key]);
    assert!(!excerpt.contains("k-secret"));
    assert!(excerpt.len() <= crate::http::EXCERPT_BYTES + "…".len());
    let validation = Answer {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: br#"{"detail":[{"loc":["body","text"],"msg":"Field required"}]}"#.to_vec(),
    };
    assert_eq!(validation.detail().as_deref(), Some("body.text: Field required"));
}

#[tokio::test]
async fn unreachable_server_is_transient_and_named() {
    // Port 1 on loopback: nothing listens there.
    let sink = ApiSink::new(&config("http://127.0.0.1:1")).unwrap().with_first_retry_delay(Duration::from_millis(1));
    let err = sink.insert(&Document::new("m.txt".into(), "t".into())).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert!(err.message.contains("POST http://127.0.0.1:1/documents/text"), "{}", err.message);
    assert!(err.message.contains("4 attempts"), "{}", err.message);
}

/// A failed document's `error_msg` goes into the ledger and the API: it is
/// quoted like a body (bounded, the key scrubbed), however long LightRAG made it.
#[test]
fn a_failed_documents_message_is_bounded_and_scrubbed() {
    let key = Secret::new("k-secret-0123456789");
    let message = format!("LLM call failed with k-secret-0123456789 {}", "x".repeat(1 << 20));
    let doc = serde_json::json!({"id": "doc-1", "status": "failed", "error_msg": message});
    let (_, status) = super::status::read_doc_status(&doc, &[&key]).unwrap();
    let crate::lightrag::RemoteStatus::Failed { error } = status else { panic!("{status:?}") };
    assert!(error.len() < 1_000, "{} bytes", error.len());
    assert!(!error.contains("0123456789"), "{error}");
    assert!(error.starts_with("LLM call failed"), "{error}");
}
