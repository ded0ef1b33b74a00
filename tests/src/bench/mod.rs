//! `make bench`: the connector's own cost, measured side by side with a
//! minimal client that does the same HTTP and nothing else (the limit), on
//! loopback simulators that answer without delay. Figures are ratios and
//! per-memory costs measured in one run; absolute times are only reported.
//!
//! The driver is `bench` (`tests/src/bin/bench.rs`); each figure of issue 6
//! is one function here, so a figure that cannot be measured yet (the
//! Lambda bootstrap) is one function to fill in.

mod api_latency;
pub mod child;
pub mod cost;
mod cost_fig;
pub mod lambda;
pub mod limit;
pub mod load;
mod noop;
pub mod report;
mod schedules;
mod slow_sink;
pub mod stages;
mod startup;
mod throughput;

use noop::seed_ledger;
use throughput::Throughput;

use crate::harness::{ConfigSpec, Workspace};
use crate::lightrag_sim::{LightragSim, LightragSimOptions, SimRoute};
use crate::memory_sim::{MemorySim, MemorySimOptions};
use anyhow::{Context as _, bail};
use child::{Finished, Measured, file_size, run_measured};
use connector_core::config::{Config, Environment};
use connector_core::ids::{ConnectorId, ContentHash, MemoryId};
use connector_core::state::{Checkpoint, EntryStatus, LedgerEntry, StateStore};
use connector_core::sync::{RunOptions, SyncEngine};
use connector_core::transform::{Rendered, render};
use report::{Report, Row, fmt_num};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMORY_KEY: &str = "bench-memory-key";
const CTX: &str = "CTX123";
const CONNECTOR: &str = "personal-memories";
/// The management API key of figure 6 (`api.enable_auth: true`).
const API_KEY: &str = "bench-api-key";
/// The Memory API's largest page (`ingestion.query_limit` ≤ 10,000).
const MAX_PAGE: usize = 10_000;

/// How big and how often.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Memories of the end-to-end workloads (figures 1, 2, 4, 8).
    pub n: usize,
    /// A quick run that only proves the driver works (figures are reported,
    /// targets are not meaningful).
    pub smoke: bool,
    /// Repetitions of each timed run (the fastest counts: the machine is shared).
    pub reps: usize,
    pub connector_bin: PathBuf,
    /// The Lambda `sync` bootstrap (figure 5b), when it was built.
    pub lambda_bootstrap: Option<PathBuf>,
    pub bench_exe: PathBuf,
    /// Cargo profile the binaries were built with (reported).
    pub profile: String,
    /// Only these figures (`--only 5,9`); empty: all.
    pub only: Vec<u32>,
}

impl BenchOptions {
    fn wants(&self, figure: u32) -> bool {
        self.only.is_empty() || self.only.contains(&figure)
    }
}

impl BenchOptions {
    /// Ledger sizes of the no-op figure, SQLite then JSON.
    fn ledger_sizes(&self) -> (Vec<usize>, Vec<usize>) {
        if self.smoke {
            (vec![1_000, 5_000], vec![1_000, 5_000])
        } else {
            (vec![10_000, 100_000, 1_000_000], vec![10_000, 30_000, 100_000])
        }
    }

    fn noop_fetched(&self) -> usize {
        if self.smoke { 100 } else { 1_000 }
    }

    /// Figure 6: (requests per second, seconds, ledger rows).
    fn status_load(&self) -> (f64, f64, usize) {
        if self.smoke { (200.0, 1.0, 1_000) } else { (1_000.0, 10.0, 10_000) }
    }

    fn slow_sink_n(&self) -> usize {
        if self.smoke { 100 } else { 2_000.min(self.n.max(100)) }
    }
}

/// The bench's state while it runs.
struct Bench {
    opts: BenchOptions,
    scratch: tempfile::TempDir,
    rows: Vec<Row>,
}

/// One connector configuration written to a fresh workspace.
struct Setup<'a> {
    memory_url: &'a str,
    lightrag_url: &'a str,
    backend: &'static str,
    batch_size: usize,
    query_limit: usize,
    /// `lightrag.api.batch_inserts` (`POST /documents/texts`).
    batch_inserts: bool,
}

impl Setup<'_> {
    fn workspace(&self) -> Workspace {
        let mut spec = ConfigSpec::new(self.memory_url, self.lightrag_url);
        spec.backend = self.backend;
        spec.state_path = if self.backend == "sqlite" { "state.sqlite".into() } else { "state.json".into() };
        spec.batch_size = self.batch_size as u32;
        spec.query_limit = self.query_limit as u32;
        spec.memory_timeout = 30;
        spec.batch_inserts = self.batch_inserts;
        // No end-of-run confirmation paging: figure 1 measures the delivery
        // (the next run confirms what this one submitted).
        spec.confirm_wait_seconds = 0;
        // What users run: INFO, not the per-memory DEBUG lines of the tests.
        let yaml = spec.render().replace("level: DEBUG", "level: INFO").replace("timeout: 5\n", "timeout: 30\n");
        let mut ws = Workspace::new();
        ws.write_config(&yaml);
        ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
        ws
    }
}

