//! Figure 5: process start to the first request, binary sizes, and the
//! Lambda `sync` bootstrap's init.

use super::*;

impl Bench {
    /// Figure 5: process start to the first request, and binary sizes.
    pub(super) async fn startup(&mut self) -> anyhow::Result<()> {
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
    pub(super) async fn lambda_bootstrap(&mut self) -> anyhow::Result<()> {
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
            let failed_visibly = start.answer.starts_with("error") && start.answer.contains("bench-no-such-connector");
            if !failed_visibly || start.secret_calls != 1 {
                bail!(
                    "the bootstrap answered {:?} after {} Secrets Manager calls; expected an invocation error naming the unknown connector after 1",
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
                "VmHWM; the event names an unknown connector (the invocation fails in {} ms, no DynamoDB call): no sync ran",
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
}
