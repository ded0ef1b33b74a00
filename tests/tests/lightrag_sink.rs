//! The LightRAG sinks against the simulator (api mode) and temp folders
//! (direct mode), and the simulator's own LightRAG rules.

#![allow(clippy::unwrap_used)]

use connector_core::config::{LightragApiConfig, LightragConfig, LightragDirectConfig, LightragMode};
use connector_core::lightrag::api::ApiSink;
use connector_core::lightrag::direct::DirectSink;
use connector_core::lightrag::{self, DocumentSink, InsertOutcome, ReplaceOutcome, SinkErrorKind, doc_id};
use connector_core::secrets::Secret;
use connector_core::transform::Document;
use serde_json::{Value, json};
use sims::harness::wait_until;
use sims::lightrag_sim::{LightragSim, LightragSimOptions, SimDocStatus, SimFault, SimRoute};
use std::path::Path;
use std::time::{Duration, Instant};

const KEY: &str = "sk-lightrag-test-secret";

fn doc(name: &str, text: &str) -> Document {
    Document::new(name.to_owned(), text.to_owned())
}

fn api_config(sim: &LightragSim, key: Option<&str>) -> LightragApiConfig {
    LightragApiConfig { url: sim.url(), api_key: key.map(Secret::new), timeout: 5, ..LightragApiConfig::default() }
}

fn sink(sim: &LightragSim) -> ApiSink {
    sink_with_key(sim, None)
}

fn sink_with_key(sim: &LightragSim, key: Option<&str>) -> ApiSink {
    ApiSink::new(&api_config(sim, key)).unwrap().with_first_retry_delay(Duration::from_millis(5))
}

async fn sim(options: LightragSimOptions) -> LightragSim {
    LightragSim::start(options).await.unwrap()
}

// ------------------------------------------------------------------ api sink

#[tokio::test]
async fn insert_is_accepted_and_stored_under_the_basename_id() {
    let sim = sim(LightragSimOptions::default()).await;
    let outcome = sink(&sim).insert(&doc("memory_C1_42.txt", "  Hello graph.\n")).await.unwrap();
    let InsertOutcome::Accepted { track_id: Some(track_id) } = outcome else { panic!("{outcome:?}") };
    assert!(track_id.as_str().starts_with("insert_"), "{track_id}");

    let docs = sim.documents();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].id, doc_id("memory_C1_42.txt").as_str());
    assert_eq!(docs[0].file_path, "memory_C1_42.txt");
    assert_eq!(docs[0].text, "Hello graph.", "LightRAG strips the text");
    assert_eq!(docs[0].status, SimDocStatus::Processed);
    assert_eq!(docs[0].track_id.as_deref(), Some(track_id.as_str()));
}

#[tokio::test]
async fn reinsert_is_already_stored_with_its_status() {
    let sim = sim(LightragSimOptions::default()).await;
    let sink = sink(&sim);
    sink.insert(&doc("m1.txt", "one")).await.unwrap();
    let again = sink.insert(&doc("folder/m1.txt", "other text")).await.unwrap();
    assert_eq!(again, InsertOutcome::AlreadyStored { status: Some("processed".into()) });
    assert_eq!(sim.documents().len(), 1);
    assert_eq!(sim.request_count(SimRoute::Insert), 2, "a 409 'already contains' is not retried");
}

#[tokio::test]
async fn same_text_under_another_name_is_accepted_with_a_dup_record() {
    let sim = sim(LightragSimOptions::default()).await;
    let sink = sink(&sim);
    sink.insert(&doc("a.txt", "same words")).await.unwrap();
    let outcome = sink.insert(&doc("b.txt", "same words")).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Accepted { track_id: Some(_) }), "{outcome:?}");

    let dup = sim.document_named("b.txt").expect("a record for b.txt");
    assert!(dup.id.starts_with("dup-"), "{}", dup.id);
    assert_eq!(dup.status, SimDocStatus::Failed);
    let error = dup.error_msg.unwrap();
    assert!(error.starts_with("Identical content already exists under another filename"), "{error}");
    assert!(error.contains(doc_id("a.txt").as_str()), "{error}");
    assert!(sim.documents().iter().all(|d| d.id != doc_id("b.txt").as_str()));
}

