//! `make bench`: the connector's own cost, measured side by side with a
//! minimal client that does the same HTTP and nothing else (the limit), on
//! loopback simulators that answer without delay. Figures are ratios and
//! per-memory costs measured in one run; absolute times are only reported.
//!
//! The driver is `bench` (`tests/src/bin/bench.rs`); each figure of issue 6
//! is one function here, so a figure that cannot be measured yet (the
//! Lambda bootstrap) is one function to fill in.

pub mod child;
pub mod cost;
pub mod lambda;
pub mod limit;
pub mod load;
pub mod report;
pub mod stages;

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
    let throughput = bench.throughput().await.context("figure 1 (throughput)")?;
    bench.cpu_breakdown(&throughput).await.context("figure 2 (CPU breakdown)")?;
    bench.noop_at_scale().await.context("figure 3 (no-op at scale)")?;
    bench.startup().await.context("figure 5 (start-up)")?;
    bench.management_api_latency().await.context("figure 6 (management API latency)")?;
    bench.slow_sink().await.context("figure 7 (slow sink)")?;
    bench.cost_model(&throughput).await.context("figure 8 (cost model)")?;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inserts {
    /// `POST /documents/text`, `batch_size` in flight.
    PerItem,
    /// `POST /documents/texts`, one batch of `batch_size` in flight.
    Batched,
}

impl Inserts {
    fn batched(self) -> bool {
        self == Inserts::Batched
    }

    fn name(self) -> &'static str {
        match self {
            Inserts::PerItem => "per-item",
            Inserts::Batched => "batched",
        }
    }

    /// Row keys: per-item rows keep the keys they had before batched rows came.
    fn key(self, base: &str, batch_size: usize) -> String {
        let mode = match self {
            Inserts::PerItem => String::new(),
            Inserts::Batched => ".batched".into(),
        };
        if batch_size == 0 { format!("{base}{mode}") } else { format!("{base}{mode}.b{batch_size}") }
    }

    fn label(self) -> &'static str {
        match self {
            Inserts::PerItem => "per-item, ",
            Inserts::Batched => "batched, ",
        }
    }

    fn route(self) -> &'static str {
        match self {
            Inserts::PerItem => "POST /documents/text",
            Inserts::Batched => "insert requests (POST /documents/texts; /documents/text at b=1)",
        }
    }

    fn confirm_note(self) -> &'static str {
        match self {
            Inserts::PerItem => "",
            Inserts::Batched => "; confirm_wait_seconds 0 (no end-of-run confirmation paging, as in all rows)",
        }
    }
}

/// A limit client's requests file and its shape.
struct Requests {
    path: PathBuf,
    /// Insert requests in the file.
    count: usize,
    /// Requests in flight at once.
    window: usize,
}

/// What one run sent, as the simulators saw it.
#[derive(Debug, PartialEq, Eq)]
struct Sent {
    /// Requests per LightRAG route.
    routes: Vec<(&'static str, usize)>,
    /// Memory API list requests.
    lists: usize,
    /// Documents stored.
    documents: usize,
    /// Hash of the stored (name, text) pairs, sorted by name.
    fingerprint: u64,
    max_in_flight: usize,
}

impl Sent {
    fn of(rag: &LightragSim, lists: usize) -> Sent {
        use std::hash::{Hash as _, Hasher as _};
        let mut docs: Vec<(String, String)> = rag.documents().into_iter().map(|d| (d.file_path, d.text)).collect();
        docs.sort();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        docs.hash(&mut hasher);
        Sent {
            routes: SimRoute::COUNTED.iter().map(|route| (route.name(), rag.request_count(*route))).collect(),
            lists,
            documents: docs.len(),
            fingerprint: hasher.finish(),
            max_in_flight: rag.max_in_flight(),
        }
    }

    /// Same requests per route, same documents; neither side had more than
    /// `window` requests in flight (the most seen at once varies with timing).
    fn check_same(&self, replayed: &Sent, window: usize) -> anyhow::Result<()> {
        let strip = |s: &Sent| (s.routes.clone(), s.lists, s.documents, s.fingerprint);
        if strip(self) != strip(replayed) {
            bail!("connector sent {self:?}\nlimit sent {replayed:?}");
        }
        if self.max_in_flight > window || replayed.max_in_flight > window {
            bail!("in flight: connector {}, limit {}, window {window}", self.max_in_flight, replayed.max_in_flight);
        }
        Ok(())
    }
}

/// What figure 1 measured, reused by figures 2, 4 and 8.
struct Throughput {
    /// Fastest connector run at batch_size 10.
    first_sync_b10: Measured,
    /// A no-op rerun of the same 10k (all unchanged), fastest.
    noop_rerun: Measured,
    /// The list answer and config of the run (for the breakdown).
    body: Vec<u8>,
    config: Config,
}

impl Bench {
    fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// One measured `memory-connector sync` of `ws`; fails when it fails.
    async fn sync(&self, ws: &Workspace) -> anyhow::Result<Finished> {
        run_measured(&self.opts.bench_exe, sync_command(&self.opts.connector_bin, ws), self.scratch(), false).await
    }

