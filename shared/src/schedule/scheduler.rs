//! One EventBridge Scheduler schedule per connector (decision 0025): what the
//! config wants ([`desired_schedules`]), how it compares with what is there
//! ([`differences`]), and the plan `schedules apply` prints and carries out.
//! The AWS calls are in [`client`] (`aws` feature).
//!
//! A schedule lives in the stack's schedule group, is named after its
//! connector (connector ids are valid schedule names), and sends
//! `{"connector_id", "trigger": "schedule", "scheduled_at"}` to the stack's
//! FIFO queue, in the connector's message group, so one connector's runs
//! never overlap and the queue's consumer bounds how many run at once. With
//! `max_concurrent_connectors: 1` every schedule shares one message group,
//! so they run one at a time. The cron is read in `schedule.timezone`
//! (`ScheduleExpressionTimezone`), `jitter_seconds` becomes the flexible
//! time window (whole minutes, rounded up), a disabled or paused connector's
//! schedule is `DISABLED`. Schedules this tool made say so in their
//! description; only those are updated or deleted.

#[cfg(feature = "aws")]
pub mod client;

use super::{ScheduleError, eventbridge_expression};
use crate::config::Config;
use crate::config::is_utc;
use crate::ids::ConnectorId;
use serde::Serialize;
use std::collections::BTreeSet;

/// The start of the description of every schedule `apply` manages.
pub const MANAGED_MARK: &str = "memory-connector schedule";
/// The message group of every schedule when the config allows one run at a time.
pub const SERIAL_GROUP: &str = "serial";
/// Scheduler's own retry of a failed delivery to the queue (its defaults,
/// written out so a schedule that says otherwise is a difference).
pub const MAX_EVENT_AGE_SECONDS: i32 = 86_400;
pub const MAX_RETRY_ATTEMPTS: i32 = 185;
/// The longest flexible time window Scheduler accepts (minutes).
pub const MAX_WINDOW_MINUTES: u64 = 1_440;

/// Where the stack's schedules point: read from the tags of its schedule
/// group (`infra/template.yaml`), so the command needs only the group's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub group: String,
    /// The FIFO queue `sync` consumes.
    pub queue_arn: String,
    /// The role Scheduler assumes to send to the queue.
    pub role_arn: String,
    /// Where Scheduler puts what it could not deliver.
    pub dead_letter_arn: String,
    /// `s3://bucket/key` of the deployed config, when the stack has one.
    pub config_uri: Option<String>,
    /// The queue consumer's `MaximumConcurrency`, when the stack says it.
    pub max_concurrency: Option<u32>,
}

impl Deployment {
    /// A stack in an emulator's account: the wiring of the tests and the
    /// bench (example ARNs; moto checks none of them).
    #[doc(hidden)]
    pub fn emulated(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            queue_arn: "arn:aws:sqs:us-east-1:123456789012:memory-connector-sync.fifo".into(),
            role_arn: "arn:aws:iam::123456789012:role/memory-connector-scheduler".into(),
            dead_letter_arn: "arn:aws:sqs:us-east-1:123456789012:memory-connector-sync-failures".into(),
            config_uri: None,
            max_concurrency: Some(2),
        }
    }
}

/// The tags the template puts on the schedule group.
pub mod tags {
    pub const QUEUE_ARN: &str = "memory-connector:queue-arn";
    pub const ROLE_ARN: &str = "memory-connector:scheduler-role-arn";
    pub const DEAD_LETTER_ARN: &str = "memory-connector:dead-letter-arn";
    pub const CONFIG_URI: &str = "memory-connector:config-uri";
    pub const MAX_CONCURRENCY: &str = "memory-connector:max-concurrency";
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("connector {connector}: {source}")]
    Schedule { connector: ConnectorId, source: ScheduleError },
    #[error(
        "connector {connector}: jitter_seconds {seconds} is longer than Scheduler's longest flexible window (24 hours)"
    )]
    Window { connector: ConnectorId, seconds: u64 },
    #[error(
        "schedule group {group}: schedule {name} exists but was not made by memory-connector (its description does not start with {MANAGED_MARK:?}); rename or delete it, then apply again"
    )]
    Foreign { group: String, name: String },
    #[error("schedule group {group}: {detail}")]
    Deployment { group: String, detail: String },
    #[error(
        "the config allows {wanted} run(s) at once (advanced.pipeline.max_concurrent_connectors) but the stack's queue consumer runs up to {deployed} (MaxConcurrentConnectors); deploy the stack with MaxConcurrentConnectors={wanted_param} or change the config"
    )]
    Concurrency { wanted: u32, deployed: u32, wanted_param: u32 },
    #[error("EventBridge Scheduler {operation} {name}: {detail}")]
    Aws { operation: &'static str, name: String, detail: String },
}

