//! Figures 1, 2 and 4: the connector against the limit client at batch
//! sizes 1, 10 and 50 (per-item and batched inserts), and where a memory's CPU goes.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inserts {
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
pub(super) struct Requests {
    pub(super) path: PathBuf,
    /// Insert requests in the file.
    pub(super) count: usize,
    /// Requests in flight at once.
    pub(super) window: usize,
}

/// What one run sent, as the simulators saw it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Sent {
    /// Requests per LightRAG route.
    pub(super) routes: Vec<(&'static str, usize)>,
    /// Memory API list requests.
    pub(super) lists: usize,
    /// Documents stored.
    pub(super) documents: usize,
    /// Hash of the stored (name, text) pairs, sorted by name.
    pub(super) fingerprint: u64,
    pub(super) max_in_flight: usize,
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
pub(super) struct Throughput {
    /// Fastest connector run at batch_size 10.
    pub(super) first_sync_b10: Measured,
    /// A no-op rerun of the same 10k (all unchanged), fastest.
    pub(super) noop_rerun: Measured,
    /// The list answer and config of the run (for the breakdown).
    pub(super) body: Vec<u8>,
    pub(super) config: Config,
}

impl Bench {
    /// Figures 1 and 4: connector vs limit at batch_size 1, 10 and 50, with
    /// per-item inserts and with batched inserts.
    pub(super) async fn throughput(&mut self) -> anyhow::Result<Throughput> {
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
    pub(super) fn write_requests(
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
    pub(super) async fn replay(
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
    pub(super) async fn cpu_breakdown(&mut self, throughput: &Throughput) -> anyhow::Result<()> {
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
}