#[tokio::test]
async fn replace_deletes_the_old_text_and_stores_the_new_under_the_same_id() {
    let sim = sim(LightragSimOptions::default()).await;
    let sink = sink(&sim);
    sink.insert(&doc("m.txt", "old text")).await.unwrap();
    let outcome = sink.replace(&doc("m.txt", "new text")).await.unwrap();
    assert!(matches!(outcome, ReplaceOutcome::Replaced { track_id: Some(_) }), "{outcome:?}");

    let docs = sim.documents();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].id, doc_id("m.txt").as_str());
    assert_eq!(docs[0].text, "new text");
    assert_eq!(sim.request_count(SimRoute::Delete), 1);
}

#[tokio::test]
async fn replace_that_cannot_store_the_new_text_says_the_old_one_is_gone() {
    let sim = sim(LightragSimOptions::default()).await;
    let sink = sink(&sim);
    sink.insert(&doc("m.txt", "old text")).await.unwrap();
    let err = sink.replace(&doc("m.txt", "  ")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Rejected);
    assert!(err.message.contains(&format!("{} was deleted", doc_id("m.txt"))), "{}", err.message);
    assert!(sim.documents().is_empty());
}

#[tokio::test]
async fn replace_while_busy_is_deferred_and_deletes_nothing() {
    let sim = sim(LightragSimOptions::default()).await;
    // A busy pipeline is waited out for the replace wait, then deferred.
    let sink = sink(&sim).with_replace_wait(Duration::from_millis(200));
    sink.insert(&doc("m.txt", "old text")).await.unwrap();
    sim.set_busy(true);
    let outcome = sink.replace(&doc("m.txt", "new text")).await.unwrap();
    let ReplaceOutcome::Deferred { reason } = outcome else { panic!("{outcome:?}") };
    assert!(reason.contains("busy") && reason.contains(doc_id("m.txt").as_str()), "{reason}");
    assert_eq!(sim.documents()[0].text, "old text");
    assert_eq!(sim.request_count(SimRoute::Insert), 1, "no re-insert after a refused delete");

    sim.set_busy(false);
    assert!(matches!(sink.replace(&doc("m.txt", "new text")).await.unwrap(), ReplaceOutcome::Replaced { .. }));
    assert_eq!(sim.documents()[0].text, "new text");
}

#[tokio::test]
async fn replace_waits_for_a_slow_deletion() {
    let sim = sim(LightragSimOptions { delete_delay: Duration::from_millis(300), ..Default::default() }).await;
    let sink = sink(&sim);
    sink.insert(&doc("m.txt", "old text")).await.unwrap();
    let started = Instant::now();
    let outcome = sink.replace(&doc("m.txt", "new text")).await.unwrap();
    assert!(matches!(outcome, ReplaceOutcome::Replaced { .. }), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(sim.request_count(SimRoute::Insert) >= 3, "the re-insert was polled while the deletion ran");
    assert_eq!(sim.documents()[0].text, "new text");
}

#[tokio::test]
async fn replace_defers_when_the_deletion_outlasts_the_wait() {
    let sim = sim(LightragSimOptions { delete_delay: Duration::from_secs(5), ..Default::default() }).await;
    let sink = sink(&sim).with_replace_wait(Duration::from_millis(250));
    sink.insert(&doc("m.txt", "old text")).await.unwrap();
    let outcome = sink.replace(&doc("m.txt", "new text")).await.unwrap();
    let ReplaceOutcome::Deferred { reason } = outcome else { panic!("{outcome:?}") };
    assert!(reason.contains("did not finish within"), "{reason}");
    assert!(reason.contains(doc_id("m.txt").as_str()), "{reason}");
}

#[tokio::test]
async fn insert_honours_retry_after_on_429() {
    let sim = sim(LightragSimOptions::default()).await;
    sim.inject(SimFault::new(SimRoute::Insert, 429).retry_after("1"));
    let started = Instant::now();
    let outcome = sink(&sim).insert(&doc("m.txt", "text")).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Accepted { .. }));
    // The backoff alone would have waited a few milliseconds.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(sim.request_count(SimRoute::Insert), 2);
}

#[tokio::test]
async fn insert_retries_5xx_then_succeeds() {
    let sim = sim(LightragSimOptions::default()).await;
    sim.inject(SimFault::new(SimRoute::Insert, 503).times(2));
    let outcome = sink(&sim).insert(&doc("m.txt", "text")).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Accepted { .. }));
    assert_eq!(sim.request_count(SimRoute::Insert), 3);
    assert_eq!(sim.documents().len(), 1);
}

