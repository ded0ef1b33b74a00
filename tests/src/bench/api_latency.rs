//! Figure 6: `GET /connectors/{id}/status` of the real `serve` under an
//! open-loop load from a second process.

use super::*;

impl Bench {
    /// Figure 6: `GET /connectors/{id}/status` of the real `serve` (API only,
    /// auth on, SQLite ledger with a few runs and padded to 10k rows), driven
    /// open-loop at a fixed rate by `bench load` in another process.
    pub(super) async fn management_api_latency(&mut self) -> anyhow::Result<()> {
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
}

/// A running `memory-connector serve --api-only` (figure 6); killed on drop.
pub(super) struct Serve {
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
