//! Figure 8: requests and DynamoDB units of a first sync, an hourly no-op
//! run and a run with 1% of the page edited, priced (decision 26).

use super::*;

/// How many of 100 memories the edited run changes.
const EDITED_PERCENT: usize = 1;

impl Bench {
    /// Figure 8: the engine runs in-process around the cost model (what the
    /// `dynamodb` store would send, over SQLite), against the simulators.
    pub(super) async fn cost_model(&mut self, throughput: &Throughput) -> anyhow::Result<()> {
        let n = self.opts.n;
        let Ingested { mem, rag, ws, engine, store } = ingest(n, false).await?;
        let requests = |mem: &MemorySim, rag: &LightragSim, before: &mut (usize, usize)| {
            let now = (mem.list_requests(), rag.request_count(SimRoute::Any));
            let delta = now.0 - before.0 + now.1 - before.1;
            *before = now;
            delta
        };
        let mut seen = (0, 0);
        let first_units = store.take();
        let first_requests = requests(&mem, &rag, &mut seen);
        let noop = engine.run(RunOptions::default()).await?;
        if noop.counts.unchanged != n as u64 {
            bail!("the in-process no-op found {} unchanged of {n}", noop.counts.unchanged);
        }
        let noop_units = store.take();
        let noop_requests = requests(&mem, &rag, &mut seen);

        // 1% of the page edited (spread over the ids).
        let ids: Vec<String> = mem
            .expected(CTX)
            .iter()
            .filter_map(|m| m.get("id").map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned)))
            .collect();
        let step = 100 / EDITED_PERCENT;
        let chosen: Vec<String> = ids.iter().step_by(step).cloned().collect();
        let edited = mem.edit_transcripts(CTX, &chosen, " (edited)");
        let edit = engine.run(RunOptions::default()).await?;
        if edit.counts.updated != edited as u64 {
            bail!("the in-process edited run updated {} of {edited}", edit.counts.updated);
        }
        let edit_units = store.take();
        let edit_requests = requests(&mem, &rag, &mut seen);

        // What a no-op run logs (the CLI on the same state, INFO).
        let logged = self.sync(&ws).await?;
        let log_bytes = logged.stderr.len() as u64;

        let first_cost = cost::RunCost::new(throughput.first_sync_b10.wall_s, first_units);
        let noop_cost = cost::RunCost::with_logs(throughput.noop_rerun.wall_s, noop_units, log_bytes);
        let per_million = first_cost.usd() * 1e6 / n as f64;
        let month = noop_cost.usd() * 720.0;
        let full = n == MAX_PAGE && !self.opts.smoke;
        let target = |row: Row, limit: f64| if full { row.at_most(limit, false) } else { row };
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
            .note(format!("{} requests to DynamoDB", first_units.calls)),
        );
        self.rows.push(Row::new(
            "8.first_sync.wru",
            format!("8. first sync of {n}: DynamoDB write units"),
            first_units.write_units as f64,
            "WRU",
        ));
        self.rows.push(
            target(Row::new("8.usd_per_million", "8. USD per 1M memories ingested", per_million, "USD"), 1.0).note(
                format!(
                    "Lambda {:.4} + DynamoDB {:.4} + secrets {:.5} per {n}",
                    first_cost.lambda_usd, first_cost.dynamodb_usd, first_cost.other_usd
                ),
            ),
        );
        self.rows.push(
            Row::new(
                "8.noop.gb_s",
                format!("8. hourly no-op ({n} fetched): Lambda GB-s"),
                noop_cost.gb_seconds(),
                "GB-s",
            )
            .note(format!(
                "{} ms measured; {} API calls; {} WRU; {} requests to DynamoDB",
                fmt_num(noop_cost.duration_s * 1e3),
                noop_requests,
                noop_units.write_units,
                noop_units.calls
            )),
        );
        self.rows.push(
            target(
                Row::new(
                    "8.noop.rru",
                    format!("8. hourly no-op ({n} fetched, nothing changed): DynamoDB read units"),
                    noop_units.read_units as f64,
                    "RRU",
                ),
                20.0,
            )
            .note("ledger view + connector state + lease; no entry read"),
        );
        let edit_limit = 2.0 * edited as f64 + 20.0;
        self.rows.push(
            target(
                Row::new(
                    "8.edited.rru",
                    format!("8. run with {edited} of {n} edited: DynamoDB read units"),
                    edit_units.read_units as f64,
                    "RRU",
                ),
                edit_limit,
            )
            .note(format!(
                "target 2 x {edited} + 20; {} WRU; {} API calls; {} requests to DynamoDB",
                edit_units.write_units, edit_requests, edit_units.calls
            )),
        );
        self.rows.push(
            target(
                Row::new("8.usd_per_connector_month", "8. USD per connector-month (720 no-op runs)", month, "USD"),
                0.05,
            )
            .note(format!(
                "per run: Lambda {:.2e} + DynamoDB {:.2e} + secrets and {} B of logs {:.2e}",
                noop_cost.lambda_usd, noop_cost.dynamodb_usd, log_bytes, noop_cost.other_usd
            )),
        );

        // The default configuration sends new documents in batch requests: a
        // window of documents answers at once, so a checkpoint (and its marks)
        // comes every `batch_size` documents instead of every half window.
        let batched = ingest(n, true).await?.store.take();
        let batched_cost = cost::RunCost::new(throughput.first_sync_b10.wall_s, batched);
        self.rows.push(
            target(
                Row::new(
                    "8.usd_per_million.batched",
                    "8. USD per 1M memories ingested, batched inserts (the default)",
                    batched_cost.usd() * 1e6 / n as f64,
                    "USD",
                ),
                1.0,
            )
            .note(format!(
                "{} RRU + {} WRU per {n}; Lambda time taken as the per-item run's",
                batched.read_units, batched.write_units
            )),
        );
        Ok(())
    }
}

