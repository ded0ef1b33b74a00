//! `memory-api-sim`: the Memory API simulator as a process (for `make run`
//! and benchmarks). Serves until SIGTERM or SIGINT.

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use sims::memory_sim::{MemorySim, MemorySimOptions, default_now};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Serves `GET /memory/{ctx}` over deterministic, untidy memories, plus
/// `/_control/*` endpoints to add memories, fill or edit transcripts and
/// inject faults.
#[derive(Debug, Parser)]
#[command(name = "memory-api-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: chosen by the system; see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed of the generated data: the same seed serves the same memories.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A context to serve; pair each with a --count (repeatable).
    #[arg(long = "context")]
    context: Vec<String>,
    /// How many memories the --context at the same position gets (default 40).
    #[arg(long = "count")]
    count: Vec<usize>,
    /// Contexts as `CTX=COUNT,CTX=COUNT` (adds to --context).
    #[arg(long, value_delimiter = ',')]
    contexts: Vec<String>,
    /// Require this `X-API-KEY` on `GET /memory/*`.
    #[arg(long, env = "MEMORY_API_SIM_KEY")]
    api_key: Option<String>,
    /// The simulator's fixed clock, RFC 3339 (default 2025-12-18T16:00:00Z).
    #[arg(long)]
    now: Option<String>,
    /// Malformed items (no id, not an object...) added to each context.
    #[arg(long, default_value_t = 0)]
    malformed: usize,
    /// Add hostile items to each context: bytes that are not UTF-8, deep
    /// nesting, lone surrogates, control characters and newlines in ids,
    /// 20,000 hashtags, numbers as ids.
    #[arg(long)]
    hostile: bool,
    /// Write the bound port to this file (atomically) once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

const DEFAULT_CONTEXT: &str = "CTX123";
const DEFAULT_COUNT: usize = 40;

fn contexts(args: &Args) -> anyhow::Result<Vec<(String, usize)>> {
    // A lone --count sizes the default context.
    if args.context.is_empty() && args.contexts.is_empty() && args.count.len() == 1 {
        return Ok(vec![(DEFAULT_CONTEXT.into(), args.count[0])]);
    }
    if !args.count.is_empty() && args.count.len() != args.context.len() {
        bail!(
            "{} --context but {} --count: give one --count per --context, or none",
            args.context.len(),
            args.count.len()
        );
    }
    let mut contexts: Vec<(String, usize)> = args
        .context
        .iter()
        .enumerate()
        .map(|(i, ctx)| (ctx.clone(), args.count.get(i).copied().unwrap_or(DEFAULT_COUNT)))
        .collect();
    for pair in args.contexts.iter().filter(|p| !p.trim().is_empty()) {
        let (ctx, count) = match pair.split_once('=') {
            Some((ctx, count)) => {
                let count =
                    count.trim().parse().with_context(|| format!("--contexts {pair:?}: the count is not a number"))?;
                (ctx.trim(), count)
            }
            None => (pair.trim(), DEFAULT_COUNT),
        };
        contexts.push((ctx.to_owned(), count));
    }
    if contexts.is_empty() {
        contexts.push((DEFAULT_CONTEXT.into(), DEFAULT_COUNT));
    }
    Ok(contexts)
}

/// Written beside the target then renamed, so a reader never sees half a port.
fn write_port_file(path: &Path, port: u16) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, format!("{port}\n")).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot rename {} to {}", temporary.display(), path.display()))
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now: DateTime<Utc> = match &args.now {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--now {text:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        None => default_now(),
    };
    let options = MemorySimOptions {
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        seed: args.seed,
        contexts: contexts(&args)?,
        now,
        malformed: args.malformed,
        hostile: args.hostile,
    };
    let summary: Vec<String> = options.contexts.iter().map(|(ctx, n)| format!("{ctx}={n}")).collect();
    let sim = MemorySim::start_on(SocketAddr::new(args.host, args.port), options).await?;
    if let Some(path) = &args.port_file {
        write_port_file(path, sim.addr().port())?;
    }
    // Exactly this line on stdout: scripts wait for it and read the URL from its end.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "memory-api-sim listening on {}", sim.url())?;
    stdout.flush()?;
    eprintln!("memory-api-sim: seed {}, now {}, contexts {}", args.seed, now.to_rfc3339(), summary.join(","));
    stop_signal().await;
    drop(sim);
    Ok(())
}