fn load_config(ws: &Workspace) -> anyhow::Result<Config> {
    let env = Environment::from_map([("MEMORY_API_KEY".to_owned(), MEMORY_KEY.to_owned())]);
    connector_core::config::load_with_env(&ws.config_path(), &env).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `memory-connector sync` of the bench's binary, as [`Workspace::command`] runs it.
fn sync_command(bin: &Path, ws: &Workspace) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["sync", "--connector-id", CONNECTOR, "--json", "--config"])
        .arg(ws.config_path())
        .current_dir(ws.path())
        .env_remove("CONFIG_PATH")
        .env_remove("LOG_LEVEL")
        .env_remove("LOG_FORMAT")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (key, value) in &ws.env {
        cmd.env(key, value);
    }
    cmd
}

fn counts(finished: &Finished) -> anyhow::Result<(u64, u64)> {
    let report = finished.json()?;
    let count = |key: &str| report.pointer(&format!("/counts/{key}")).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok((count("new"), count("unchanged")))
}

fn min_by(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(f64::INFINITY, f64::min)
}

async fn memory_sim(count: usize) -> anyhow::Result<MemorySim> {
    let sim = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        contexts: vec![(CTX.into(), count)],
        ..Default::default()
    })
    .await?;
    // Every memory has a transcript: all of them are new documents.
    sim.fill_transcripts(CTX, None);
    Ok(sim)
}

async fn list_body(memory_url: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
    let url = format!("{memory_url}/memory/{CTX}?limit={limit}&range=all");
    let answer = reqwest::Client::new().get(&url).header("x-api-key", MEMORY_KEY).send().await?;
    Ok(answer.bytes().await?.to_vec())
}

/// Runs every figure; never fails on a missed target (the rows say so).
pub async fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let n = opts.n.clamp(1, MAX_PAGE);
    let mut bench = Bench { opts: BenchOptions { n, ..opts }, scratch: tempfile::tempdir()?, rows: Vec::new() };
    // Figures 1, 2, 3 (JSON first sync), 4 and 8 share figure 1's runs.
    let throughput = if [1, 2, 3, 4, 8].iter().any(|f| bench.opts.wants(*f)) {
        let throughput = bench.throughput().await.context("figure 1 (throughput)")?;
        bench.cpu_breakdown(&throughput).await.context("figure 2 (CPU breakdown)")?;
        Some(throughput)
    } else {
        None
    };
    if bench.opts.wants(3) {
        bench.noop_at_scale().await.context("figure 3 (no-op at scale)")?;
    }
    if let Some(throughput) = throughput.as_ref().filter(|_| bench.opts.wants(3)) {
        bench.json_first_sync(throughput).await.context("figure 3 (JSON first sync)")?;
    }
    if bench.opts.wants(5) {
        bench.startup().await.context("figure 5 (start-up)")?;
    }
    if bench.opts.wants(6) {
        bench.management_api_latency().await.context("figure 6 (management API latency)")?;
    }
    if bench.opts.wants(7) {
        bench.slow_sink().await.context("figure 7 (slow sink)")?;
    }
    if let Some(throughput) = &throughput {
        bench.cost_model(throughput).await.context("figure 8 (cost model)")?;
    }
    if bench.opts.wants(9) {
        bench.schedules_at_scale().await.context("figure 9 (10,000 connectors: config, schedules apply)")?;
    }
    Ok(Report {
        created_at: chrono::Utc::now().to_rfc3339(),
        n: bench.opts.n,
        smoke: bench.opts.smoke,
        profile: bench.opts.profile.clone(),
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            std::env::consts::ARCH
        ),
        rows: bench.rows,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// How figure 1's connector sends its documents.
impl Bench {
    fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// One measured `memory-connector sync` of `ws`; fails when it fails.
    async fn sync(&self, ws: &Workspace) -> anyhow::Result<Finished> {
        run_measured(&self.opts.bench_exe, sync_command(&self.opts.connector_bin, ws), self.scratch(), false).await
    }
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1_000_000 && s % 1_000_000 == 0 => format!("{}M", s / 1_000_000),
        s if s >= 1_000 && s % 1_000 == 0 => format!("{}k", s / 1_000),
        s => s.to_string(),
    }
}
