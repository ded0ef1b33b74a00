//! The limit: a client with no connector logic that replays exactly the
//! HTTP requests of a connector run: LightRAG's `GET /health` (the
//! connector's preflight), the same Memory API list request, then the same
//! insert requests (`POST /documents/text` per item, or `POST
//! /documents/texts` per batch), pre-serialised and read from a file, with
//! the same sliding window of `concurrency` requests in flight, and the
//! list of failed documents the connector reads at the end of a run, on the same
//! kind of pooled reqwest clients (one per service, built as the connector
//! builds them) and the same multi-thread runtime. It reads answers fully
//! and decides nothing. Run as its own process (`bench replay`), so it pays
//! the same process start-up as the connector; the time it spends loading
//! the requests file is reported and subtracted.
//!
//! The requests file is written by the bench with [`plan`], which derives
//! the connector's requests from the rendered documents (the engine's
//! grouping rules); the bench then checks on the LightRAG simulator that the
//! connector and the replay sent the same requests per route, stored the
//! same documents and had the same most requests in flight.

use anyhow::{Context as _, bail};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// LightRAG's single insert.
pub const INSERT_PATH: &str = "/documents/text";
/// LightRAG's batch insert.
pub const INSERT_BATCH_PATH: &str = "/documents/texts";

/// What `bench replay` needs.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    /// Full list URL (`.../memory/CTX?limit=..&range=..`).
    pub list_url: String,
    pub memory_key: String,
    /// LightRAG base URL.
    pub lightrag_url: String,
    pub concurrency: usize,
    /// One request per line: `PATH<TAB>JSON body` (see [`plan`]).
    pub requests: std::path::PathBuf,
}

/// One document as the connector sends it.
#[derive(Debug, Clone)]
pub struct PlannedDoc {
    pub text: String,
    pub file_source: String,
}