impl SchedulerError {
    /// A problem of the config or the deployment (exit 2), not of AWS.
    pub fn is_usage(&self) -> bool {
        !matches!(self, SchedulerError::Aws { .. })
    }
}

/// One schedule as the config wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleSpec {
    pub name: String,
    pub connector_id: ConnectorId,
    pub expression: String,
    /// IANA zone, `UTC` when the config names none.
    pub timezone: String,
    /// Flexible time window in minutes; `None`: off.
    pub window_minutes: Option<u32>,
    pub enabled: bool,
    pub description: String,
    /// The message the queue receives.
    pub input: String,
    pub message_group: String,
}

/// A schedule as it is in EventBridge Scheduler (the fields `apply` owns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentSchedule {
    pub expression: Option<String>,
    pub timezone: Option<String>,
    pub window_minutes: Option<u32>,
    pub enabled: bool,
    pub description: Option<String>,
    pub target_arn: Option<String>,
    pub role_arn: Option<String>,
    pub input: Option<String>,
    pub message_group: Option<String>,
    pub dead_letter_arn: Option<String>,
    pub retry: Option<(i32, i32)>,
}

impl CurrentSchedule {
    pub fn is_managed(&self) -> bool {
        self.description.as_deref().is_some_and(|d| d.starts_with(MANAGED_MARK))
    }
}

/// What `apply` did (or, with `dry_run`, would do) to one schedule or legacy rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Create {
        schedule: String,
        expression: String,
        timezone: String,
        enabled: bool,
    },
    /// `what`: the fields that differ (`expression rate(1 hour) -> rate(2 hours)`, `disable`...).
    Update {
        schedule: String,
        what: Vec<String>,
    },
    Delete {
        schedule: String,
    },
    Unchanged {
        schedule: String,
    },
    /// An EventBridge rule an earlier version made (migration to Scheduler).
    DeleteRule {
        rule: String,
    },
}

impl Change {
    pub fn is_change(&self) -> bool {
        !matches!(self, Change::Unchanged { .. })
    }

    /// The schedule or rule it is about.
    pub fn name(&self) -> &str {
        match self {
            Change::Create { schedule, .. }
            | Change::Update { schedule, .. }
            | Change::Delete { schedule }
            | Change::Unchanged { schedule } => schedule,
            Change::DeleteRule { rule } => rule,
        }
    }
}

/// The message group of a connector's messages: its own (one run of a
/// connector at a time), or one group for all when the config allows a
/// single run at once.
pub fn message_group(config: &Config, connector: &ConnectorId) -> String {
    if config.advanced.pipeline.max_concurrent_connectors <= 1 {
        SERIAL_GROUP.to_owned()
    } else {
        connector.as_str().to_owned()
    }
}

/// The `MaximumConcurrency` the queue consumer needs for `config`: the
/// config's bound, at least 2 (the smallest value AWS accepts; with a bound
/// of 1 the single message group keeps it to one).
pub fn consumer_concurrency(config: &Config) -> u32 {
    config.advanced.pipeline.max_concurrent_connectors.max(2)
}

