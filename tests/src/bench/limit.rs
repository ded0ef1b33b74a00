//! The limit: a client with no connector logic that replays exactly the
//! HTTP requests of a connector run: the same Memory API list request, then
//! the same `POST /documents/text` bodies (pre-serialised, read from a file),
//! with the same sliding window of `concurrency` requests in flight, on the
//! same kind of pooled reqwest clients (one per service, as the connector)
//! and the same multi-thread runtime. It reads answers fully and decides
//! nothing. Run as its own process (`bench replay`), so it pays the same
//! process start-up as the connector; the time it spends loading the bodies
//! file is reported and subtracted.

use anyhow::{Context as _, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What `bench replay` needs.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    /// Full list URL (`.../memory/CTX?limit=..&range=..`).
    pub list_url: String,
    pub memory_key: String,
    /// LightRAG base URL.
    pub lightrag_url: String,
    pub concurrency: usize,
    /// One JSON body per line.
    pub bodies: std::path::PathBuf,
}

/// The `replay` subcommand; prints `{"load_s": .., "inserts": ..}`.
pub fn replay_main(args: &ReplayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(replay(args))
}

async fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let load_started = Instant::now();
    let bodies = load_bodies(&args.bodies)?;
    let load_s = load_started.elapsed().as_secs_f64();

    let timeout = Duration::from_secs(30);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-api-key",
        reqwest::header::HeaderValue::from_str(&args.memory_key)?,
    );
    let memory = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .user_agent("memory-connector/0.1.0")
        .build()?;
    let page = memory.get(&args.list_url).send().await?;
    if !page.status().is_success() {
        bail!("list answered {}", page.status());
    }
    let _ = page.bytes().await?;

    let lightrag = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent("memory-connector/0.1.0")
        .build()?;
    let url: Arc<str> =
        format!("{}/documents/text", args.lightrag_url.trim_end_matches('/')).into();
    let mut pending = bodies.into_iter();
    let mut in_flight = JoinSet::new();
    let mut inserts = 0usize;
    loop {
        while in_flight.len() < args.concurrency.max(1) {
            let Some(body) = pending.next() else { break };
            let (client, url) = (lightrag.clone(), Arc::clone(&url));
            in_flight.spawn(async move {
                let answer = client
                    .post(&*url)
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
        inserts += 1;
    }
    println!(
        "{}",
        serde_json::json!({ "load_s": load_s, "inserts": inserts })
    );
    Ok(())
}

fn load_bodies(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
