use super::documents::stored_status;
use super::status::read_duplicate;
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

#[test]
fn reads_dup_records_of_a_name_and_only_those() {
    let record = |id: &str, kind: Option<&str>, error: &str| {
        serde_json::json!({
            "id": id, "file_path": "memory_C_1.txt", "status": "failed", "error_msg": error,
            "metadata": kind.map(|k| serde_json::json!({"is_duplicate": true, "duplicate_kind": k, "original_doc_id": "doc-1"})),
        })
    };
    let name = "File name already exists. Original doc_id: doc-1, Status: DocStatus.PARSING";
    let found = read_duplicate(&record("dup-a", Some("filename"), name)).unwrap();
    assert_eq!((found.id.as_str(), found.file_path.as_str()), ("dup-a", "memory_C_1.txt"));
    assert_eq!(found.original, Some(DocId::new("doc-1")));
    // A server that writes no duplicate_kind: told by the message.
    assert_eq!(read_duplicate(&record("dup-b", None, name)).unwrap().original, None);
    // Repeated text under another name: the name holds no document of its own.
    let content = "Identical content already exists under another filename. Original doc_id: doc-9";
    assert!(read_duplicate(&record("dup-c", Some("content_hash"), content)).is_none());
    assert!(read_duplicate(&record("dup-d", None, content)).is_none());
    // A failed document that is no dup- record.
    assert!(read_duplicate(&record("doc-e", None, name)).is_none());
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
