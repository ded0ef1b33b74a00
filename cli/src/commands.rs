//! One function per subcommand: load, call the core, print, return the exit code.

use crate::Common;
use crate::output;
use connector_core::admin::{self, AbandonedLeases};
use connector_core::config::{self, Config, ConnectorConfig};
use connector_core::ids::ConnectorId;
use connector_core::state::{self, StateStore, Trigger};
use connector_core::status;
use connector_core::sync::{RunOptions, SyncError};
use connector_core::wiring::Adapters;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// A command that could not do its job: what to print and how to exit.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self { code: EXIT_USAGE, message: message.into() }
    }
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self { code: EXIT_FAILED, message: message.into() }
    }
}

/// Prints the failure (JSON on stdout with `--json`, always text on stderr).
fn report_failure(common: &Common, failure: Failure) -> u8 {
    if common.json {
        output::print_json(&serde_json::json!({ "error": { "code": failure.code, "message": failure.message } }));
    }
    eprintln!("error: {}", failure.message);
    failure.code
}

pub(crate) fn finish(common: &Common, result: Result<u8, Failure>) -> u8 {
    result.unwrap_or_else(|failure| report_failure(common, failure))
}

pub(crate) fn load(common: &Common) -> Result<Config, Failure> {
    let config = config::load(&common.config).map_err(|e| Failure::usage(e.to_string()))?;
    connector_core::telemetry::logging::init(&config.logging);
    Ok(config)
}

fn connector<'a>(config: &'a Config, id: &str) -> Result<&'a ConnectorConfig, Failure> {
    config.connector(&ConnectorId::new(id)).ok_or_else(|| {
        let known: Vec<&str> = config.connectors.iter().map(|c| c.id.as_str()).collect();
        Failure::usage(format!("unknown connector `{id}`; configured connectors: {}", known.join(", ")))
    })
}

pub(crate) async fn store(config: &Config) -> Result<Arc<dyn StateStore>, Failure> {
    state::open_for(config).await.map_err(|e| Failure::failed(e.to_string()))
}

fn adapters(config: &Config, store: Arc<dyn StateStore>) -> Result<Adapters, Failure> {
    Adapters::from_config(config, store)
        .map_err(|e| if e.is_config_problem() { Failure::usage(e.to_string()) } else { Failure::failed(e.to_string()) })
}

pub async fn sync(common: &Common, connector_id: &str, force: bool, dry_run: bool) -> u8 {
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?.clone();
        let store = store(&config).await?;
        let adapters = adapters(&config, store.clone())?;
        let engine = adapters.engine(&config, &connector, store, config.advanced.pipeline.job_timeout());
        let options = RunOptions { force, dry_run, trigger: Trigger::Cli, limits: None };
        let report = engine.run(options).await.map_err(|e| match e {
            SyncError::AlreadyRunning { .. } => Failure::failed(format!("{e}; not starting a second run")),
            SyncError::Paused(_) => Failure::failed(e.to_string()),
            SyncError::State(e) => Failure::failed(e.to_string()),
        })?;
        if common.json {
            output::print_json(&report);
        } else {
            output::print_report(&report);
        }
        Ok(report.exit_code() as u8)
    }
    .await;
    finish(common, result)
}

pub async fn status(common: &Common, connector_id: &str) -> u8 {
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?;
        let store = store(&config).await?;
        let view = status::connector_status(connector, store.as_ref(), chrono::Utc::now())
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&view);
        } else {
            output::print_status(&view);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn list(common: &Common) -> u8 {
    let result = async {
        let config = load(common)?;
        let store = store(&config).await?;
        let rows = status::list(&config, store.as_ref(), chrono::Utc::now())
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&rows);
        } else {
            output::print_list(&rows);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn reset(common: &Common, connector_id: &str, yes: bool) -> u8 {
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?;
        let store = store(&config).await?;
        if !yes {
            confirm(&format!(
                "Reset connector {}? Its ledger is forgotten and the next sync re-sends every memory. [y/N] ",
                connector.id
            ))?;
        }
        admin::reset(store.as_ref(), &connector.id, AbandonedLeases::Release, chrono::Utc::now())
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&serde_json::json!({ "connector_id": connector.id, "reset": true }));
        } else {
            println!("Connector {} reset: the next sync re-sends every memory.", connector.id);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

fn confirm(question: &str) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage("reset needs confirmation: pass --yes when not running in a terminal"));
    }
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Failure::usage("reset cancelled"))
    }
}

