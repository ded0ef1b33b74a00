//! The CPU breakdown of one memory: each stage of a first sync run
//! in-process, single-threaded, on the very data of the end-to-end run, and
//! timed by the process's own user+system CPU (`getrusage(RUSAGE_SELF)`;
//! the simulators in this process are idle meanwhile).

use chrono::Utc;
use connector_core::config::ConnectorConfig;
use connector_core::ids::{ConnectorId, ContentHash, MemoryId, RunId};
use connector_core::memory_api::model::Memory;
use connector_core::memory_api::parse_page;
use connector_core::state::{Checkpoint, EntryStatus, LedgerEntry, RunCounts, RunRecord, RunStatus, StateStore};
use connector_core::sync::plan;
use connector_core::transform::{Rendered, content_hash, render};
use std::sync::Arc;

/// CPU seconds (user + system) this process has used so far.
pub fn self_cpu_s() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            s(usage.user_time()) + s(usage.system_time())
        }
        Err(_) => 0.0,
    }
}

/// Microseconds of CPU per memory of each stage.
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    pub stages: Vec<(&'static str, f64)>,
}

/// Repeats `f` (one pass over `items` memories) until it has used at least
/// 0.3 s of CPU, and returns µs per memory.
fn per_memory(items: usize, mut f: impl FnMut()) -> f64 {
    let started = self_cpu_s();
    let mut passes = 0u32;
    loop {
        f();
        passes += 1;
        let used = self_cpu_s() - started;
        if used >= 0.3 || passes >= 200 {
            return used / (passes as f64 * items.max(1) as f64) * 1e6;
        }
    }
}

async fn per_memory_async<F, Fut>(items: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = self_cpu_s();
    let mut passes = 0u32;
    loop {
        f().await;
        passes += 1;
        let used = self_cpu_s() - started;
        if used >= 0.3 || passes >= 50 {
            return used / (passes as f64 * items.max(1) as f64) * 1e6;
        }
    }
}

fn entry(id: &MemoryId, file_source: &str, hash: &ContentHash) -> LedgerEntry {
    let now = Utc::now();
    LedgerEntry {
        memory_id: id.clone(),
        status: EntryStatus::Submitted,
        content_hash: Some(hash.clone()),
        pending_hash: None,
        file_source: file_source.to_owned(),
        doc_id: Some(connector_core::lightrag::doc_id(file_source)),
        track_id: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        first_seen: now,
        last_ingested: Some(now),
        provenance: None,
    }
}

/// Measures each stage on `body` (the Memory API answer of the run).
pub async fn breakdown(
    body: &[u8],
    connector: &ConnectorConfig,
    scratch: &std::path::Path,
) -> anyhow::Result<Breakdown> {
    let limit = connector.ingestion.query_limit;
    let page = parse_page(body, limit).map_err(anyhow::Error::msg)?;
    let memories: Vec<Memory> = page.memories;
    let n = memories.len();
    let ctx = connector.context_id.as_str();
    let skip = connector.ingestion.skip_empty_transcripts;
    let now = Utc::now();
    let mut out = Breakdown::default();

    out.stages.push((
        "fetch parse (JSON -> memories)",
        per_memory(n, || {
            std::hint::black_box(parse_page(body, limit).ok());
        }),
    ));

    let documents: Vec<_> = memories
        .iter()
        .filter_map(|m| match render(ctx, m, &connector.transformation, skip, None) {
            Rendered::Document(doc) => Some(doc),
            Rendered::WaitingForTranscript => None,
        })
        .collect();
    let render_us = per_memory(n, || {
        for m in &memories {
            std::hint::black_box(render(ctx, m, &connector.transformation, skip, None));
        }
    });
    let hash_us = per_memory(n, || {
        for d in &documents {
            std::hint::black_box(content_hash(&d.text));
        }
    });
    let plan_us = per_memory(n, || {
        for m in &memories {
            std::hint::black_box(plan(connector, m, None, false, now));
        }
    });
    out.stages.push(("plan (decision, without transform)", (plan_us - render_us).max(0.0)));
    out.stages.push(("transform (text, file_source)", (render_us - hash_us).max(0.0)));
    out.stages.push(("hash (SHA-256 of the text)", hash_us));
    out.stages.push((
        "insert body JSON",
        per_memory(n, || {
            for d in &documents {
                std::hint::black_box(
                    serde_json::to_vec(&serde_json::json!({ "text": d.text, "file_source": d.file_source })).ok(),
                );
            }
        }),
    ));

    // The state: a SQLite ledger, looked up once per run and checkpointed
    // every `batch_size` deliveries with the run record, as the engine does.
    let connector_id = ConnectorId::new(connector.id.as_str());
    let ids: Vec<MemoryId> = memories.iter().map(|m| m.id.clone()).collect();
    // The engine's cadence: one checkpoint per `batch_size` deliveries, in
    // the engine's order (it plans memories sorted by id, so a batch's
    // entries sit next to each other in the ledger's indexes).
    let batch = connector.ingestion.batch_size.max(1) as usize;
    let mut documents = documents;
    documents.sort_by(|a, b| a.file_source.cmp(&b.file_source));
    let mut pass = 0u32;
    let lookup_store: Arc<dyn StateStore> =
        Arc::new(connector_core::state::sqlite::SqliteStore::open(&scratch.join("stages-lookup.sqlite")).await?);
    out.stages.push((
        "ledger lookup (first run, SQLite)",
        per_memory_async(n, || {
            let (store, ids, connector_id) = (lookup_store.clone(), &ids, &connector_id);
            async move {
                std::hint::black_box(store.entries(connector_id, ids).await.ok());
            }
        })
        .await,
    ));
    let checkpoint_us = per_memory_async(n, || {
        pass += 1;
        let path = scratch.join(format!("stages-{pass}.sqlite"));
        let (documents, connector_id) = (&documents, &connector_id);
        async move {
            let Ok(store) = connector_core::state::sqlite::SqliteStore::open(&path).await else {
                return;
            };
            let run_id = RunId::generate(Utc::now());
            for chunk in documents.chunks(batch) {
                let entries = chunk
                    .iter()
                    .map(|d| entry(&MemoryId::new(d.file_source.clone()), &d.file_source, &d.hash))
                    .collect();
                let run = RunRecord {
                    run_id: run_id.clone(),
                    connector_id: connector_id.clone(),
                    trigger: connector_core::state::Trigger::Cli,
                    started_at: Utc::now(),
                    finished_at: None,
                    status: RunStatus::Running,
                    counts: RunCounts::default(),
                    possibly_truncated: false,
                    error: None,
                };
                let checkpoint = Checkpoint { entries, run: Some(run), ..Checkpoint::default() };
                let _ = store.checkpoint(connector_id, checkpoint).await;
            }
            drop(store);
            let _ = std::fs::remove_file(&path);
        }
    })
    .await;
    out.stages.push(("state checkpoint (SQLite, engine cadence)", checkpoint_us));
    Ok(out)
}