/// A first sync and the run that confirms it, in-process around the cost
/// model, in the deployed shape (LightRAG api mode).
struct Ingested {
    mem: MemorySim,
    rag: LightragSim,
    ws: Workspace,
    engine: SyncEngine,
    store: Arc<cost::CostModel>,
}

async fn ingest(n: usize, batch_inserts: bool) -> anyhow::Result<Ingested> {
    let mem = memory_sim(n).await?;
    let rag = LightragSim::start(LightragSimOptions::default()).await?;
    let setup = Setup {
        memory_url: &mem.url(),
        lightrag_url: &rag.url(),
        backend: "sqlite",
        batch_size: 10,
        query_limit: n,
        batch_inserts,
    };
    let ws = setup.workspace();
    let config = load_config(&ws)?;
    let connector = config.connectors.first().context("no connector")?.clone();
    let sqlite = connector_core::state::sqlite::SqliteStore::open(&ws.path().join("state.sqlite")).await?;
    let store = Arc::new(cost::CostModel::new(Arc::new(sqlite)));
    let engine = SyncEngine::new(
        connector,
        Duration::from_secs(3600),
        Arc::new(connector_core::memory_api::MemoryApiClient::new(&config.memory_api)?),
        connector_core::lightrag::open(&config.lightrag).map_err(|e| anyhow::anyhow!("{e}"))?,
        store.clone(),
    )
    .with_lightrag_settings(&config.lightrag);
    let first = engine.run(RunOptions::default()).await?;
    if first.counts.new != n as u64 {
        bail!("the in-process first sync delivered {} of {n}", first.counts.new);
    }
    // The deployed shape (LightRAG api mode) confirms what a run
    // submitted in the next run: ingesting costs both runs.
    let settle = engine.run(RunOptions::default()).await?;
    if settle.counts.new != 0 {
        bail!("the confirming run sent {} again", settle.counts.new);
    }
    // The units of both runs are the store's until the caller takes them.
    Ok(Ingested { mem, rag, ws, engine, store })
}
