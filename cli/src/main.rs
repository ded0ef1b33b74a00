//! `memory-connector`: the one-binary shape of the connector.
//!
//! Each subcommand translates its arguments into calls of the core library
//! and its results into human text or `--json`. Exit codes: 0 ok, 1 run
//! failed, 2 bad configuration or usage, 3 partial (some memories failed).

mod commands;
mod lookup;
mod output;
#[cfg(feature = "aws")]
mod schedules;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps a LightRAG knowledge graph in sync with a Memory API.
#[derive(Debug, Parser)]
#[command(name = "memory-connector", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Configuration file path.
    #[arg(long, global = true, env = "CONFIG_PATH", default_value = "config.yaml")]
    pub config: PathBuf,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one sync of a connector now.
    Sync {
        #[command(flatten)]
        common: Common,
        /// Connector ID to sync.
        #[arg(long)]
        connector_id: String,
        /// Re-send every memory, whatever the ledger says (resets nothing else).
        #[arg(long)]
        force: bool,
        /// Print what would be added, updated and skipped; send and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the sync status of a connector.
    Status {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
    },
    /// List the configured connectors.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Forget a connector's ledger and state, so the next sync re-sends everything.
    Reset {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Check the configuration and report every problem found.
    Validate {
        #[command(flatten)]
        common: Common,
        /// Also print the effective configuration (secrets shown as ***).
        #[arg(long)]
        show: bool,
    },
    /// Show the run history of a connector, newest first.
    History {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// List the memories that failed or are dead, with their last error.
    Failed {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
    },
    /// Make failed and dead memories eligible again on the next sync.
    RetryFailed {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
    },
    /// Run the service: scheduler, management API and metrics, until SIGTERM/SIGINT.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Run only the API server (no scheduler).
        #[arg(long, conflicts_with = "scheduler_only")]
        api_only: bool,
        /// Run only the scheduler (no API).
        #[arg(long)]
        scheduler_only: bool,
        /// API host (default: api.host).
        #[arg(long)]
        host: Option<String>,
        /// API port (default: api.port; 0 picks a free port).
        #[arg(long)]
        port: Option<u16>,
        /// Write the bound ports as JSON (`{"api": P, "metrics": Q}`) to this file.
        #[arg(long)]
        port_file: Option<PathBuf>,
    },
    /// Back up or restore the local state (json or sqlite), safe while `serve` runs.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Check that the running service answers `/health` (exit 0) or not (exit 1).
    Health {
        #[command(flatten)]
        common: Common,
        /// Port of the service (default: api.port of the config).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Ask the running service to sync a connector now (asynchronously).
    Trigger {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
        /// Re-send every memory, whatever the ledger says.
        #[arg(long)]
        force: bool,
        /// Port of the service (default: api.port of the config).
        #[arg(long)]
        port: Option<u16>,
    },
    /// From LightRAG back to the memories: names, entities, a memory's entities.
    Lookup {
        #[command(subcommand)]
        action: LookupAction,
    },
    /// Ask LightRAG a question; each reference of the answer is resolved to its memory.
    Ask {
        #[command(flatten)]
        common: Common,
        /// The connector asking (LightRAG's references are resolved in every ledger).
        #[arg(long)]
        connector_id: String,
        /// LightRAG's query mode: mix (LightRAG's recommendation), local, global, hybrid, naive or bypass.
        #[arg(long)]
        mode: Option<String>,
        /// The question.
        question: String,
    },
    /// EventBridge schedules of the serverless shape (AWS build only).
    #[cfg(feature = "aws")]
    Schedules {
        #[command(subcommand)]
        action: schedules::SchedulesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LookupAction {
    /// The memory (or memories) a LightRAG document name stands for; several names joined with <SEP>.
    Resolve {
        #[command(flatten)]
        common: Common,
        /// A LightRAG `file_path`, e.g. memory_CTX123_42.txt.
        name: String,
        /// Also read each memory as the Memory API lists it now.
        #[arg(long)]
        fetch: bool,
    },
    /// The memories an entity came from (with --target: the relation between the two).
    ByEntity {
        #[command(flatten)]
        common: Common,
        /// The entity's name as LightRAG shows it (exact).
        name: String,
        /// The other entity of a relation.
        #[arg(long)]
        target: Option<String>,
    },
    /// The entities and relations LightRAG extracted from one memory.
    ByMemory {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connector_id: String,
        #[arg(long)]
        memory_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum StateAction {
    /// Write a consistent copy of the state to FILE.
    Backup {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        to: PathBuf,
    },
    /// Replace the state with the backup in FILE (refused while a run holds a lease).
    Restore {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        from: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` runs many things at once on every core; the one-shot commands
    // wait on the network and the state, and one thread does that with the
    // least CPU (no cross-thread wake-ups per request; see decision 0015).
    let mut builder = match cli.command {
        Command::Serve { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Sync { common, connector_id, force, dry_run } => {
                commands::sync(&common, &connector_id, force, dry_run).await
            }
            Command::Status { common, connector_id } => commands::status(&common, &connector_id).await,
            Command::List { common } => commands::list(&common).await,
            Command::Reset { common, connector_id, yes } => commands::reset(&common, &connector_id, yes).await,
            Command::Validate { common, show } => commands::validate(&common, show),
            Command::History { common, connector_id, limit } => commands::history(&common, &connector_id, limit).await,
            Command::Failed { common, connector_id } => commands::failed(&common, &connector_id).await,
            Command::RetryFailed { common, connector_id } => commands::retry_failed(&common, &connector_id).await,
            Command::Serve { common, api_only, scheduler_only, host, port, port_file } => {
                let options = connector_core::service::ServeOptions {
                    api: !scheduler_only,
                    scheduler: !api_only,
                    host,
                    port,
                    port_file,
                };
                commands::serve(&common, options).await
            }
            Command::State { action: StateAction::Backup { common, to } } => commands::state_backup(&common, &to).await,
            Command::State { action: StateAction::Restore { common, from } } => {
                commands::state_restore(&common, &from).await
            }
            Command::Health { common, port } => commands::health(&common, port).await,
            Command::Trigger { common, connector_id, force, port } => {
                commands::trigger(&common, &connector_id, force, port).await
            }
            Command::Lookup { action: LookupAction::Resolve { common, name, fetch } } => {
                lookup::resolve(&common, &name, fetch).await
            }
            Command::Lookup { action: LookupAction::ByEntity { common, name, target } } => {
                lookup::by_entity(&common, &name, target.as_deref()).await
            }
            Command::Lookup { action: LookupAction::ByMemory { common, connector_id, memory_id } } => {
                lookup::by_memory(&common, &connector_id, &memory_id).await
            }
            Command::Ask { common, connector_id, mode, question } => {
                lookup::ask(&common, &connector_id, &question, mode.as_deref()).await
            }
            #[cfg(feature = "aws")]
            Command::Schedules { action } => schedules::run(action).await,
        }
    });
    ExitCode::from(code)
}