    /// Figures 1 and 4: connector vs limit at batch_size 1, 10 and 50, with
    /// per-item inserts and with batched inserts.
    async fn throughput(&mut self) -> anyhow::Result<Throughput> {
        let n = self.opts.n;
        let mem = memory_sim(n).await?;
        let body = list_body(&mem.url(), n).await?;
        let mut kept: Option<(Measured, Measured, Config)> = None;
        let mut cpu_rows = Vec::new();
        let mut rss_rows = Vec::new();
        for mode in [Inserts::PerItem, Inserts::Batched] {
            let mut max_rss_kb = 0;
            for batch_size in [1usize, 10, 50] {
                let mut connector: Vec<Measured> = Vec::new();
                let mut limit: Vec<f64> = Vec::new();
                let mut limit_cpu: Vec<f64> = Vec::new();
                let mut noop: Vec<Measured> = Vec::new();
                let mut config = None;
                let mut shape = (0, 0);
                for _ in 0..self.opts.reps {
                    let rag = LightragSim::start(LightragSimOptions::default()).await?;
                    let setup = Setup {
                        memory_url: &mem.url(),
                        lightrag_url: &rag.url(),
                        backend: "sqlite",
                        batch_size,
                        query_limit: n,
                        batch_inserts: mode.batched(),
                    };
                    let ws = setup.workspace();
                    let lists = mem.list_requests();
                    let run = self.sync(&ws).await?;
                    let (new, _) = counts(&run)?;
                    let sent = Sent::of(&rag, mem.list_requests() - lists);
                    if new != n as u64 || sent.documents != n {
                        bail!(
                            "the connector delivered {new} of {n} memories, {} stored ({}, b={batch_size})",
                            sent.documents,
                            mode.name()
                        );
                    }
                    connector.push(run.measured);
                    max_rss_kb = max_rss_kb.max(run.measured.max_rss_kb);
                    let cfg = load_config(&ws)?;
                    if batch_size == 10 && mode == Inserts::PerItem {
                        let rerun = self.sync(&ws).await?;
                        let (new, unchanged) = counts(&rerun)?;
                        if new != 0 || unchanged != n as u64 {
                            bail!("the no-op rerun found {new} new, {unchanged} unchanged of {n}");
                        }
                        noop.push(rerun.measured);
                    }
                    drop(rag);

                    let rag = LightragSim::start(LightragSimOptions::default()).await?;
                    let requests = self.write_requests(&body, &cfg, mode, batch_size)?;
                    let lists = mem.list_requests();
                    let replay = self.replay(&mem.url(), &rag.url(), n, &requests).await?;
                    let replayed = Sent::of(&rag, mem.list_requests() - lists);
                    sent.check_same(&replayed, requests.window).with_context(|| {
                        format!(
                            "the limit client did not replay the connector's requests ({}, b={batch_size})",
                            mode.name()
                        )
                    })?;
                    shape = (requests.count, requests.window);
                    limit.push(replay.0);
                    limit_cpu.push(replay.1);
                    config = Some(cfg);
                }
                let best = connector.iter().copied().min_by(|a, b| a.wall_s.total_cmp(&b.wall_s)).context("no run")?;
                let best_limit = min_by(limit.iter().copied());
                let ratio = best.wall_s / best_limit;
                self.rows.push(
                    Row::new(
                        mode.key("1.throughput_ratio", batch_size),
                        format!("1. wall vs limit, {}batch_size {batch_size}", mode.label()),
                        ratio,
                        "x",
                    )
                    .at_most(1.15, false)
                    .note(format!(
                        "connector {} ms ({:.0}/s), limit {} ms; {} {}, {} in flight{}",
                        fmt_num(best.wall_s * 1e3),
                        n as f64 / best.wall_s,
                        fmt_num(best_limit * 1e3),
                        shape.0,
                        mode.route(),
                        shape.1,
                        mode.confirm_note()
                    )),
                );
                if batch_size == 10 {
                    let cpu = min_by(connector.iter().map(Measured::cpu_s));
                    cpu_rows.push(
                        Row::new(
                            mode.key("2.cpu_per_memory_us", 0),
                            format!("2. CPU per memory (user+sys), {}b=10", mode.label()),
                            cpu / n as f64 * 1e6,
                            "us",
                        )
                        .at_most(20.0, true)
                        .note(format!(
                            "{} s CPU for {n} memories; the limit client used {} us per memory ({} requests, its file load included)",
                            fmt_num(cpu),
                            fmt_num(min_by(limit_cpu.iter().copied()) / n as f64 * 1e6),
                            shape.0
                        )),
                    );
                    if mode == Inserts::PerItem {
                        let noop_best = noop
                            .iter()
                            .copied()
                            .min_by(|a, b| a.wall_s.total_cmp(&b.wall_s))
                            .context("no no-op run")?;
                        let config = config.clone().context("no config")?;
                        kept = Some((best, noop_best, config));
                    }
                }
            }
            rss_rows.push(
                Row::new(
                    mode.key("4.peak_rss_mb", 0),
                    format!("4. peak RSS of a {n}-memory sync, {}", mode.name()),
                    max_rss_kb as f64 / 1024.0,
                    "MB",
                )
                .at_most(30.0, true)
                .note("largest of batch sizes 1, 10, 50 (SQLite state)"),
            );
        }
        self.rows.extend(cpu_rows);
        self.rows.extend(rss_rows);
        let (first_sync_b10, noop_rerun, config) = kept.context("batch_size 10 was not measured")?;
        Ok(Throughput { first_sync_b10, noop_rerun, body, config })
    }

