//! `memory-connector schedules apply|drift` and `deploy-config`: the
//! EventBridge Scheduler schedules and the deployed config of the serverless
//! shape (decision 0025). The stack is named by its schedule group, whose
//! tags say where the schedules send and where the config lives.

use crate::Common;
use crate::commands::{self, EXIT_FAILED, EXIT_OK, Failure};
use crate::output;
use clap::{Args, Subcommand};
use connector_core::config::{self, Config, Environment};
use connector_core::deploy::{ConfigUpload, DeployError, DeployTarget, Deployer, paused_connectors};
use connector_core::schedule::rules::DEFAULT_PREFIX;
use connector_core::schedule::scheduler::Change;
use connector_core::schedule::scheduler::client::DEFAULT_REQUESTS_PER_SECOND;
use serde_json::json;
use std::time::Instant;

/// Which stack, and how fast to talk to it.
#[derive(Debug, Args, Clone)]
pub struct Stack {
    /// The stack's schedule group (output ScheduleGroupName); its tags name the
    /// queue, the scheduler role, the dead-letter queue and the config object.
    #[arg(long, env = "SCHEDULE_GROUP", default_value = "memory-connector")]
    group: String,
    /// Name prefix of the EventBridge rules an earlier version made (they are deleted).
    #[arg(long, env = "SCHEDULE_RULE_PREFIX", default_value = DEFAULT_PREFIX)]
    rules_prefix: String,
    /// EventBridge Scheduler requests per second (throttled calls back off and retry).
    #[arg(long, default_value_t = DEFAULT_REQUESTS_PER_SECOND)]
    requests_per_second: f64,
}

