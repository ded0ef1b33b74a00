//! The open-loop load generator of figure 6 (`bench load`): GETs one URL at
//! a fixed rate from its own process, on a keep-alive reqwest pool, and
//! prints latency percentiles as JSON.
//!
//! Open loop: request `i` is due at `start + i / rate` whatever the answers
//! before it did; a pacer thread (`std::thread::sleep`, ~0.1 ms precision,
//! where tokio's timer has 1 ms granularity) hands each request to the
//! runtime when it is due. Latency runs from the *due* time to the end of
//! the answer's body, so a stalled server (or a late pacer) is charged for
//! the whole wait instead of delaying the next sends (no coordinated
//! omission). How late the pacer itself was is reported (`send_lag_p99_ms`).

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What `bench load` needs.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    pub url: String,
    /// Requests per second.
    pub rate: f64,
    pub seconds: f64,
    /// Sent as `X-API-Key`.
    pub key: Option<String>,
}

/// What `bench load` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub sent: usize,
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers (ok or not) per second, first due time to last answer.
    pub achieved_rate: f64,
    /// How late the pacer handed requests over (p99), included in the latencies.
    pub send_lag_p99_ms: f64,
    pub duration_s: f64,
}

/// The `load` subcommand: prints a [`LoadReport`] as JSON.
pub fn load_main(args: &LoadArgs) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.seconds > 0.0) {
        bail!("--rate and --seconds must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = run(&runtime, args)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One answered request: latency from its due time, and how late it was sent.
struct Sample {
    latency_s: f64,
    lag_s: f64,
    answered: Instant,
    error: Option<String>,
}

fn run(runtime: &tokio::runtime::Runtime, args: &LoadArgs) -> anyhow::Result<LoadReport> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &args.key {
        headers.insert("x-api-key", reqwest::header::HeaderValue::from_str(key)?);
    }
    let client = {
        let _guard = runtime.enter();
        reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?
    };
    // Warm-up, not measured: open a few pooled connections and check the answer.
    runtime.block_on(async {
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let client = client.clone();
            let url = args.url.clone();
            warm.spawn(async move {
                for _ in 0..25 {
                    let answer = client.get(&url).send().await?;
                    let status = answer.status();
                    let body = answer.bytes().await?;
                    if !status.is_success() {
                        bail!(
                            "warm-up GET {url} answered {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        );
                    }
                }
                Ok(())
            });
        }
        while let Some(done) = warm.join_next().await {
            done.context("warm-up task")??;
        }
        anyhow::Ok(())
    })?;

    let total = (args.rate * args.seconds).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let handle = runtime.handle().clone();
    let url = args.url.clone();
    let start = Instant::now() + Duration::from_millis(10);
    // The pacer: sleeps until each due time, then hands the request over.
    let pacer = std::thread::spawn(move || {
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let client = client.clone();
            let url = url.clone();
            tasks.push(handle.spawn(async move {
                let lag_s = Instant::now().saturating_duration_since(due).as_secs_f64();
                let error = match client.get(&url).send().await {
                    Ok(answer) => {
                        let status = answer.status();
                        match answer.bytes().await {
                            Ok(_) if status.is_success() => None,
                            Ok(_) => Some(format!("HTTP {status}")),
                            Err(e) => Some(format!("body: {e}")),
                        }
                    }
                    Err(e) => Some(format!("send: {e}")),
                };
                let answered = Instant::now();
                Sample { latency_s: answered.saturating_duration_since(due).as_secs_f64(), lag_s, answered, error }
            }));
        }
        tasks
    });
    let tasks = pacer.join().map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    let samples: Vec<Sample> = runtime.block_on(async {
        let mut samples = Vec::with_capacity(tasks.len());
        for task in tasks {
            samples.push(task.await.context("request task")?);
        }
        anyhow::Ok(samples)
    })?;
    Ok(summarise(start, &samples))
}

fn summarise(start: Instant, samples: &[Sample]) -> LoadReport {
    let mut latencies: Vec<f64> = samples.iter().filter(|s| s.error.is_none()).map(|s| s.latency_s * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let mut lags: Vec<f64> = samples.iter().map(|s| s.lag_s * 1e3).collect();
    lags.sort_by(f64::total_cmp);
    let last = samples.iter().map(|s| s.answered).max().unwrap_or(start);
    let duration_s = last.saturating_duration_since(start).as_secs_f64();
    let errors = samples.iter().filter(|s| s.error.is_some()).count();
    LoadReport {
        sent: samples.len(),
        ok: samples.len() - errors,
        errors,
        first_error: samples.iter().find_map(|s| s.error.clone()),
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        achieved_rate: if duration_s > 0.0 { samples.len() as f64 / duration_s } else { 0.0 },
        send_lag_p99_ms: percentile(&lags, 0.99),
        duration_s,
    }
}

/// Nearest-rank percentile of sorted values (0 when empty: `ok` is 0 then).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.50), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