    /// The exact insert requests of the run (the engine's order: by memory
    /// id), as a `bench replay` requests file; one file per mode and size.
    fn write_requests(
        &self,
        body: &[u8],
        config: &Config,
        mode: Inserts,
        batch_size: usize,
    ) -> anyhow::Result<Requests> {
        let connector = config.connectors.first().context("no connector in the config")?;
        let mut page = connector_core::memory_api::parse_page(body, connector.ingestion.query_limit)
            .map_err(anyhow::Error::msg)?;
        page.memories.sort_by(|a, b| a.id.cmp(&b.id));
        let docs: Vec<limit::PlannedDoc> = page
            .memories
            .iter()
            .filter_map(|memory| {
                match render(
                    &connector.context_id,
                    memory,
                    &connector.transformation,
                    connector.ingestion.skip_empty_transcripts,
                    None,
                ) {
                    Rendered::Document(doc) => Some(limit::PlannedDoc { text: doc.text, file_source: doc.file_source }),
                    _ => None,
                }
            })
            .collect();
        let max_batch_bytes = usize::try_from(config.lightrag.api.max_batch_bytes).unwrap_or(usize::MAX);
        let (requests, window) = limit::plan(&docs, batch_size, mode.batched(), max_batch_bytes);
        let path = self.scratch().join(format!("requests-{}-b{batch_size}.tsv", mode.name()));
        limit::write_requests(&path, &requests)?;
        Ok(Requests { path, count: requests.len(), window })
    }

    /// Wall seconds of the limit client (minus loading its requests file), and its CPU seconds.
    async fn replay(
        &self,
        memory_url: &str,
        lightrag_url: &str,
        n: usize,
        requests: &Requests,
    ) -> anyhow::Result<(f64, f64)> {
        let mut cmd = std::process::Command::new(&self.opts.bench_exe);
        cmd.arg("replay")
            .arg("--list-url")
            .arg(format!("{memory_url}/memory/{CTX}?limit={n}&range=all"))
            .arg("--memory-key")
            .arg(MEMORY_KEY)
            .arg("--lightrag-url")
            .arg(lightrag_url)
            .arg("--concurrency")
            .arg(requests.window.to_string())
            .arg("--requests")
            .arg(&requests.path);
        let run = run_measured(&self.opts.bench_exe, cmd, self.scratch(), false).await?;
        let load_s = run.json()?.get("load_s").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        Ok((run.measured.wall_s - load_s, run.measured.cpu_s()))
    }