#[tokio::test]
async fn persistent_5xx_is_transient_and_says_where() {
    let sim = sim(LightragSimOptions::default()).await;
    sim.inject(SimFault::new(SimRoute::Insert, 502).body("upstream exploded").times(10));
    let err = sink(&sim).insert(&doc("m.txt", "text")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert_eq!(sim.request_count(SimRoute::Insert), 4, "the first attempt and 3 retries");
    let url = format!("POST {}/documents/text", sim.url());
    assert!(err.message.contains(&url), "{}", err.message);
    assert!(err.message.contains("502"), "{}", err.message);
    assert!(err.message.contains("upstream exploded"), "{}", err.message);
}

#[tokio::test]
async fn pipeline_clearing_409_is_retried_then_transient() {
    let sim = sim(LightragSimOptions::default()).await;
    let clearing = json!({ "detail": "Pipeline is clearing or deleting documents. Wait for the running job to finish before submitting new work." });
    sim.inject(SimFault::new(SimRoute::Insert, 409).body(clearing.to_string()).times(2));
    assert!(matches!(sink(&sim).insert(&doc("a.txt", "a")).await.unwrap(), InsertOutcome::Accepted { .. }));

    sim.inject(SimFault::new(SimRoute::Insert, 409).body(clearing.to_string()).times(10));
    let err = sink(&sim).insert(&doc("b.txt", "b")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert!(err.message.contains("clearing or deleting"), "{}", err.message);
}

#[tokio::test]
async fn invalid_documents_are_rejected_with_lightrags_detail() {
    let sim = sim(LightragSimOptions::default()).await;
    let err = sink(&sim).insert(&doc("m.txt", "   \n ")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Rejected);
    assert!(err.message.contains("422"), "{}", err.message);
    assert!(err.message.contains("whitespace"), "{}", err.message);
    assert_eq!(sim.request_count(SimRoute::Insert), 1, "a 422 is not retried");

    sim.inject(SimFault::new(SimRoute::Insert, 413).body(r#"{"detail":"Request body too large"}"#));
    let err = sink(&sim).insert(&doc("m.txt", "text")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Rejected);
    assert!(err.message.contains("Request body too large"), "{}", err.message);
}

#[tokio::test]
async fn old_servers_duplicated_answer_counts_as_stored() {
    let sim = sim(LightragSimOptions::default()).await;
    sim.inject(
        SimFault::new(SimRoute::Insert, 200)
            .body(r#"{"status":"duplicated","message":"Document already exists","track_id":""}"#),
    );
    let outcome = sink(&sim).insert(&doc("m.txt", "text")).await.unwrap();
    assert_eq!(outcome, InsertOutcome::AlreadyStored { status: None });
}

#[tokio::test]
async fn api_key_is_required_checked_and_never_shown() {
    let sim = sim(LightragSimOptions { api_key: Some(KEY.into()), ..Default::default() }).await;

    let err = sink(&sim).insert(&doc("m.txt", "text")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(err.message.contains(r#"403 "API Key required""#), "{}", err.message);
    assert!(err.message.contains("lightrag.api.api_key"), "{}", err.message);
    assert!(err.message.contains(&sim.url()), "{}", err.message);

    let wrong = "sk-wrong-key-123";
    let err = sink_with_key(&sim, Some(wrong)).insert(&doc("m.txt", "text")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(err.message.contains(r#"403 "Invalid API Key""#), "{}", err.message);
    assert!(!err.message.contains(wrong), "{}", err.message);

    let right = sink_with_key(&sim, Some(KEY));
    assert!(matches!(right.insert(&doc("m.txt", "text")).await.unwrap(), InsertOutcome::Accepted { .. }));
    assert!(!right.describe().contains(KEY));

    // A server (or proxy) that echoes the key back in an error body.
    let echo = json!({ "detail": format!("bad header X-API-Key: {KEY}") }).to_string();
    sim.inject(SimFault::new(SimRoute::Insert, 400).body(echo.clone()));
    sim.inject(SimFault::new(SimRoute::Delete, 500).body(echo.clone()).times(4));
    sim.inject(SimFault::new(SimRoute::Insert, 401).body(echo));
    let mut messages = Vec::new();
    for _ in 0..2 {
        messages.push(right.insert(&doc("n.txt", "text")).await.unwrap_err().message);
    }
    messages.push(right.replace(&doc("m.txt", "new")).await.unwrap_err().message);
    for message in &messages {
        assert!(!message.contains(KEY), "{message}");
        assert!(message.contains("***"), "{message}");
    }
}

#[tokio::test]
async fn wrong_url_is_fatal() {
    let sim = sim(LightragSimOptions::default()).await;
    let config = LightragApiConfig { url: format!("{}/not-lightrag", sim.url()), timeout: 5, ..Default::default() };
    let err = ApiSink::new(&config).unwrap().insert(&doc("m.txt", "t")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(err.message.contains("404"), "{}", err.message);
}

#[tokio::test]
async fn server_info_reads_health() {
    let sim =
        sim(LightragSimOptions { workspace: "memories".into(), api_key: Some(KEY.into()), ..Default::default() }).await;
    let info = sink(&sim).server_info().await.unwrap();
    assert_eq!(info.core_version.as_deref(), Some("1.5.7"));
    assert_eq!(info.api_version.as_deref(), Some("0344"));
    assert_eq!(info.workspace.as_deref(), Some("memories"));
    assert_eq!(info.pipeline_busy, Some(false));
}

#[tokio::test]
async fn open_picks_the_sink_of_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LightragConfig::default();
    config.api.url = "http://127.0.0.1:9621".into();
    assert_eq!(lightrag::open(&config).unwrap().describe(), "http://127.0.0.1:9621");
    config.mode = LightragMode::Direct;
    config.direct.working_dir = dir.path().to_owned();
    assert_eq!(lightrag::open(&config).unwrap().describe(), dir.path().join("inputs").display().to_string());
}

// --------------------------------------------------------------- direct sink

fn direct(dir: &Path) -> DirectSink {
    DirectSink::new(&LightragDirectConfig { working_dir: dir.to_owned() }).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn direct_insert_writes_the_exact_bytes_and_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let sink = direct(dir.path());
    let text = "Line one\nüñíçødé 🎉\n  trailing spaces  \n";
    let outcome = sink.insert(&doc("memory_C_1.txt", text)).await.unwrap();
    assert_eq!(outcome, InsertOutcome::Accepted { track_id: None });
    let inputs = dir.path().join("inputs");
    assert_eq!(std::fs::read(inputs.join("memory_C_1.txt")).unwrap(), text.as_bytes());
    assert_eq!(names_in(&inputs), vec!["memory_C_1.txt"]);
}

#[tokio::test]
async fn direct_reinsert_of_identical_bytes_is_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sink = direct(dir.path());
    sink.insert(&doc("m.txt", "same")).await.unwrap();
    assert_eq!(sink.insert(&doc("m.txt", "same")).await.unwrap(), InsertOutcome::AlreadyStored { status: None });
    // Different bytes under the same name are written.
    assert_eq!(sink.insert(&doc("m.txt", "other")).await.unwrap(), InsertOutcome::Accepted { track_id: None });
    assert_eq!(std::fs::read_to_string(dir.path().join("inputs/m.txt")).unwrap(), "other");
}

#[tokio::test]
async fn direct_replace_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let sink = direct(dir.path());
    sink.insert(&doc("sub/m.txt", "old")).await.unwrap();
    assert_eq!(sink.replace(&doc("sub/m.txt", "new")).await.unwrap(), ReplaceOutcome::Replaced { track_id: None });
    let inputs = dir.path().join("inputs");
    assert_eq!(std::fs::read_to_string(inputs.join("m.txt")).unwrap(), "new");
    assert_eq!(names_in(&inputs), vec!["m.txt"]);
}

#[tokio::test]
async fn direct_unwritable_folder_is_fatal_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the working folder should be: fails for root too.
    let working_dir = dir.path().join("not-a-folder");
    std::fs::write(&working_dir, "x").unwrap();
    let err = direct(&working_dir).insert(&doc("m.txt", "t")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(err.message.contains(&working_dir.join("inputs").display().to_string()), "{}", err.message);

    // The input folder itself is a file.
    let working_dir = dir.path().join("w");
    std::fs::create_dir(&working_dir).unwrap();
    std::fs::write(working_dir.join("inputs"), "x").unwrap();
    let err = direct(&working_dir).replace(&doc("m.txt", "t")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(err.message.contains("is not a folder"), "{}", err.message);
}

#[tokio::test]
async fn direct_removes_stale_temp_files_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let stale = inputs.join(".m.txt.tmp-00000000deadbeef");
    let fresh = inputs.join(".n.txt.tmp-00000000cafebabe");
    std::fs::write(&stale, "half").unwrap();
    std::fs::write(&fresh, "being written").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
    std::fs::write(inputs.join("keep.txt"), "a document").unwrap();

    direct(dir.path()).insert(&doc("m.txt", "whole")).await.unwrap();
    assert_eq!(names_in(&inputs), vec![".n.txt.tmp-00000000cafebabe", "keep.txt", "m.txt"]);
}

#[tokio::test]
async fn direct_refuses_a_name_that_is_no_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = direct(dir.path()).insert(&doc("a/..", "t")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Rejected);
}

// ----------------------------------------------------------------- simulator

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sim_file_source_rules() {
    let sim = sim(LightragSimOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/documents/text", sim.url());

    for body in
        [json!({ "text": "t" }), json!({ "text": "t", "file_source": null }), json!({ "text": "t", "file_source": "" })]
    {
        let (status, answer) = post(&client, url.clone(), body).await;
        assert_eq!(status, 400);
        assert_eq!(answer["detail"], "A valid file_source is required for text insertion");
    }
    let (status, _) = post(&client, url.clone(), json!({ "text": "t", "file_source": "a\nb.txt" })).await;
    assert_eq!(status, 422);
    let (status, _) = post(&client, url.clone(), json!({ "text": "", "file_source": "e.txt" })).await;
    assert_eq!(status, 422);
    let (status, _) = post(&client, url.clone(), json!({ "file_source": "e.txt" })).await;
    assert_eq!(status, 422);

    let (status, _) = post(&client, url.clone(), json!({ "text": "t", "file_source": "memories/2024/m1.txt" })).await;
    assert_eq!(status, 200);
    let (status, answer) =
        post(&client, url.clone(), json!({ "text": "other", "file_source": "elsewhere/m1.txt" })).await;
    assert_eq!(status, 409);
    assert_eq!(
        answer["detail"],
        "Document storage already contains 'm1.txt' (Status: processed). Delete the existing record before re-inserting."
    );
    let (status, _) = post(&client, url, json!({ "text": "colons", "file_source": "memory:CTX1:42" })).await;
    assert_eq!(status, 200);
    assert!(sim.document_named("memory:CTX1:42").is_some());

    let status = client.get(format!("{}/documents", sim.url())).send().await.unwrap().status();
    assert_eq!(status, 405);
}

#[tokio::test]
async fn sim_batch_is_all_or_nothing() {
    let sim = sim(LightragSimOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/documents/texts", sim.url());
    post(&client, format!("{}/documents/text", sim.url()), json!({ "text": "a", "file_source": "a.txt" })).await;

    let (status, answer) =
        post(&client, url.clone(), json!({ "texts": ["b", "a2"], "file_sources": ["b.txt", "x/a.txt"] })).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("'a.txt'"));
    assert!(sim.document_named("b.txt").is_none(), "nothing of a refused batch is stored");

    let (status, _) = post(&client, url.clone(), json!({ "texts": ["b", "c"], "file_sources": ["b.txt"] })).await;
    assert_eq!(status, 400);
    let (status, _) =
        post(&client, url.clone(), json!({ "texts": ["b", "c"], "file_sources": ["x/b.txt", "y/b.txt"] })).await;
    assert_eq!(status, 400);
    let (status, _) = post(&client, url.clone(), json!({ "texts": ["b", "c"] })).await;
    assert_eq!(status, 400);

    let (status, answer) = post(&client, url, json!({ "texts": ["b", "c"], "file_sources": ["b.txt", "c.txt"] })).await;
    assert_eq!(status, 200);
    let track_id = answer["track_id"].as_str().unwrap();
    let tracked: Value = client
        .get(format!("{}/documents/track_status/{track_id}", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tracked["total_count"], 2);
    assert_eq!(tracked["status_summary"]["DocStatus.PROCESSED"], 2);
}

#[tokio::test]
async fn sim_paginated_validates_and_filters() {
    let sim = sim(LightragSimOptions::default()).await;
    sim.fail_texts_containing("BOOM");
    let sink = sink(&sim);
    for i in 0..12 {
        let text = if i % 4 == 0 { format!("text {i} BOOM") } else { format!("text {i}") };
        sink.insert(&doc(&format!("m{i:02}.txt"), &text)).await.unwrap();
    }
    let client = reqwest::Client::new();
    let url = format!("{}/documents/paginated", sim.url());

    let (status, answer) = post(&client, url.clone(), json!({ "page": 1, "page_size": 5 })).await;
    assert_eq!(status, 422);
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "page_size"]));
    let (status, _) = post(&client, url.clone(), json!({ "page_size": 201 })).await;
    assert_eq!(status, 422);
    let (status, _) = post(&client, url.clone(), json!({ "status_filters": ["FINISHED"] })).await;
    assert_eq!(status, 422);

    let (status, answer) = post(
        &client,
        url.clone(),
        json!({ "status_filters": ["failed"], "page": 1, "page_size": 10, "sort_field": "file_path", "sort_direction": "asc" }),
    )
    .await;
    assert_eq!(status, 200);
    let paths: Vec<&str> =
        answer["documents"].as_array().unwrap().iter().map(|d| d["file_path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["m00.txt", "m04.txt", "m08.txt"]);
    assert!(answer["documents"][0]["error_msg"].as_str().unwrap().contains("BOOM"));
    assert_eq!(answer["status_counts"]["failed"], 3);
    assert_eq!(answer["status_counts"]["processed"], 9);
    assert_eq!(answer["status_counts"]["all"], 12);

    let (_, page2) = post(&client, url, json!({ "page": 2, "page_size": 10 })).await;
    assert_eq!(page2["documents"].as_array().unwrap().len(), 2);
    assert_eq!(page2["pagination"]["total_pages"], 2);
    assert_eq!(page2["pagination"]["has_prev"], true);

    // A failed document keeps its name: posting it again is a 409.
    let again = sink.insert(&doc("m00.txt", "fixed")).await.unwrap();
    assert_eq!(again, InsertOutcome::AlreadyStored { status: Some("failed".into()) });
}

#[tokio::test]
async fn sim_processing_takes_time_and_blocks_deletes() {
    let sim = sim(LightragSimOptions { process_delay: Duration::from_millis(150), ..Default::default() }).await;
    let sink = sink(&sim).with_replace_wait(Duration::from_millis(20));
    sink.insert(&doc("m.txt", "text")).await.unwrap();
    assert_eq!(sim.documents()[0].status, SimDocStatus::Processing);
    let client = reqwest::Client::new();
    let pipeline: Value =
        client.get(format!("{}/documents/pipeline_status", sim.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(pipeline["busy"], true);
    let outcome = sink.replace(&doc("m.txt", "new")).await;
    assert!(matches!(outcome, Ok(ReplaceOutcome::Deferred { .. })), "{outcome:?}");

    wait_until("the document processed", Duration::from_secs(30), || async {
        sim.documents()[0].status == SimDocStatus::Processed
    })
    .await;
    assert!(matches!(sink.replace(&doc("m.txt", "new")).await.unwrap(), ReplaceOutcome::Replaced { .. }));
}

#[tokio::test]
async fn sim_auth_and_open_routes() {
    let sim = sim(LightragSimOptions { api_key: Some(KEY.into()), ..Default::default() }).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/health", sim.url())).send().await.unwrap().status(), 200);
    let status = client
        .get(format!("{}/documents/status_counts", sim.url()))
        .header("Authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let auth: Value = client.get(format!("{}/auth-status", sim.url())).send().await.unwrap().json().await.unwrap();
    let token = auth["access_token"].as_str().unwrap();
    let counts = client
        .get(format!("{}/documents/status_counts", sim.url()))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(counts.status(), 200, "the guest token works while no accounts are configured");
    let listing = client.get(format!("{}/documents", sim.url())).send().await.unwrap().status();
    assert_eq!(listing, 405, "FastAPI answers a missing method before it authenticates");
    let unknown =
        client.get(format!("{}/health", sim.url())).header("LIGHTRAG-WORKSPACE", "nope").send().await.unwrap();
    assert_eq!(unknown.status(), 500);
}

#[tokio::test]
async fn sim_control_routes_steer_it_over_http() {
    let sim = sim(LightragSimOptions::default()).await;
    let client = reqwest::Client::new();
    let control = |path: &str| format!("{}/_control/{path}", sim.url());
    let fault = SimFault::new(SimRoute::Insert, 503).times(1);
    assert_eq!(client.post(control("faults")).json(&fault).send().await.unwrap().status(), 200);
    assert_eq!(client.post(control("busy")).json(&json!({ "busy": true })).send().await.unwrap().status(), 200);
    client.post(control("fail_texts")).json(&json!({ "marker": "BAD" })).send().await.unwrap();

    // A short replace wait: a busy pipeline is waited out only that long.
    let sink = sink(&sim).with_replace_wait(Duration::from_millis(50));
    sink.insert(&doc("m.txt", "BAD text")).await.unwrap();
    assert!(matches!(sink.replace(&doc("m.txt", "x")).await.unwrap(), ReplaceOutcome::Deferred { .. }));

    let docs: Value = client.get(control("documents")).send().await.unwrap().json().await.unwrap();
    assert_eq!(docs[0]["status"], "failed");
    assert_eq!(docs[0]["file_path"], "m.txt");
    let stats: Value = client.get(control("stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["requests"]["insert"], 2);
    assert!(stats["requests"]["delete"].as_u64().is_some_and(|n| n >= 1), "{stats}");

    // Slow enqueueing for names with a marker: accepted, pending, not listed yet.
    let slow = json!({ "marker": "held", "seconds": 30 });
    assert_eq!(client.post(control("slow_enqueue")).json(&slow).send().await.unwrap().status(), 200);
    sink.insert(&doc("held.txt", "later")).await.unwrap();
    assert_eq!(sink.pipeline().await.unwrap().and_then(|p| p.pending_enqueues), Some(1));
    assert!(sim.document_named("held.txt").is_none());
}

#[tokio::test]
async fn sim_takes_many_concurrent_inserts_quickly() {
    let sim = sim(LightragSimOptions { latency: Duration::from_millis(2), ..Default::default() }).await;
    let sink = std::sync::Arc::new(sink(&sim));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let sink = sink.clone();
        tasks.spawn(async move {
            for i in 0..125 {
                let name = format!("memory_W{worker}_{i}.txt");
                let outcome = sink.insert(&doc(&name, &format!("memory {worker}/{i}"))).await.unwrap();
                assert!(matches!(outcome, InsertOutcome::Accepted { .. }));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(sim.documents().len(), 2000);
    assert!(sim.max_in_flight() > 1, "requests overlapped");
    assert!(sim.max_in_flight() <= 16);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test]
async fn sim_binary_listens_and_reports_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lightrag-sim"))
        .args(["--host", "127.0.0.1", "--port", "0", "--api-key", KEY, "--port-file"])
        .arg(&port_file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            break text.trim().parse::<u16>().unwrap();
        }
        assert!(Instant::now() < deadline, "no port file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let health: Value = client.get(format!("{url}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["core_version"], "1.5.7");
    let status = client.get(format!("{url}/documents/status_counts")).send().await.unwrap().status();
    assert_eq!(status, 403);
    child.kill().await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("lightrag-sim listening on {url}")), "{stdout}");
}

/// Issue 15, item 5: LightRAG's answers were read without a limit; an
/// endless one now fails the request (not retried: it is no LightRAG).
#[tokio::test]
async fn an_endless_answer_is_cut_at_the_limit_and_named() {
    let server = sims::hostile_http::EndlessServer::json().await.unwrap();
    let config = LightragApiConfig { url: server.url(), timeout: 30, ..LightragApiConfig::default() };
    let sink = ApiSink::new(&config).unwrap().with_first_retry_delay(Duration::from_millis(5));
    let sink = sink.with_max_answer_bytes(1024 * 1024);
    let err = sink.insert(&doc("m.txt", "text")).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal, "{}", err.message);
    assert!(err.message.contains("larger than the limit of 1048576 bytes"), "{}", err.message);
    assert!(err.message.contains(&format!("POST {}/documents/text", server.url())), "{}", err.message);
    assert!(server.bytes_sent() < 64 * 1024 * 1024, "kept reading: {} bytes", server.bytes_sent());
}