impl Stack {
    fn target(&self) -> DeployTarget {
        DeployTarget {
            group: self.group.clone(),
            rules_prefix: self.rules_prefix.clone(),
            requests_per_second: self.requests_per_second,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create, update, disable and delete schedules so there is one per connector
    /// (idempotent); deletes the EventBridge rules an earlier version made. On a
    /// stack with a deployed config, only that config (else: deploy-config).
    Apply {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        stack: Stack,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare the schedules with the deployed config (S3, or --config when the
    /// stack has none); exit 1 when they differ. Changes nothing.
    Drift {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        stack: Stack,
    },
}

fn deploy_failure(e: DeployError) -> Failure {
    if e.is_usage() { Failure::usage(e.to_string()) } else { Failure::failed(e.to_string()) }
}

async fn connect(stack: &Stack) -> Result<Deployer, Failure> {
    let sdk = connector_core::aws::sdk_config().await;
    Deployer::connect(&sdk, &stack.target()).await.map_err(deploy_failure)
}

/// Reconciles the schedules with `config`; prints the changes.
async fn reconcile(
    common: &Common,
    deployer: &Deployer,
    config: &Config,
    dry_run: bool,
    upload: Option<ConfigUpload>,
    started: Instant,
) -> Result<Vec<Change>, Failure> {
    let store = commands::store(config).await?;
    let paused = paused_connectors(store.as_ref(), config).await.map_err(|e| deploy_failure(e.into()))?;
    let desired = deployer.desired(config, &paused).map_err(deploy_failure)?;
    let changes = deployer.reconcile(&desired, dry_run).await.map_err(deploy_failure)?;
    let seconds = started.elapsed().as_secs_f64();
    let calls = deployer.calls();
    if common.json {
        output::print_json(&json!({
            "dry_run": dry_run,
            "group": deployer.deployment().group,
            "config": upload,
            "changes": changes,
            "calls": calls,
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }));
    } else {
        if let Some(upload) = &upload {
            println!("{}", describe_upload(upload));
        }
        for change in changes.iter().filter(|c| c.is_change()) {
            println!("{}", describe(change));
        }
        let n = changes.iter().filter(|c| c.is_change()).count();
        let verb = if dry_run { "would make" } else { "made" };
        println!(
            "{n} change(s) {verb}, {} unchanged, {} connector(s) in the config; {} Scheduler call(s) in {seconds:.1} s",
            changes.len() - n,
            config.connectors.len(),
            calls.values().sum::<u64>()
        );
    }
    Ok(changes)
}

pub async fn run(command: SchedulesCommand) -> u8 {
    match command {
        SchedulesCommand::Apply { common, stack, dry_run } => {
            let result = async {
                let config = commands::load(&common)?;
                let started = Instant::now();
                let deployer = connect(&stack).await?;
                refuse_a_config_the_functions_do_not_have(&common, &deployer).await?;
                reconcile(&common, &deployer, &config, dry_run, None, started).await?;
                Ok(EXIT_OK)
            }
            .await;
            commands::finish(&common, result)
        }
        SchedulesCommand::Drift { common, stack } => {
            let result = async {
                let started = Instant::now();
                let deployer = connect(&stack).await?;
                let config = if deployer.deployment().config_uri.is_some() {
                    let (text, uri) = deployer.deployed_text().await.map_err(deploy_failure)?.ok_or_else(|| {
                        Failure::usage("no config has been deployed to the stack yet: run `memory-connector deploy-config`")
                    })?;
                    config::load_str(&text, &uri, &Environment::for_config(&common.config))
                        .map_err(|e| deploy_failure(DeployError::DeployedConfig { source_name: uri, detail: e.to_string() }))?
                } else {
                    commands::load(&common)?
                };
                let changes = reconcile(&common, &deployer, &config, true, None, started).await?;
                let drift = changes.iter().filter(|c| c.is_change()).count();
                if drift == 0 {
                    if !common.json {
                        println!("no drift: the schedules match the deployed config");
                    }
                    Ok(EXIT_OK)
                } else {
                    eprintln!(
                        "drift: {drift} schedule(s) or rule(s) differ from the deployed config; `memory-connector deploy-config` (or `schedules apply`) puts them back"
                    );
                    Ok(EXIT_FAILED)
                }
            }
            .await;
            commands::finish(&common, result)
        }
    }
}

/// On a stack whose functions read the deployed config, schedules made
/// from another config would drift from it: only the deployed text itself
/// may be applied alone; anything else goes through `deploy-config`.
async fn refuse_a_config_the_functions_do_not_have(common: &Common, deployer: &Deployer) -> Result<(), Failure> {
    if deployer.deployment().config_uri.is_none() {
        return Ok(()); // the config is the Lambda layer
    }
    let local = std::fs::read_to_string(&common.config)
        .map_err(|e| Failure::usage(format!("{}: {e}", common.config.display())))?;
    match deployer.deployed_text().await.map_err(deploy_failure)? {
        Some((deployed, _)) if deployed == local => Ok(()),
        Some((_, uri)) => Err(Failure::usage(format!(
            "{} differs from the deployed config {uri}: `memory-connector deploy-config` uploads it and reconciles the schedules in one step",
            common.config.display()
        ))),
        None => Err(Failure::usage(
            "no config has been deployed to the stack yet: `memory-connector deploy-config` uploads it and reconciles the schedules in one step",
        )),
    }
}

/// `deploy-config`: validate, upload, reconcile, in that order.
pub async fn deploy_config(common: Common, stack: Stack, dry_run: bool) -> u8 {
    let result = async {
        let config = commands::load(&common)?;
        let text = std::fs::read_to_string(&common.config)
            .map_err(|e| Failure::usage(format!("{}: {e}", common.config.display())))?;
        let started = Instant::now();
        let deployer = connect(&stack).await?;
        // Refusals (concurrency, expressions, windows) before the upload.
        deployer.desired(&config, &Default::default()).map_err(deploy_failure)?;
        let upload = deployer.upload(&text, dry_run).await.map_err(deploy_failure)?;
        reconcile(&common, &deployer, &config, dry_run, Some(upload), started).await?;
        Ok(EXIT_OK)
    }
    .await;
    commands::finish(&common, result)
}

fn describe_upload(upload: &ConfigUpload) -> String {
    match upload {
        ConfigUpload::Unchanged { uri } => format!("config     {uri} unchanged"),
        ConfigUpload::Uploaded { uri, etag } => format!("config     {uri} uploaded (ETag {etag})"),
        ConfigUpload::WouldUpload { uri } => format!("config     {uri} differs: would upload"),
    }
}

fn describe(change: &Change) -> String {
    match change {
        Change::Create { schedule, expression, timezone, enabled } => {
            format!("create     {schedule}  {expression} {timezone}{}", if *enabled { "" } else { " (disabled)" })
        }
        Change::Update { schedule, what } => format!("update     {schedule}  {}", what.join(", ")),
        Change::Delete { schedule } => format!("delete     {schedule}"),
        Change::Unchanged { schedule } => format!("unchanged  {schedule}"),
        Change::DeleteRule { rule } => format!("delete     rule {rule} (EventBridge rule of an earlier version)"),
    }
}