    /// Figure 2: where a memory's CPU goes.
    async fn cpu_breakdown(&mut self, throughput: &Throughput) -> anyhow::Result<()> {
        let connector = throughput.config.connectors.first().context("no connector")?;
        let mut connector = connector.clone();
        connector.ingestion.batch_size = 10;
        let breakdown = stages::breakdown(&throughput.body, &connector, self.scratch()).await?;
        let total = throughput.first_sync_b10.cpu_s() / self.opts.n as f64 * 1e6;
        let mut sum = 0.0;
        for (i, (stage, us)) in breakdown.stages.iter().enumerate() {
            sum += us;
            self.rows.push(Row::new(format!("2.cpu.{i}"), format!("2.   {stage}"), *us, "us"));
        }
        self.rows.push(
            Row::new("2.cpu.rest", "2.   rest: HTTP client, runtime, logs, start-up", (total - sum).max(0.0), "us")
                .note("total CPU per memory minus the stages above"),
        );
        Ok(())
    }

    /// Figure 3: a run that finds nothing new, against ledgers of growing size.
    async fn noop_at_scale(&mut self) -> anyhow::Result<()> {
        let fetched = self.opts.noop_fetched();
        let mem = memory_sim(fetched).await?;
        let (sqlite_sizes, json_sizes) = self.opts.ledger_sizes();
        let reps = if self.opts.smoke { 2 } else { 5 };
        let mut json_under_200ms: Option<usize> = None;
        let mut sqlite_walls = Vec::new();
        for (backend, sizes) in [("sqlite", sqlite_sizes), ("json", json_sizes)] {
            for size in sizes {
                let rag = LightragSim::start(LightragSimOptions::default()).await?;
                let setup = Setup {
                    memory_url: &mem.url(),
                    lightrag_url: &rag.url(),
                    backend,
                    batch_size: 10,
                    query_limit: fetched,
                    batch_inserts: false,
                };
                let ws = setup.workspace();
                self.sync(&ws).await?;
                let seeded = Instant::now();
                seed_ledger(&ws, backend, size.saturating_sub(fetched)).await?;
                let seed_s = seeded.elapsed().as_secs_f64();
                let mut runs = Vec::new();
                for _ in 0..reps {
                    let run = self.sync(&ws).await?;
                    let (new, unchanged) = counts(&run)?;
                    if new != 0 || unchanged != fetched as u64 {
                        bail!("no-op run ({backend}, {size}) found {new} new, {unchanged} unchanged");
                    }
                    runs.push(run.measured);
                }
                let wall_ms = min_by(runs.iter().map(|m| m.wall_s)) * 1e3;
                let rss_mb = runs.iter().map(|m| m.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
                let label = format!("{backend}, ledger {}", human(size));
                let key = format!("3.noop.{backend}.{size}");
                let headline = backend == "sqlite" && size == 100_000;
                let mut wall = Row::new(format!("{key}.wall_ms"), format!("3. no-op wall, {label}"), wall_ms, "ms")
                    .note(format!("{fetched} fetched, all unchanged; seeded in {:.1} s", seed_s));
                let mut rss = Row::new(format!("{key}.rss_mb"), format!("3. no-op peak RSS, {label}"), rss_mb, "MB");
                if headline {
                    wall = wall.at_most(50.0, true);
                    rss = rss.at_most(20.0, true);
                }
                self.rows.push(wall);
                self.rows.push(rss);
                if backend == "json" && wall_ms < 200.0 {
                    json_under_200ms = Some(json_under_200ms.unwrap_or(0).max(size));
                }
                if backend == "sqlite" {
                    sqlite_walls.push((size, wall_ms));
                }
            }
        }
        if let (Some(first), Some(last)) = (sqlite_walls.first(), sqlite_walls.last()) {
            self.rows.push(
                Row::new(
                    "3.noop.sqlite.growth",
                    format!("3. no-op wall {} / {} ledger (SQLite)", human(last.0), human(first.0)),
                    last.1 / first.1,
                    "x",
                )
                .note("~1: the cost follows the fetched page, not the ledger"),
            );
        }
        self.rows.push(
            Row::new(
                "3.noop.json.max_under_200ms",
                "3. largest JSON ledger with a no-op < 200 ms",
                json_under_200ms.unwrap_or(0) as f64,
                "rows",
            )
            .note("of the sizes tried; 0 = none"),
        );
        Ok(())
    }

    /// Figure 5: process start to the first request, and binary sizes.
    async fn startup(&mut self) -> anyhow::Result<()> {
        let mut latencies = Vec::new();
        for _ in 0..if self.opts.smoke { 2 } else { 7 } {
            let mem = memory_sim(10).await?;
            let rag = LightragSim::start(LightragSimOptions::default()).await?;
            let setup = Setup {
                memory_url: &mem.url(),
                lightrag_url: &rag.url(),
                backend: "sqlite",
                batch_size: 10,
                query_limit: 10,
                batch_inserts: false,
            };
            let ws = setup.workspace();
            let mut cmd = sync_command(&self.opts.connector_bin, &ws);
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            let spawned = Instant::now();
            let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
            if !status.success() {
                bail!("start-up run failed: {status}");
            }
            let first = [mem.first_request_at(), rag.first_request_at()].into_iter().flatten().min();
            let first = first.context("the simulators saw no request")?;
            latencies.push(first.duration_since(spawned).as_secs_f64() * 1e3);
        }
        latencies.sort_by(f64::total_cmp);
        self.rows.push(
            Row::new("5.startup_ms", "5. process start -> first request", latencies[0], "ms")
                .at_most(20.0, true)
                .note(format!("fastest of {}; median {} ms", latencies.len(), fmt_num(latencies[latencies.len() / 2]))),
        );
        let size = file_size(&self.opts.connector_bin) as f64 / 1_048_576.0;
        self.rows.push(
            Row::new("5.binary_mb", "5. memory-connector binary size", size, "MB")
                .note(format!("profile {}", self.opts.profile)),
        );
        self.lambda_bootstrap().await?;
        Ok(())
    }

    /// Figure 5b: the `sync` bootstrap's init against a stand-in runtime API
    /// (`lambda.rs`), its peak RSS after one invoke, its size and zip size.
    async fn lambda_bootstrap(&mut self) -> anyhow::Result<()> {
        let Some(bootstrap) = self.opts.lambda_bootstrap.clone() else {
            self.rows.push(Row::not_yet(
                "5.lambda_init",
                "5. Lambda sync bootstrap init",
                "not measured: no `sync` bootstrap next to the bench (`make bench` builds it; or --lambda-bootstrap)",
            ));
            return Ok(());
        };
        let mut starts = Vec::new();
        for _ in 0..if self.opts.smoke { 2 } else { 7 } {
            let start = lambda::cold_start(&bootstrap, self.scratch(), MEMORY_KEY).await?;
            if !start.answer.contains("rejected") || start.secret_calls != 1 {
                bail!(
                    "the bootstrap answered {:?} after {} Secrets Manager calls; expected `rejected` after 1",
                    start.answer,
                    start.secret_calls
                );
            }
            starts.push(start);
        }
        starts.sort_by(|a, b| a.init_ms.total_cmp(&b.init_ms));
        let fastest = &starts[0];
        let median = &starts[starts.len() / 2];
        self.rows.push(
            Row::new(
                "5.lambda_init",
                "5. Lambda sync bootstrap init (spawn -> first GET /next)",
                fastest.init_ms,
                "ms",
            )
            .at_most(20.0, true)
            .note(format!(
                "fastest of {}; median {} ms; stand-in runtime API on loopback, shipped config, key via one Secrets Manager call (stand-in)",
                starts.len(),
                fmt_num(median.init_ms)
            )),
        );
        let rss_mb = starts.iter().map(|s| s.peak_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
        self.rows.push(
            Row::new(
                "5.lambda_rss_mb",
                "5. Lambda sync bootstrap peak RSS, init + one invoke",
                rss_mb,
                "MB",
            )
            .note(format!(
                "VmHWM; the event names an unknown connector (answered `rejected` in {} ms, no DynamoDB call): no sync ran",
                fmt_num(fastest.invoke_ms)
            )),
        );
        let size = file_size(&bootstrap) as f64 / 1_048_576.0;
        self.rows.push(Row::new("5.lambda_binary_mb", "5. Lambda sync bootstrap size", size, "MB").note(format!(
            "profile {}, host target ({})",
            self.opts.profile,
            std::env::consts::ARCH
        )));
        let bootstrap_for_zip = bootstrap.clone();
        let zipped = tokio::task::spawn_blocking(move || lambda::deflated_size(&bootstrap_for_zip)).await??;
        self.rows.push(
            Row::new("5.lambda_zip_mb", "5. Lambda sync bootstrap zipped", zipped as f64 / 1_048_576.0, "MB")
                .note("deflate level 6, as a deployment zip (limit 50 MB zipped)"),
        );
        Ok(())
    }

    /// Figure 6: `GET /connectors/{id}/status` of the real `serve` (API only,
    /// auth on, SQLite ledger with a few runs and padded to 10k rows), driven
    /// open-loop at a fixed rate by `bench load` in another process.
    async fn management_api_latency(&mut self) -> anyhow::Result<()> {
        let (rate, seconds, ledger) = self.opts.status_load();
        let fetched = 100;
        let mem = memory_sim(fetched).await?;
        let rag = LightragSim::start(LightragSimOptions::default()).await?;
        let setup = Setup {
            memory_url: &mem.url(),
            lightrag_url: &rag.url(),
            backend: "sqlite",
            batch_size: 10,
            query_limit: fetched,
            batch_inserts: false,
        };
        let mut ws = setup.workspace();
        // A few runs in the history: a first sync and two no-ops.
        for _ in 0..3 {
            self.sync(&ws).await?;
        }
        seed_ledger(&ws, "sqlite", ledger.saturating_sub(fetched)).await?;
        let yaml = std::fs::read_to_string(ws.config_path())?;
        let with_api = yaml.replace(
            "api:\n  enabled: false\n",
            "api:\n  enabled: true\n  host: \"127.0.0.1\"\n  port: 0\n  enable_auth: true\n  api_key: \"${CONNECTOR_API_KEY}\"\n",
        );
        if with_api == yaml {
            bail!("the bench config has no `api:` section to enable");
        }
        ws.write_config(&with_api);
        ws.set_env("CONNECTOR_API_KEY", API_KEY);

        let serve = Serve::start(&self.opts.connector_bin, &ws).await?;
        let url = format!("http://127.0.0.1:{}/connectors/{CONNECTOR}/status", serve.port);
        let cpu_before = serve.cpu_s();
        let mut cmd = std::process::Command::new(&self.opts.bench_exe);
        cmd.arg("load")
            .arg("--url")
            .arg(&url)
            .arg("--rate")
            .arg(rate.to_string())
            .arg("--seconds")
            .arg(seconds.to_string())
            .env("BENCH_LOAD_KEY", API_KEY);
        let run = run_measured(&self.opts.bench_exe, cmd, self.scratch(), false).await;
        let server_cpu_s = serve.cpu_s().zip(cpu_before).map(|(after, before)| after - before);
        let log = serve.stop().await;
        let run = run.with_context(|| format!("serve log: {log}"))?;
        let load: load::LoadReport =
            serde_json::from_str(run.stdout.trim()).with_context(|| format!("`bench load` printed: {}", run.stdout))?;
        if load.ok == 0 {
            bail!("no status request succeeded: {}\nserve log: {log}", load.first_error.unwrap_or_default());
        }
        let label = format!("{} req/s, SQLite ledger {}", fmt_num(rate), human(ledger));
        self.rows.push(
            Row::new(
                "6.status_latency",
                format!("6. GET status p99, {label}"),
                load.p99_ms,
                "ms",
            )
            .at_most(2.0, true)
            .note(format!(
                "p90 {} ms, max {} ms over {} requests in {} s, open loop from a second process (pacer lag p99 {} ms, included)",
                fmt_num(load.p90_ms),
                fmt_num(load.max_ms),
                load.sent,
                fmt_num(seconds),
                fmt_num(load.send_lag_p99_ms)
            )),
        );
        self.rows.push(
            Row::new("6.status_latency.p50", format!("6. GET status p50, {label}"), load.p50_ms, "ms")
                .note("auth on (X-API-Key), keep-alive pool, latency from the scheduled send time"),
        );
        self.rows.push(
            Row::new("6.status_rate", "6. GET status achieved rate", load.achieved_rate, "/s")
                .at_least(0.98 * rate)
                .note(format!("{} sent, {} answered 2xx", load.sent, load.ok)),
        );
        self.rows.push(
            Row::new("6.status_errors", "6. GET status errors", load.errors as f64, "req")
                .equals(0.0)
                .note(load.first_error.unwrap_or_default()),
        );
        let per_request = |cpu_s: f64| cpu_s / load.sent as f64 * 1e6;
        self.rows.push(
            Row::new(
                "6.status_server_cpu_us",
                "6. serve CPU per status request",
                server_cpu_s.map(per_request).unwrap_or(0.0),
                "us",
            )
            .note(format!(
                "user+sys of the serve process during the load (/proc, 10 ms ticks); the load generator used {} us per request",
                fmt_num(per_request(run.measured.cpu_s()))
            )),
        );
        Ok(())
    }

    /// Figure 7: LightRAG answering in 50 ms; the window must stay full.
    async fn slow_sink(&mut self) -> anyhow::Result<()> {
        let n = self.opts.slow_sink_n();
        let latency = Duration::from_millis(50);
        let mem = memory_sim(n).await?;
        for batch_size in [10usize, 50] {
            let rag = LightragSim::start(LightragSimOptions { latency, ..Default::default() }).await?;
            let setup = Setup {
                memory_url: &mem.url(),
                lightrag_url: &rag.url(),
                backend: "sqlite",
                batch_size,
                query_limit: n,
                // Figure 7 counts requests in flight: one per document.
                batch_inserts: false,
            };
            let ws = setup.workspace();
            let run = self.sync(&ws).await?;
            let inserts = rag.request_count(SimRoute::Insert);
            let ideal = batch_size as f64 / latency.as_secs_f64();
            let rate = inserts as f64 / run.measured.wall_s;
            self.rows.push(
                Row::new(
                    format!("7.slow_sink.b{batch_size}.rate"),
                    format!("7. slow sink (50 ms) rate, batch_size {batch_size}"),
                    rate,
                    "/s",
                )
                .at_least(0.9 * ideal)
                .note(format!(
                    "{inserts} inserts in {} ms; ideal {} /s",
                    fmt_num(run.measured.wall_s * 1e3),
                    fmt_num(ideal)
                )),
            );
            self.rows.push(
                Row::new(
                    format!("7.slow_sink.b{batch_size}.in_flight"),
                    format!("7. slow sink max in flight, batch_size {batch_size}"),
                    rag.max_in_flight() as f64,
                    "req",
                )
                .equals(batch_size as f64),
            );
        }
        Ok(())
    }

    /// Figure 8: requests and ledger units of a first sync and a no-op run,
    /// priced (the engine runs in-process around a counting store).
    async fn cost_model(&mut self, throughput: &Throughput) -> anyhow::Result<()> {
        let n = self.opts.n;
        let mem = memory_sim(n).await?;
        let rag = LightragSim::start(LightragSimOptions::default()).await?;
        let setup = Setup {
            memory_url: &mem.url(),
            lightrag_url: &rag.url(),
            backend: "sqlite",
            batch_size: 10,
            query_limit: n,
            batch_inserts: false,
        };
        let ws = setup.workspace();
        let config = load_config(&ws)?;
        let connector = config.connectors.first().context("no connector")?.clone();
        let sqlite = connector_core::state::sqlite::SqliteStore::open(&ws.path().join("state.sqlite")).await?;
        let store = Arc::new(cost::CountingStore::new(Arc::new(sqlite)));
        let engine = SyncEngine::new(
            connector,
            Duration::from_secs(3600),
            Arc::new(connector_core::memory_api::MemoryApiClient::new(&config.memory_api)?),
            connector_core::lightrag::open(&config.lightrag).map_err(|e| anyhow::anyhow!("{e}"))?,
            store.clone(),
        );
        let requests = |mem: &MemorySim, rag: &LightragSim, before: &mut (usize, usize)| {
            let now = (mem.list_requests(), rag.request_count(SimRoute::Any));
            let delta = now.0 - before.0 + now.1 - before.1;
            *before = now;
            delta
        };
        let mut seen = (0, 0);
        let first = engine.run(RunOptions::default()).await?;
        if first.counts.new != n as u64 {
            bail!("the in-process first sync delivered {} of {n}", first.counts.new);
        }
        let first_units = store.take();
        let first_requests = requests(&mem, &rag, &mut seen);
        let noop = engine.run(RunOptions::default()).await?;
        if noop.counts.unchanged != n as u64 {
            bail!("the in-process no-op found {} unchanged of {n}", noop.counts.unchanged);
        }
        let noop_units = store.take();
        let noop_requests = requests(&mem, &rag, &mut seen);

        let first_cost = cost::RunCost::new(throughput.first_sync_b10.wall_s, first_units);
        let noop_cost = cost::RunCost::new(throughput.noop_rerun.wall_s, noop_units);
        let per_million = first_cost.usd() * 1e6 / n as f64;
        let month = noop_cost.usd() * 720.0;
        self.rows.push(
            Row::new(
                "8.first_sync.gb_s",
                format!("8. first sync of {n}: Lambda GB-s (128 MB)"),
                first_cost.gb_seconds(),
                "GB-s",
            )
            .note(format!(
                "{} ms measured; {} API calls",
                fmt_num(first_cost.duration_s * 1e3),
                first_requests
            )),
        );
        self.rows.push(
            Row::new(
                "8.first_sync.rru",
                format!("8. first sync of {n}: DynamoDB read units"),
                first_units.read_units as f64,
                "RRU",
            )
            .note(format!("{} store calls", first_units.store_calls)),
        );
        self.rows.push(Row::new(
            "8.first_sync.wru",
            format!("8. first sync of {n}: DynamoDB write units"),
            first_units.write_units as f64,
            "WRU",
        ));
        self.rows.push(
            Row::new("8.usd_per_million", "8. USD per 1M memories ingested", per_million, "USD")
                .note(format!("Lambda {:.4} + DynamoDB {:.4} per {n}", first_cost.lambda_usd, first_cost.dynamodb_usd)),
        );
        self.rows.push(
            Row::new(
                "8.noop.gb_s",
                format!("8. hourly no-op ({n} fetched): Lambda GB-s"),
                noop_cost.gb_seconds(),
                "GB-s",
            )
            .note(format!(
                "{} ms measured; {} API calls; {} RRU, {} WRU",
                fmt_num(noop_cost.duration_s * 1e3),
                noop_requests,
                noop_units.read_units,
                noop_units.write_units
            )),
        );
        self.rows.push(
            Row::new("8.usd_per_connector_month", "8. USD per connector-month (720 no-op runs)", month, "USD")
                .note(format!("Lambda {:.5} + DynamoDB {:.5} per run", noop_cost.lambda_usd, noop_cost.dynamodb_usd)),
        );
        Ok(())
    }
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1_000_000 && s % 1_000_000 == 0 => format!("{}M", s / 1_000_000),
        s if s >= 1_000 && s % 1_000 == 0 => format!("{}k", s / 1_000),
        s => s.to_string(),
    }
}

/// Adds `extra` delivered entries (ids no fetch returns) through the store API.
async fn seed_ledger(ws: &Workspace, backend: &str, extra: usize) -> anyhow::Result<()> {
    if extra == 0 {
        return Ok(());
    }
    let store: Arc<dyn StateStore> = match backend {
        "sqlite" => Arc::new(connector_core::state::sqlite::SqliteStore::open(&ws.path().join("state.sqlite")).await?),
        _ => Arc::new(connector_core::state::json::JsonStore::open(&ws.path().join("state.json")).await?),
    };
    let connector = ConnectorId::new(CONNECTOR);
    let now = chrono::Utc::now();
    // JSON rewrites its whole file per checkpoint: one big one.
    let chunk = if backend == "sqlite" { 50_000 } else { extra };
    let mut made = 0;
    while made < extra {
        let entries: Vec<LedgerEntry> = (made..extra.min(made + chunk))
            .map(|i| {
                let id = format!("seed-{i:08}");
                let file_source = connector_core::transform::file_source(CTX, &id);
                LedgerEntry {
                    memory_id: MemoryId::new(id),
                    status: EntryStatus::Processed,
                    content_hash: Some(ContentHash::new(format!("{i:064x}"))),
                    pending_hash: None,
                    doc_id: Some(connector_core::lightrag::doc_id(&file_source)),
                    file_source,
                    track_id: None,
                    attempts: 0,
                    last_error: None,
                    next_attempt_at: None,
                    first_seen: now,
                    last_ingested: Some(now),
                }
            })
            .collect();
        made += entries.len();
        store.checkpoint(&connector, Checkpoint { entries, ..Default::default() }).await?;
    }
    Ok(())
}

/// A running `memory-connector serve --api-only` (figure 6); killed on drop.
struct Serve {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl Serve {
    /// Starts `serve` on a free port and waits for its port file.
    async fn start(bin: &Path, ws: &Workspace) -> anyhow::Result<Serve> {
        let port_file = ws.path().join("ports.json");
        let log = ws.path().join("serve.log");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["serve", "--api-only", "--port", "0", "--port-file"])
            .arg(&port_file)
            .arg("--config")
            .arg(ws.config_path())
            .current_dir(ws.path())
            .env_remove("CONFIG_PATH")
            .env_remove("LOG_LEVEL")
            .env_remove("LOG_FORMAT")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for (key, value) in &ws.env {
            cmd.env(key, value);
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} serve", bin.display()))?;
        let started = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(port) = ports.get("api").and_then(serde_json::Value::as_u64)
            {
                break u16::try_from(port)?;
            }
            if let Some(status) = child.try_wait()? {
                bail!("serve exited early ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("serve wrote no port file in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Serve { child, port, log })
    }

    /// User + system CPU seconds so far (Linux `/proc/PID/stat`, in USER_HZ = 100).
    fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
        Some((ticks(11)? + ticks(12)?) / 100.0)
    }

    /// Kills the service; returns the tail of its log (for error messages).
    async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}
