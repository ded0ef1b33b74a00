//! Figure 9: 10,000 connectors in the serverless shape. The config's load
//! (what every Lambda cold start does with the deployed config), then
//! `memory-connector schedules apply` against moto's EventBridge Scheduler:
//! a first apply (one `CreateSchedule` each) and a no-change apply (one
//! `GetSchedule` each, no writes), with the calls the binary reports. The
//! limit beside each: the larger of the pacing floor (calls / requests per
//! second: what keeping to the Scheduler API's rate limits costs at the
//! least) and what moto itself takes for that many calls (a bare SDK loop of
//! 1,000 `GetSchedule`s at the same concurrency, scaled), plus the config
//! load the process does first.
//!
//! Needs moto (`AWS_ENDPOINT_URL`): `make bench` runs under
//! `tests/scripts/aws-emulators.sh`; without it the rows say "not measured".

use super::*;
use connector_core::schedule::scheduler::Deployment;
use connector_core::schedule::scheduler::client::{
    CONCURRENCY, DEFAULT_REQUESTS_PER_SECOND, create_group_like_the_template,
};
use futures_util::{StreamExt, TryStreamExt, stream};

/// `n` connectors, each on its own hourly schedule with 10 minutes of jitter.
fn many_connectors(n: usize) -> String {
    let mut yaml = String::from(
        "memory_api:\n  url: \"http://127.0.0.1:9\"\n  api_key: \"${MEMORY_API_KEY}\"\nlightrag:\n  mode: api\n  api:\n    url: \"http://127.0.0.1:9\"\nstate:\n  backend: json\n  path: state.json\napi:\n  enabled: false\nadvanced:\n  pipeline:\n    max_concurrent_connectors: 8\nconnectors:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - id: person-{i:05}\n    context_id: CTX{i:05}\n    schedule: {{type: cron, cron: \"{} * * * *\", timezone: Europe/Paris, jitter_seconds: 600}}\n",
            i % 60
        ));
    }
    yaml
}

impl Bench {
    pub(super) async fn schedules_at_scale(&mut self) -> anyhow::Result<()> {
        let n = if self.opts.smoke { 200 } else { 10_000 };
        let yaml = many_connectors(n);
        let env = Environment::from_map([("MEMORY_API_KEY".to_owned(), MEMORY_KEY.to_owned())]);
        let mut loads = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let config =
                connector_core::config::load_str(&yaml, "config.yaml", &env).map_err(|e| anyhow::anyhow!("{e}"))?;
            loads.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(config.connectors.len() == n, "loaded {} connectors", config.connectors.len());
        }
        let load_ms = min_by(loads);
        self.rows.push(
            Row::new(
                "9.config_load_ms",
                format!("9. config of {} connectors: parse + validate", human(n)),
                load_ms,
                "ms",
            )
            .at_most(if self.opts.smoke { 1_000.0 } else { 2_000.0 }, true)
            .note(format!(
                "fastest of 3; {} KB of YAML, {} µs per connector (every sync/api cold start and config change)",
                yaml.len() / 1024,
                fmt_num(load_ms * 1e3 / n as f64)
            )),
        );

        if std::env::var("AWS_ENDPOINT_URL").map_or(true, |v| v.is_empty()) {
            for (key, figure) in
                [("9.first_apply_s", "9. schedules apply, first"), ("9.noop_apply_s", "9. schedules apply, no change")]
            {
                self.rows.push(Row::not_yet(
                    key,
                    figure,
                    "not measured: no moto (AWS_ENDPOINT_URL); `make bench` starts it",
                ));
            }
            return Ok(());
        }
        let sdk = connector_core::aws::sdk_config().await;
        let scheduler = connector_core::schedule::scheduler::client::client(&sdk);
        let group = format!("bench-{:08x}", fastrand::u32(..));
        let wiring = Deployment { config_uri: None, max_concurrency: Some(8), ..Deployment::emulated(&group) };
        create_group_like_the_template(&scheduler, &wiring).await.context("create the schedule group in moto")?;
        let mut ws = Workspace::new();
        ws.write_config(&yaml);
        ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
        ws.set_env("SCHEDULE_GROUP", &group);
        ws.set_env("SCHEDULE_RULE_PREFIX", &group);
        let pages = n.div_ceil(100) as f64;
        let mut emulator_per_call = None;
        for (key, figure, write) in [
            ("9.first_apply_s", "9. schedules apply, first", "CreateSchedule"),
            ("9.noop_apply_s", "9. schedules apply, no change", "GetSchedule"),
        ] {
            let mut cmd = std::process::Command::new(&self.opts.connector_bin);
            cmd.args(["schedules", "apply", "--json", "--config"]).arg(ws.config_path()).current_dir(ws.path());
            for (k, v) in &ws.env {
                cmd.env(k, v);
            }
            let finished = run_measured(&self.opts.bench_exe, cmd, self.scratch(), false).await?;
            let answer = finished.json()?;
            let calls =
                |op: &str| answer.pointer(&format!("/calls/{op}")).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let total: u64 =
                answer["calls"].as_object().map_or(0, |m| m.values().filter_map(serde_json::Value::as_u64).sum());
            let changed =
                answer["changes"].as_array().map_or(0, |c| c.iter().filter(|c| c["action"] != "unchanged").count());
            anyhow::ensure!(calls(write) == n as u64, "{figure}: {} {write} calls for {n} connectors", calls(write));
            let expected_changes = if write == "CreateSchedule" { n } else { 0 };
            anyhow::ensure!(changed == expected_changes, "{figure}: {changed} changes");
            if write == "GetSchedule" {
                anyhow::ensure!(calls("ListSchedules") as f64 == pages, "{figure}: {} pages", calls("ListSchedules"));
            }
            // moto's own time per call, once the schedules exist.
            let per_call = match emulator_per_call {
                Some(per_call) => per_call,
                None => {
                    let per_call = bare_gets(&scheduler, &group, n.min(1_000)).await?;
                    emulator_per_call = Some(per_call);
                    per_call
                }
            };
            let wall = finished.measured.wall_s;
            let floor = total as f64 / DEFAULT_REQUESTS_PER_SECOND;
            let emulator = total as f64 * per_call;
            // The process also loads the config before its first call.
            let limit = floor.max(emulator) + load_ms / 1e3;
            let cpu = finished.measured.cpu_s();
            self.rows.push(
                Row::new(key, format!("{figure}, {} connectors (moto), wall vs limit", human(n)), wall / limit, "x")
                    .at_most(1.25, true)
                    .note(format!(
                        "{} s for {total} Scheduler calls ({} {write}, {} ListSchedules; {changed} changes); limit {} s = max(pacing floor {} s at {} req/s, moto {} s) + the config load; CLI CPU {} s",
                        fmt_num(wall),
                        calls(write),
                        calls("ListSchedules"),
                        fmt_num(limit),
                        fmt_num(floor),
                        fmt_num(DEFAULT_REQUESTS_PER_SECOND),
                        fmt_num(emulator),
                        fmt_num(cpu),
                    )),
            );
        }
        Ok(())
    }
}

/// Seconds per call of `count` bare `GetSchedule`s at the apply's
/// concurrency, unpaced: the emulator's own cost.
async fn bare_gets(client: &aws_sdk_scheduler::Client, group: &str, count: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| async move {
            client.get_schedule().group_name(group).name(format!("person-{i:05}")).send().await.map(|_| ())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .context("bare GetSchedule calls")?;
    Ok(started.elapsed().as_secs_f64() / count as f64)
}
