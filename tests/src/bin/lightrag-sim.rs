//! `lightrag-sim`: the simulated LightRAG 1.5.7 server as a process, for
//! end-to-end tests of the `memory-connector` binary and for benchmarks.
//! Steer it through `/_control/*` (see `sims::lightrag_sim`).

use anyhow::Context;
use clap::Parser;
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A LightRAG 1.5.7 server in memory.
#[derive(Debug, Parser)]
#[command(name = "lightrag-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: the system picks one; see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Require this key in `X-API-Key` (LIGHTRAG_API_KEY).
    #[arg(long)]
    api_key: Option<String>,
    /// Write the chosen port to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Milliseconds one document takes from pending to processed.
    #[arg(long, default_value_t = 0)]
    process_delay_ms: u64,
    /// Milliseconds a deletion runs (inserts get 409 meanwhile).
    #[arg(long, default_value_t = 0)]
    delete_delay_ms: u64,
    /// Milliseconds added to every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The workspace `/health` reports.
    #[arg(long, default_value = "")]
    workspace: String,
    /// MAX_PENDING_DOCUMENTS: 429 while this many documents wait.
    #[arg(long)]
    max_pending_documents: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = LightragSimOptions {
        api_key: args.api_key,
        process_delay: Duration::from_millis(args.process_delay_ms),
        delete_delay: Duration::from_millis(args.delete_delay_ms),
        latency: Duration::from_millis(args.latency_ms),
        workspace: args.workspace,
        max_pending_documents: args.max_pending_documents,
        ..LightragSimOptions::default()
    };
    let sim = LightragSim::start_on(SocketAddr::new(args.host, args.port), options).await?;
    if let Some(path) = &args.port_file {
        // Written whole then renamed, so a reader never sees a partial number.
        let temp = path.with_extension("tmp");
        tokio::fs::write(&temp, sim.addr().port().to_string())
            .await
            .with_context(|| format!("writing {}", temp.display()))?;
        tokio::fs::rename(&temp, path)
            .await
            .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    }
    println!("lightrag-sim listening on {}", sim.url());
    stopped().await?;
    drop(sim);
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one.
async fn stopped() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
