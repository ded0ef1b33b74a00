//! CloudWatch metrics of the Lambda functions in embedded metric format:
//! one JSON line on stdout per `sync` invocation, which CloudWatch Logs
//! turns into metrics (no API call, no permission). The names here are the
//! ones the template's alarms and the README's queries use.
//!
//! | metric | unit | dimensions |
//! |---|---|---|
//! | `Runs` | Count | `Status` (completed, partial, failed, timed_out, skipped, already_running) |
//! | `MemoriesNew`, `MemoriesUpdated`, `MemoriesFailed`, `MemoriesDead` | Count | `ConnectorId` |
//! | `Duration` | Milliseconds | `ConnectorId` |
//! | `RejectedEvents` | Count | `Reason` (unknown_connector, bad_event, config, state, secrets) |
//!
//! Connector ids are dimensions only of the per-connector counts (a few
//! metrics per connector); `Runs` stays one metric per status, and the run
//! id, trigger and connector of each line are plain properties that Logs
//! Insights can group by.

use crate::ids::ConnectorId;
use crate::state::RunCounts;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::io::Write as _;
use std::sync::{Arc, Mutex};

/// The variable naming the CloudWatch namespace (the template's `MetricsNamespace`).
pub const NAMESPACE_ENV: &str = "METRICS_NAMESPACE";
pub const DEFAULT_NAMESPACE: &str = "MemoryConnector";

/// A metric the functions write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmfMetric {
    Runs,
    MemoriesNew,
    MemoriesUpdated,
    MemoriesFailed,
    MemoriesDead,
    Duration,
    RejectedEvents,
}

impl EmfMetric {
    pub const ALL: [EmfMetric; 7] = [
        EmfMetric::Runs,
        EmfMetric::MemoriesNew,
        EmfMetric::MemoriesUpdated,
        EmfMetric::MemoriesFailed,
        EmfMetric::MemoriesDead,
        EmfMetric::Duration,
        EmfMetric::RejectedEvents,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EmfMetric::Runs => "Runs",
            EmfMetric::MemoriesNew => "MemoriesNew",
            EmfMetric::MemoriesUpdated => "MemoriesUpdated",
            EmfMetric::MemoriesFailed => "MemoriesFailed",
            EmfMetric::MemoriesDead => "MemoriesDead",
            EmfMetric::Duration => "Duration",
            EmfMetric::RejectedEvents => "RejectedEvents",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            EmfMetric::Duration => "Milliseconds",
            _ => "Count",
        }
    }

    /// The one dimension it is published with.
    pub fn dimension(self) -> &'static str {
        match self {
            EmfMetric::Runs => "Status",
            EmfMetric::RejectedEvents => "Reason",
            _ => "ConnectorId",
        }
    }
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub enum Invocation<'a> {
    /// A run ended (any status), or was not started (`skipped`,
    /// `already_running`: then without counts).
    Run {
        connector: &'a ConnectorId,
        status: &'a str,
        counts: Option<&'a RunCounts>,
        duration_ms: u64,
        run_id: Option<&'a str>,
        trigger: Option<&'a str>,
    },
    /// The event did not lead to a run.
    Rejected { reason: &'a str, connector: Option<&'a ConnectorId> },
}

/// The metric line of `invocation` (one JSON object, no newline).
pub fn line(namespace: &str, invocation: &Invocation<'_>, at: DateTime<Utc>) -> String {
    let directive = |metrics: &[EmfMetric]| {
        json!({
            "Namespace": namespace,
            "Dimensions": [[metrics[0].dimension()]],
            "Metrics": metrics.iter().map(|m| json!({"Name": m.name(), "Unit": m.unit()})).collect::<Vec<_>>(),
        })
    };
    let mut root = serde_json::Map::new();
    let mut directives = Vec::new();
    match invocation {
        Invocation::Run { connector, status, counts, duration_ms, run_id, trigger } => {
            directives.push(directive(&[EmfMetric::Runs]));
            root.insert("Status".into(), json!(status));
            root.insert("ConnectorId".into(), json!(connector));
            root.insert(EmfMetric::Runs.name().into(), json!(1));
            if let Some(c) = counts {
                let per_connector = [
                    (EmfMetric::MemoriesNew, c.new),
                    (EmfMetric::MemoriesUpdated, c.updated),
                    (EmfMetric::MemoriesFailed, c.failed),
                    (EmfMetric::MemoriesDead, c.dead),
                    (EmfMetric::Duration, *duration_ms),
                ];
                directives.push(directive(&per_connector.map(|(m, _)| m)));
                for (metric, value) in per_connector {
                    root.insert(metric.name().into(), json!(value));
                }
            }
            if let Some(run_id) = run_id {
                root.insert("RunId".into(), json!(run_id));
            }
            if let Some(trigger) = trigger {
                root.insert("Trigger".into(), json!(trigger));
            }
        }
        Invocation::Rejected { reason, connector } => {
            directives.push(directive(&[EmfMetric::RejectedEvents]));
            root.insert("Reason".into(), json!(reason));
            root.insert(EmfMetric::RejectedEvents.name().into(), json!(1));
            if let Some(connector) = connector {
                root.insert("ConnectorId".into(), json!(connector));
            }
        }
    }
    root.insert("_aws".into(), json!({"Timestamp": at.timestamp_millis(), "CloudWatchMetrics": directives}));
    Value::Object(root).to_string()
}

