//! The bench driver on a tiny workload (N = 200), so `make bench` cannot rot:
//! every figure produces its rows (figure 1 in both insert modes, with the
//! limit client's replay checked against the connector's requests; the
//! Lambda `sync` bootstrap's cold start against the stand-in runtime API),
//! the JSON is written, and a second run prints the delta against the
//! first. Targets are not checked here (debug build, shared machine);
//! `make bench` measures them.

use sims::bench::report::{Report, Verdict};
use sims::harness::{connector_bin, workspace_bin};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The debug `sync` Lambda bootstrap (another package's binary).
fn lambda_bootstrap() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("sync", "sync", None)).clone()
}

fn run_bench(out_dir: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--smoke", "--profile", "dev", "--out-dir"])
        .arg(out_dir)
        .env("MEMORY_CONNECTOR_BIN", connector_bin())
        .env("BENCH_LAMBDA_BOOTSTRAP", lambda_bootstrap())
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn bench_smoke_run_reports_every_figure_and_the_delta() {
    let out = tempfile::tempdir().unwrap();
    let first = run_bench(out.path());
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("latest.json")).unwrap()).unwrap();
    assert_eq!(report.n, 200);
    for prefix in [
        "1.throughput_ratio.b1",
        "1.throughput_ratio.b10",
        "1.throughput_ratio.b50",
        "1.throughput_ratio.batched.b1",
        "1.throughput_ratio.batched.b10",
        "1.throughput_ratio.batched.b50",
        "2.cpu_per_memory_us",
        "2.cpu_per_memory_us.batched",
        "2.cpu.rest",
        "3.noop.sqlite.1000.wall_ms",
        "3.noop.json.1000.rss_mb",
        "3.json_first_sync.ratio",
        "4.peak_rss_mb",
        "4.peak_rss_mb.batched",
        "5.startup_ms",
        "5.binary_mb",
        "5.lambda_init",
        "5.lambda_rss_mb",
        "5.lambda_binary_mb",
        "5.lambda_zip_mb",
        "6.status_latency",
        "6.status_latency.p50",
        "6.status_rate",
        "6.status_errors",
        "6.status_server_cpu_us",
        "7.slow_sink.b10.rate",
        "7.slow_sink.b50.in_flight",
        "8.usd_per_million",
        "8.noop.rru",
        "8.edited.rru",
        "8.usd_per_connector_month",
        "9.config_load_ms",
    ] {
        let row = report.rows.iter().find(|r| r.key == prefix).unwrap_or_else(|| panic!("no row {prefix}:\n{first}"));
        assert!(row.verdict != Verdict::NotYet, "{row:?}");
        assert!(row.value.is_some_and(f64::is_finite), "{row:?}");
    }
    // The window never exceeds batch_size, even in a debug build.
    let in_flight = report.rows.iter().find(|r| r.key == "7.slow_sink.b10.in_flight").unwrap();
    assert!(in_flight.value.unwrap() <= 10.0, "{in_flight:?}");
    assert!(first.contains("1. wall vs limit, per-item, batch_size 10"), "{first}");
    assert!(first.contains("1. wall vs limit, batched, batch_size 50"), "{first}");
    // 200 memories in batches of 50: 4 batch requests, replayed as sent.
    let batched = report.rows.iter().find(|r| r.key == "1.throughput_ratio.batched.b50").unwrap();
    assert!(batched.note.contains("; 4 insert requests"), "{batched:?}");

    let second = run_bench(out.path());
    assert!(out.path().join("previous.json").exists());
    assert!(second.contains("delta"), "no delta column:\n{second}");
}
