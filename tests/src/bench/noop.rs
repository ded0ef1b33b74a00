//! Figure 3: a run that finds nothing new, against ledgers of growing size.

use super::*;

impl Bench {
    /// Figure 3: a run that finds nothing new, against ledgers of growing size.
    pub(super) async fn noop_at_scale(&mut self) -> anyhow::Result<()> {
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
}

/// Adds `extra` delivered entries (ids no fetch returns) through the store API.
pub(super) async fn seed_ledger(ws: &Workspace, backend: &str, extra: usize) -> anyhow::Result<()> {
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
                    provenance: None,
                }
            })
            .collect();
        made += entries.len();
        store.checkpoint(&connector, Checkpoint { entries, ..Default::default() }).await?;
    }
    Ok(())
}

impl Bench {
    /// Figure 3b: a first sync of the workload into JSON state against the
    /// same into SQLite (figure 1's batch_size 10, per-item run): the JSON
    /// store journals a run's writes instead of rewriting its file per
    /// checkpoint (decision 26).
    pub(super) async fn json_first_sync(&mut self, throughput: &Throughput) -> anyhow::Result<()> {
        let n = self.opts.n;
        let mem = memory_sim(n).await?;
        let mut walls = Vec::new();
        let mut size = 0;
        for _ in 0..self.opts.reps {
            let rag = LightragSim::start(LightragSimOptions::default()).await?;
            let setup = Setup {
                memory_url: &mem.url(),
                lightrag_url: &rag.url(),
                backend: "json",
                batch_size: 10,
                query_limit: n,
                batch_inserts: false,
            };
            let ws = setup.workspace();
            let run = self.sync(&ws).await?;
            let (new, _) = counts(&run)?;
            if new != n as u64 {
                bail!("the JSON first sync delivered {new} of {n}");
            }
            walls.push(run.measured.wall_s);
            size = file_size(&ws.path().join("state.json"));
        }
        let json_s = min_by(walls);
        let sqlite_s = throughput.first_sync_b10.wall_s;
        let ratio = json_s / sqlite_s;
        let row = Row::new(
            "3.json_first_sync.ratio",
            format!("3. first sync of {n}: JSON state / SQLite state (wall)"),
            ratio,
            "x",
        )
        .note(format!(
            "JSON {} ms, SQLite {} ms (figure 1, b=10 per-item); state file {:.1} MB",
            fmt_num(json_s * 1e3),
            fmt_num(sqlite_s * 1e3),
            size as f64 / 1e6
        ));
        self.rows.push(if self.opts.smoke { row } else { row.at_most(2.0, false) });
        Ok(())
    }
}