/// Refuses a config whose bound the stack does not enforce.
pub fn check_concurrency(config: &Config, deployment: &Deployment) -> Result<(), SchedulerError> {
    let wanted = consumer_concurrency(config);
    match deployment.max_concurrency {
        Some(deployed) if deployed != wanted => Err(SchedulerError::Concurrency {
            wanted: config.advanced.pipeline.max_concurrent_connectors,
            deployed,
            wanted_param: wanted,
        }),
        _ => Ok(()),
    }
}

/// The schedules the config wants, in connector order. `paused`: the
/// connectors paused through the management API.
pub fn desired_schedules(config: &Config, paused: &BTreeSet<ConnectorId>) -> Result<Vec<ScheduleSpec>, SchedulerError> {
    config
        .connectors
        .iter()
        .map(|c| {
            let expression = eventbridge_expression(&c.schedule)
                .map_err(|source| SchedulerError::Schedule { connector: c.id.clone(), source })?;
            let timezone = c.schedule.timezone.as_deref().map(str::trim).filter(|z| !is_utc(z)).unwrap_or("UTC");
            let jitter = c.schedule.jitter_seconds;
            let window_minutes = match jitter.div_ceil(60) {
                0 => None,
                minutes if minutes <= MAX_WINDOW_MINUTES => Some(minutes as u32),
                _ => return Err(SchedulerError::Window { connector: c.id.clone(), seconds: jitter }),
            };
            let input = serde_json::json!({
                "connector_id": c.id.as_str(),
                "trigger": "schedule",
                "scheduled_at": "<aws.scheduler.scheduled-time>",
            })
            .to_string();
            Ok(ScheduleSpec {
                name: c.id.as_str().to_owned(),
                connector_id: c.id.clone(),
                expression,
                timezone: timezone.to_owned(),
                window_minutes,
                enabled: c.enabled && !paused.contains(&c.id),
                description: format!("{MANAGED_MARK} of connector {} (managed by `schedules apply`)", c.id.as_str()),
                input,
                message_group: message_group(config, &c.id),
            })
        })
        .collect()
}

/// The fields of `current` that differ from `spec` pointed at `deployment`;
/// empty when the schedule matches.
pub fn differences(spec: &ScheduleSpec, current: &CurrentSchedule, deployment: &Deployment) -> Vec<String> {
    let mut what = Vec::new();
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    if current.expression.as_deref() != Some(spec.expression.as_str()) {
        what.push(format!("expression {} -> {}", shown(&current.expression), spec.expression));
    }
    // Scheduler reads an absent zone as UTC.
    if current.timezone.as_deref().unwrap_or("UTC") != spec.timezone {
        what.push(format!("timezone {} -> {}", shown(&current.timezone), spec.timezone));
    }
    if current.window_minutes != spec.window_minutes {
        let window = |w: Option<u32>| w.map_or_else(|| "off".to_owned(), |m| format!("{m} min"));
        what.push(format!("flexible window {} -> {}", window(current.window_minutes), window(spec.window_minutes)));
    }
    if current.enabled != spec.enabled {
        what.push(if spec.enabled { "enable".into() } else { "disable".into() });
    }
    if current.description.as_deref() != Some(spec.description.as_str()) {
        what.push("description".into());
    }
    if current.target_arn.as_deref() != Some(deployment.queue_arn.as_str()) {
        what.push(format!("target {} -> {}", shown(&current.target_arn), deployment.queue_arn));
    }
    if current.role_arn.as_deref() != Some(deployment.role_arn.as_str()) {
        what.push("role".into());
    }
    if current.input.as_deref() != Some(spec.input.as_str()) {
        what.push("input".into());
    }
    if current.message_group.as_deref() != Some(spec.message_group.as_str()) {
        what.push(format!("message group {} -> {}", shown(&current.message_group), spec.message_group));
    }
    if current.dead_letter_arn.as_deref() != Some(deployment.dead_letter_arn.as_str()) {
        what.push("dead-letter queue".into());
    }
    if current.retry != Some((MAX_EVENT_AGE_SECONDS, MAX_RETRY_ATTEMPTS)) {
        what.push("retry policy".into());
    }
    what
}

#[cfg(test)]
mod tests;
