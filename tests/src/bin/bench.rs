//! `bench`: measures the connector's own cost (`make bench`). Prints the
//! table, writes `<out-dir>/latest.json` and the delta against the previous
//! one. The `measure`, `replay` and `load` subcommands are its own helpers.

use clap::{Parser, Subcommand};
use sims::bench::{self, BenchOptions, child, limit, load, report};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Measure memory-connector against the limit of a bare HTTP client")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Memories of the end-to-end workloads (at most 10,000, the Memory API's page).
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// A quick run that only proves the driver works.
    #[arg(long)]
    smoke: bool,
    /// Repetitions of each timed end-to-end run (the fastest counts).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The memory-connector binary to measure.
    #[arg(long, env = "MEMORY_CONNECTOR_BIN")]
    connector: Option<PathBuf>,
    /// Where latest.json (and previous.json) go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Name of the cargo profile of the binaries (reported).
    #[arg(long, default_value = "perf")]
    profile: String,
    /// The Lambda `sync` bootstrap to measure (figure 5; default: `sync`
    /// next to the bench, as `make bench` builds it).
    #[arg(long, env = "BENCH_LAMBDA_BOOTSTRAP")]
    lambda_bootstrap: Option<PathBuf>,
    /// Exit non-zero when a target is missed.
    #[arg(long)]
    strict: bool,
    /// Only these figures (comma-separated numbers; 1, 2, 4 and 8 run together).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command and write its wall time, CPU and peak RSS as JSON.
    #[command(hide = true)]
    Measure {
        out: PathBuf,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// The limit client: replay a run's HTTP requests with no connector logic.
    #[command(hide = true)]
    Replay {
        #[arg(long)]
        list_url: String,
        #[arg(long)]
        memory_key: String,
        #[arg(long)]
        lightrag_url: String,
        #[arg(long)]
        concurrency: usize,
        /// One request per line: `PATH<TAB>JSON body`.
        #[arg(long)]
        requests: PathBuf,
    },
    /// Open-loop load: GET a URL at a fixed rate, print latency percentiles as JSON.
    #[command(hide = true)]
    Load {
        #[arg(long)]
        url: String,
        /// Requests per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Sent as X-API-Key.
        #[arg(long, env = "BENCH_LOAD_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Measure { out, argv }) => child::measure_main(&out, &argv).map(|_| ExitCode::SUCCESS),
        Some(Command::Replay { list_url, memory_key, lightrag_url, concurrency, requests }) => {
            limit::replay_main(&limit::ReplayArgs { list_url, memory_key, lightrag_url, concurrency, requests })
                .map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Load { url, rate, seconds, key }) => {
            load::load_main(&load::LoadArgs { url, rate, seconds, key }).map(|()| ExitCode::SUCCESS)
        }
        None => run(cli),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench: {e:#}");
        ExitCode::FAILURE
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let bench_exe = child::self_exe()?;
    let connector = cli
        .connector
        .or_else(|| bench_exe.parent().map(|dir| dir.join("memory-connector")))
        .and_then(|path| std::fs::canonicalize(path).ok())
        .ok_or_else(|| {
            anyhow::anyhow!("memory-connector binary not found: pass --connector or MEMORY_CONNECTOR_BIN")
        })?;
    let lambda_bootstrap = cli
        .lambda_bootstrap
        .or_else(|| bench_exe.parent().map(|dir| dir.join("sync")))
        .and_then(|path| std::fs::canonicalize(path).ok());
    let options = BenchOptions {
        n: if cli.smoke { cli.n.min(200) } else { cli.n },
        smoke: cli.smoke,
        reps: if cli.smoke { 1 } else { cli.reps.max(1) },
        connector_bin: connector,
        lambda_bootstrap,
        bench_exe,
        profile: cli.profile,
        only: cli.only,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(bench::run(options))?;
    let previous = report::read(&cli.out_dir.join("latest.json"));
    print!("{}", report::table(&report, previous.as_ref()));
    println!(
        "\n{} rows, {} missed targets, {:.0} s; N = {}{}",
        report.rows.len(),
        report.failures(),
        report.duration_s,
        report.n,
        if previous.is_some() { "; delta against the previous latest.json" } else { "" }
    );
    report::write(&cli.out_dir, &report)?;
    println!("written to {}", cli.out_dir.join("latest.json").display());
    Ok(if cli.strict && report.failures() > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