/// The insert requests of a first sync, in the engine's order, and how many
/// of them are in flight at once. Mirrors `sync::deliver::tasks` and
/// `ApiSink::insert_batch`: per item, `batch_size` single inserts in flight;
/// batched (and `batch_size` > 1), one task of `batch_size` documents fills
/// the window, and it is sent as groups bounded by `max_batch_bytes`
/// (text + file_source + 16 bytes per document), one after the other; a
/// group of one goes to the single-insert route.
pub fn plan(
    docs: &[PlannedDoc],
    batch_size: usize,
    batched: bool,
    max_batch_bytes: usize,
) -> (Vec<(&'static str, Vec<u8>)>, usize) {
    let batch_size = batch_size.max(1);
    let single = |doc: &PlannedDoc| {
        let body = json!({ "text": doc.text, "file_source": doc.file_source });
        (INSERT_PATH, body.to_string().into_bytes())
    };
    if !batched || batch_size == 1 {
        return (docs.iter().map(single).collect(), batch_size);
    }
    let mut requests = Vec::new();
    for task in docs.chunks(batch_size) {
        let mut groups: Vec<Vec<&PlannedDoc>> = Vec::new();
        let mut bytes = 0usize;
        for doc in task {
            let size = doc.text.len() + doc.file_source.len() + 16;
            match groups.last_mut() {
                Some(group) if bytes + size <= max_batch_bytes => group.push(doc),
                _ => {
                    groups.push(vec![doc]);
                    bytes = 0;
                }
            }
            bytes += size;
        }
        for group in groups {
            if let [doc] = group.as_slice() {
                requests.push(single(doc));
                continue;
            }
            let body = json!({
                "texts": group.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
                "file_sources": group.iter().map(|d| d.file_source.as_str()).collect::<Vec<_>>(),
            });
            requests.push((INSERT_BATCH_PATH, body.to_string().into_bytes()));
        }
    }
    // One batch task takes the whole window: one request at a time.
    (requests, 1)
}

/// Writes a plan as the requests file of `bench replay`.
pub fn write_requests(path: &Path, requests: &[(&str, Vec<u8>)]) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(requests.iter().map(|(_, b)| b.len() + 20).sum());
    for (path, body) in requests {
        out.extend_from_slice(path.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(body);
        out.push(b'\n');
    }
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

/// The `replay` subcommand; prints `{"load_s": .., "requests": ..}`.
pub fn replay_main(args: &ReplayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(replay(args))
}

/// A reqwest client built as the connector builds its own (no trust store
/// for plain http: loading it costs the connector nothing, so it must cost
/// the limit nothing either).
fn client(
    url: &str,
    headers: reqwest::header::HeaderMap,
    connect_timeout: Option<Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .user_agent("memory-connector/0.1.0");
    if let Some(timeout) = connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if url.starts_with("http://") {
        builder = builder.tls_certs_only(std::iter::empty::<reqwest::Certificate>());
    }
    Ok(builder.build()?)
}

async fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let load_started = Instant::now();
    let requests = load_requests(&args.requests)?;
    let load_s = load_started.elapsed().as_secs_f64();

    let base = args.lightrag_url.trim_end_matches('/').to_owned();
    let lightrag = client(&base, reqwest::header::HeaderMap::new(), Some(Duration::from_secs(10)))?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_str(&args.memory_key)?);
    let memory = client(&args.list_url, headers, None)?;

    // The connector's preflight, then its fetch, one after the other.
    let health = lightrag.get(format!("{base}/health")).send().await?;
    if !health.status().is_success() {
        bail!("health answered {}", health.status());
    }
    let _ = health.bytes().await?;
    let page = memory.get(&args.list_url).send().await?;
    if !page.status().is_success() {
        bail!("list answered {}", page.status());
    }
    let _ = page.bytes().await?;

    let mut pending = requests.into_iter();
    let mut in_flight = JoinSet::new();
    let mut sent = 0usize;
    let base: Arc<str> = base.into();
    loop {
        while in_flight.len() < args.concurrency.max(1) {
            let Some((path, body)) = pending.next() else {
                break;
            };
            let (client, base) = (lightrag.clone(), Arc::clone(&base));
            in_flight.spawn(async move {
                let answer = client
                    .post(format!("{base}{path}"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = answer.status();
                let _ = answer.bytes().await?;
                anyhow::Ok(status)
            });
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let status = joined??;
        if !status.is_success() {
            bail!("insert answered {status}");
        }
        sent += 1;
    }
    // The connector's end-of-run look for `dup-` records of its names.
    let failed = json!({
        "status_filters": ["failed"], "page": 1, "page_size": 200, "sort_field": "created_at", "sort_direction": "desc",
    });
    let listed = lightrag
        .post(format!("{base}/documents/paginated"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(failed.to_string())
        .send()
        .await?;
    if !listed.status().is_success() {
        bail!("the failed-documents list answered {}", listed.status());
    }
    let _ = listed.bytes().await?;
    println!("{}", serde_json::json!({ "load_s": load_s, "requests": sent }));
    Ok(())
}

fn load_requests(path: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    text.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let tab = line.iter().position(|b| *b == b'\t').context("a request line without a tab")?;
            let path = std::str::from_utf8(&line[..tab])?.to_owned();
            Ok((path, line[tab + 1..].to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize, text_len: usize) -> Vec<PlannedDoc> {
        (0..n).map(|i| PlannedDoc { text: "x".repeat(text_len), file_source: format!("m{i}.txt") }).collect()
    }

    #[test]
    fn per_item_is_one_single_insert_per_document_with_a_window_of_batch_size() {
        let (requests, window) = plan(&docs(25, 10), 10, false, 1 << 20);
        assert_eq!(window, 10);
        assert_eq!(requests.len(), 25);
        assert!(requests.iter().all(|(p, _)| *p == INSERT_PATH));
        assert_eq!(requests[0].1, br#"{"file_source":"m0.txt","text":"xxxxxxxxxx"}"#.to_vec());
    }

    #[test]
    fn batched_sends_one_request_per_batch_one_at_a_time() {
        let (requests, window) = plan(&docs(25, 10), 10, true, 1 << 20);
        assert_eq!(window, 1);
        let paths: Vec<&str> = requests.iter().map(|(p, _)| *p).collect();
        assert_eq!(paths, [INSERT_BATCH_PATH; 3]);
        let last: serde_json::Value = serde_json::from_slice(&requests[2].1).unwrap();
        assert_eq!(last["texts"].as_array().unwrap().len(), 5);
        assert_eq!(last["file_sources"][0], "m20.txt");
        // batch_size 1 batches nothing.
        let (one, window) = plan(&docs(3, 10), 1, true, 1 << 20);
        assert_eq!((one.len(), window), (3, 1));
        assert!(one.iter().all(|(p, _)| *p == INSERT_PATH));
    }

    #[test]
    fn batches_are_split_by_the_byte_budget_and_a_group_of_one_is_a_single_insert() {
        // Each document costs 100 + 6 + 16 = 122 bytes: two fit in 250.
        let (requests, _) = plan(&docs(5, 100), 5, true, 250);
        let paths: Vec<&str> = requests.iter().map(|(p, _)| *p).collect();
        assert_eq!(paths, [INSERT_BATCH_PATH, INSERT_BATCH_PATH, INSERT_PATH]);
    }

    #[test]
    fn the_requests_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.tsv");
        let (requests, _) = plan(&docs(3, 4), 2, true, 1 << 20);
        write_requests(&path, &requests).unwrap();
        let loaded = load_requests(&path).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].0, INSERT_BATCH_PATH);
        assert_eq!(loaded[1].0, INSERT_PATH);
        assert_eq!(loaded[0].1, requests[0].1);
    }
}