pub fn validate(common: &Common, show: bool) -> u8 {
    let result = (|| {
        let config = config::load(&common.config).map_err(|e| Failure::usage(e.to_string()))?;
        let warnings = config::exposure_warnings(&config, None);
        if common.json {
            let mut answer = serde_json::json!({
                "valid": true,
                "config": common.config,
                "connectors": config.connectors.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                "serve_problems": config::api_auth_problem(&config.api).into_iter().collect::<Vec<_>>(),
                "warnings": warnings,
            });
            if show {
                answer["effective"] = serde_json::to_value(&config).unwrap_or_default();
            }
            output::print_json(&answer);
        } else {
            println!(
                "{}: valid ({} connector{})",
                common.config.display(),
                config.connectors.len(),
                if config.connectors.len() == 1 { "" } else { "s" }
            );
            if let Some(problem) = config::api_auth_problem(&config.api) {
                println!("note: `serve` and `trigger` will refuse it: {problem}");
            }
            for warning in &warnings {
                println!("warning: {warning}");
            }
            if show {
                print!("{}", config::redacted_yaml(&config));
            }
        }
        Ok(EXIT_OK)
    })();
    finish(common, result)
}

pub async fn history(common: &Common, connector_id: &str, limit: usize) -> u8 {
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?;
        let store = store(&config).await?;
        let runs = store.runs(&connector.id, limit).await.map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&runs);
        } else {
            output::print_history(&runs);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn failed(common: &Common, connector_id: &str) -> u8 {
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?;
        let store = store(&config).await?;
        let entries = admin::failed(store.as_ref(), &connector.id).await.map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&entries);
        } else {
            output::print_failed(&entries);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn retry_failed(common: &Common, connector_id: &str) -> u8 {
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?;
        let store = store(&config).await?;
        let count =
            admin::retry_failed(store.as_ref(), &connector.id).await.map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&serde_json::json!({ "connector_id": connector.id, "replayed": count }));
        } else {
            println!("{count} failed or dead memories of {} will be retried on the next sync.", connector.id);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn serve(common: &Common, options: connector_core::service::ServeOptions) -> u8 {
    let result = async {
        let config = load(common)?;
        if options.api
            && let Some(problem) = config::api_auth_problem(&config.api)
        {
            return Err(Failure::usage(format!("{}: {problem}", common.config.display())));
        }
        connector_core::secrets::warn_if_readable_by_others(&common.config);
        let store = store(&config).await?;
        let adapters = adapters(&config, store.clone())?;
        connector_core::service::serve(Arc::new(config), store, adapters, options)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn trigger(common: &Common, connector_id: &str, force: bool, port: Option<u16>) -> u8 {
    use connector_core::api::client;
    let result = async {
        let config = load(common)?;
        let connector = connector(&config, connector_id)?;
        if let Some(problem) = config::api_auth_problem(&config.api) {
            return Err(Failure::usage(format!(
                "{}: {problem} (`trigger` sends it to the running service)",
                common.config.display()
            )));
        }
        let base = client::base_url(&config.api, port);
        let outcome = client::trigger(&config.api, &base, &connector.id, force)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&outcome);
        } else {
            println!(
                "Run {} of {} started (asynchronously); follow it with `status`.",
                outcome.run_id, outcome.connector_id
            );
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn health(common: &Common, port: Option<u16>) -> u8 {
    use connector_core::api::client;
    let result = async {
        let config = load(common)?;
        let base = client::base_url(&config.api, port);
        let health = client::health(&config.api, &base).await.map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&health);
        } else {
            match &health.details {
                Some(d) => println!(
                    "{} (version {}, up {} s, {} active jobs)",
                    health.status, health.version, d.uptime_seconds, d.active_jobs
                ),
                None => println!("{} (version {})", health.status, health.version),
            }
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn state_backup(common: &Common, to: &std::path::Path) -> u8 {
    let result = async {
        let config = load(common)?;
        let bytes = state::backup::backup(&config, to).await.map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&serde_json::json!({ "backup": to, "bytes": bytes }));
        } else {
            println!("State backed up to {} ({bytes} bytes).", to.display());
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn state_restore(common: &Common, from: &std::path::Path) -> u8 {
    let result = async {
        let config = load(common)?;
        // Not the live store first: a backup is checked before anything is
        // opened, and a live state too broken to open is what it replaces.
        let restored = state::backup::restore(&config, from).await.map_err(|e| Failure::failed(e.to_string()))?;
        if common.json {
            output::print_json(&serde_json::json!({
                "restored_from": from,
                "connectors": restored.connectors,
                "entries": restored.entries,
                "runs": restored.runs,
                "previous_state": restored.previous,
            }));
        } else {
            println!(
                "State restored from {} ({} connectors, {} ledger entries, {} runs).",
                from.display(),
                restored.connectors,
                restored.entries,
                restored.runs
            );
            if let Some(previous) = &restored.previous {
                println!("The state it replaced is kept at {}.", previous.display());
            }
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}
