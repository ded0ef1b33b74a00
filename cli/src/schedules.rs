//! `memory-connector schedules apply` (the `aws` feature): the EventBridge
//! rules of the serverless shape, reconciled with the config.

use crate::Common;
use crate::commands::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::output;
use clap::Subcommand;
use connector_core::config;
use connector_core::schedule::rules::{Change, DEFAULT_PREFIX, RulesError, ScheduleRules};

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create, update, disable and delete EventBridge rules so there is one
    /// per connector, targeting the sync function (idempotent).
    Apply {
        #[command(flatten)]
        common: Common,
        /// Say what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The sync function's ARN (the rules' target).
        #[arg(long, env = "SYNC_FUNCTION_ARN")]
        target_arn: String,
        /// Rule names are `<prefix>-<connector id>`.
        #[arg(long, env = "SCHEDULE_RULE_PREFIX", default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// Event bus (default: the account's default bus).
        #[arg(long, env = "EVENT_BUS_NAME")]
        event_bus: Option<String>,
    },
}

pub async fn run(command: SchedulesCommand) -> u8 {
    let SchedulesCommand::Apply { common, dry_run, target_arn, prefix, event_bus } = command;
    let config = match config::load(&common.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let rules = ScheduleRules::from_env(prefix, event_bus, target_arn).await;
    match rules.apply(&config, dry_run).await {
        Ok(changes) => {
            if common.json {
                output::print_json(&serde_json::json!({"dry_run": dry_run, "changes": changes}));
            } else {
                let verb = if dry_run { "would" } else { "did" };
                for change in &changes {
                    println!("{}", describe(change));
                }
                let n = changes.iter().filter(|c| c.is_change()).count();
                println!("{n} change(s) ({verb}), {} rule(s) in the config", config.connectors.len());
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, RulesError::Schedule { .. } | RulesError::Name { .. }) { EXIT_USAGE } else { EXIT_FAILED }
        }
    }
}

fn describe(change: &Change) -> String {
    match change {
        Change::Create { rule, expression, enabled } => {
            format!("create     {rule}  {expression}{}", if *enabled { "" } else { " (disabled)" })
        }
        Change::Update { rule, what } => format!("update     {rule}  {}", what.join(", ")),
        Change::Delete { rule } => format!("delete     {rule}"),
        Change::Unchanged { rule } => format!("unchanged  {rule}"),
    }
}
