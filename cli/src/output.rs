//! Human and JSON output of the commands (logging is `connector_core::telemetry::logging`).

use chrono::{DateTime, Utc};
use connector_core::state::{LedgerEntry, RunRecord};
use connector_core::status::{ConnectorStatus, ConnectorSummary};
use connector_core::sync::RunReport;
use serde::Serialize;

pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot encode the answer as JSON: {e}"),
    }
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

pub fn print_report(report: &RunReport) {
    let c = &report.counts;
    let mode = if report.dry_run { " (dry run: nothing sent, nothing written)" } else { "" };
    println!(
        "Sync {} run {}: {} in {:.2} s{mode}",
        report.connector_id,
        report.run_id,
        report.status,
        report.duration_ms as f64 / 1000.0
    );
    let (new_label, updated_label) = if report.dry_run { ("would add", "would update") } else { ("new", "updated") };
    println!(
        "  fetched {} | {new_label} {} | {updated_label} {} | unchanged {} | waiting for transcript {} | failed {} | dead {}",
        c.fetched, c.new, c.updated, c.unchanged, c.skipped, c.failed, c.dead
    );
    if c.still_dead > 0 {
        println!("  dead before this run {} (see `failed`; `retry-failed` replays them)", c.still_dead);
    }
    if c.postponed > 0 {
        println!("  left for the next run (time ran out before enrichment) {}", c.postponed);
    }
    if c.rejected + c.deferred + c.backing_off > 0 {
        println!(
            "  malformed (skipped) {} | updates deferred {} | waiting for retry {}",
            c.rejected, c.deferred, c.backing_off
        );
    }
    if c.recovered + c.held_back + c.duplicates_removed > 0 {
        println!(
            "  recovery: sent by a run that died, found in LightRAG {} | held back for a later run {} | duplicate records removed {}",
            c.recovered, c.held_back, c.duplicates_removed
        );
    }
    if c.confirmed + c.lightrag_failed + c.stuck + report.unconfirmed > 0 {
        println!(
            "  LightRAG: processed {} | failed in LightRAG {} | still queued {} | stuck {}",
            c.confirmed, c.lightrag_failed, report.unconfirmed, c.stuck
        );
    }
    match &report.server {
        Some(server) => println!(
            "  sink: {} (LightRAG {}, workspace {:?})",
            report.sink,
            server.core_version.as_deref().unwrap_or("?"),
            server.workspace.as_deref().unwrap_or("?")
        ),
        None => println!("  sink: {}", report.sink),
    }
    for warning in &report.warnings {
        println!("  warning: {warning}");
    }
    if report.possibly_truncated {
        println!(
            "  warning: the Memory API returned a full page; more memories may be waiting (raise ingestion.query_limit)"
        );
    }
    if report.stopped_early {
        println!("  stopped at the deadline; the next run continues");
    }
    if let Some(error) = &report.error {
        println!("  error: {}", shown(error));
    }
    // Ids and upstream messages come from outside: one line each, no terminal escapes.
    for item in &report.errors {
        let id = item.memory_id.as_ref().map_or("-", |m| m.as_str());
        println!("  {} memory {}: {}", item.stage, shown(id), shown(&item.message));
    }
    if report.error_count > report.errors.len() as u64 {
        println!("  ... and {} more (see `failed`)", report.error_count - report.errors.len() as u64);
    }
    if let Some(plan) = &report.plan {
        for item in plan {
            println!(
                "  {:<18} {}",
                serde_json::to_value(item.action).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                shown(item.memory_id.as_str())
            );
        }
    }
}

pub fn print_status(view: &ConnectorStatus) {
    println!("Connector: {}", view.connector_id);
    println!("Status: {}", view.status);
    println!("Last Sync: {}", when(view.last_sync));
    println!("Processed: {} memories", view.processed);
    println!("Failed: {} memories", view.failed);
    println!("Next Run: {}", when(view.next_run));
    let counts: Vec<String> = view.ledger.iter().map(|(status, n)| format!("{status} {n}")).collect();
    println!("Ledger: {}", counts.join(", "));
    if let Some(run) = &view.last_run {
        println!(
            "Last Run: {} {} (new {}, updated {}, failed {}){}",
            run.run_id,
            run.status,
            run.counts.new,
            run.counts.updated,
            run.counts.failed,
            run.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
}

pub fn print_list(rows: &[ConnectorSummary]) {
    println!("{:<20} {:<9} {:<8} Last Sync", "ID", "Status", "Enabled");
    for row in rows {
        println!(
            "{:<20} {:<9} {:<8} {}",
            row.connector_id,
            row.status,
            if row.enabled { "yes" } else { "no" },
            row.last_sync.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        );
    }
}

pub fn print_history(runs: &[RunRecord]) {
    println!(
        "{:<30} {:<9} {:<20} {:>6} {:>7} {:>6} {:>6}",
        "Run", "Status", "Started", "New", "Updated", "Failed", "Dead"
    );
    for run in runs {
        println!(
            "{:<30} {:<9} {:<20} {:>6} {:>7} {:>6} {:>6}",
            run.run_id,
            run.status,
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            run.counts.new,
            run.counts.updated,
            run.counts.failed,
            run.counts.dead
        );
    }
}

pub fn print_failed(entries: &[LedgerEntry]) {
    if entries.is_empty() {
        println!("No failed memories.");
        return;
    }
    println!("{:<24} {:<15} {:>8}  Last error", "Memory", "Status", "Attempts");
    for e in entries {
        let error = e.last_error.as_deref().unwrap_or("-");
        println!("{:<24} {:<15} {:>8}  {}", shown(e.memory_id.as_str()), e.status, e.attempts, shown(error));
    }
}

/// Text from outside (memory ids, upstream errors) as one inert line: no
/// terminal escapes, no characters that hide or reorder text.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    connector_core::text::escape_shown(text)
}
