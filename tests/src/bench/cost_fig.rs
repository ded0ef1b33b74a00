//! Figure 8: requests and ledger units of a first sync and a no-op run, priced.

use super::*;

impl Bench {
    /// Figure 8: requests and ledger units of a first sync and a no-op run,
    /// priced (the engine runs in-process around a counting store).
    pub(super) async fn cost_model(&mut self, throughput: &Throughput) -> anyhow::Result<()> {
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