/// Where metric lines go: stdout in Lambda (CloudWatch Logs reads it),
/// memory in tests.
#[derive(Debug, Clone)]
pub struct EmfWriter {
    namespace: String,
    captured: Option<Arc<Mutex<Vec<String>>>>,
}

impl EmfWriter {
    /// To stdout, in the namespace `vars` names ([`NAMESPACE_ENV`]) or the default.
    pub fn from_vars(vars: &std::collections::HashMap<String, String>) -> Self {
        let namespace = vars.get(NAMESPACE_ENV).map(|n| n.trim()).filter(|n| !n.is_empty());
        Self { namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_owned(), captured: None }
    }

    /// Into memory: the lines written so far are in the returned list.
    pub fn in_memory(namespace: &str) -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Self { namespace: namespace.to_owned(), captured: Some(Arc::clone(&lines)) }, lines)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Writes the line of `invocation`, whole, as one write.
    pub fn emit(&self, invocation: &Invocation<'_>) {
        let line = line(&self.namespace, invocation, Utc::now());
        match &self.captured {
            Some(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(line),
            None => {
                let mut out = std::io::stdout().lock();
                // A lost metric line must not fail the invocation.
                let _ = out.write_all(format!("{line}\n").as_bytes()).and_then(|()| out.flush());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    /// Every metric named in a directive is a number at the root, every
    /// dimension a string at the root (what CloudWatch requires to extract).
    fn assert_extractable(doc: &Value) {
        for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(directive["Namespace"], "NS");
            for set in directive["Dimensions"].as_array().unwrap() {
                for dimension in set.as_array().unwrap() {
                    assert!(doc[dimension.as_str().unwrap()].is_string(), "{dimension} in {doc}");
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(doc[metric["Name"].as_str().unwrap()].is_number(), "{metric} in {doc}");
            }
        }
        assert!(doc["_aws"]["Timestamp"].is_i64());
    }

    #[test]
    fn a_run_is_counted_by_status_and_its_memories_by_connector() {
        let connector = ConnectorId::new("docs");
        let counts = RunCounts { new: 3, updated: 1, failed: 2, dead: 1, ..RunCounts::default() };
        let run = Invocation::Run {
            connector: &connector,
            status: "partial",
            counts: Some(&counts),
            duration_ms: 1500,
            run_id: Some("r1"),
            trigger: Some("schedule"),
        };
        let doc = parse(&line("NS", &run, Utc::now()));
        assert_extractable(&doc);
        assert_eq!((doc["Status"].as_str(), doc["Runs"].as_u64()), (Some("partial"), Some(1)));
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Status"]]));
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][1]["Dimensions"], json!([["ConnectorId"]]));
        assert_eq!((doc["MemoriesNew"].as_u64(), doc["MemoriesFailed"].as_u64()), (Some(3), Some(2)));
        assert_eq!(doc["Duration"].as_u64(), Some(1500));
        assert_eq!(doc["RunId"], "r1");

        let skipped = Invocation::Run {
            connector: &connector,
            status: "skipped",
            counts: None,
            duration_ms: 3,
            run_id: None,
            trigger: None,
        };
        let doc = parse(&line("NS", &skipped, Utc::now()));
        assert_extractable(&doc);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(), 1, "no per-connector counts");
    }

    #[test]
    fn a_rejected_event_is_counted_by_reason_without_a_connector_dimension() {
        let connector = ConnectorId::new("gone");
        let doc = parse(&line(
            "NS",
            &Invocation::Rejected { reason: "unknown_connector", connector: Some(&connector) },
            Utc::now(),
        ));
        assert_extractable(&doc);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Reason"]]));
        assert_eq!((doc["RejectedEvents"].as_u64(), doc["ConnectorId"].as_str()), (Some(1), Some("gone")));
    }

    #[test]
    fn the_namespace_comes_from_the_environment() {
        let vars = std::collections::HashMap::from([(NAMESPACE_ENV.to_owned(), "Team/Memories".to_owned())]);
        assert_eq!(EmfWriter::from_vars(&vars).namespace(), "Team/Memories");
        assert_eq!(EmfWriter::from_vars(&Default::default()).namespace(), DEFAULT_NAMESPACE);
    }
}
