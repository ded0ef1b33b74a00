//! `schedules apply` (`aws` feature): makes the EventBridge rules of the
//! default (or a named) event bus match the config, one rule per connector.
//!
//! A rule is named `<prefix>-<connector id>`, carries the connector's
//! schedule expression ([`super::eventbridge_expression`]), is `ENABLED` or
//! `DISABLED` like the connector, and has one target (`sync`): the sync
//! function with the constant input `{"connector_id": ..., "trigger":
//! "schedule"}`. Rules this tool made say so in their description; only
//! those are updated or deleted (a rule of the prefix that lost its
//! connector is deleted, its targets first). Every write is skipped when
//! the rule already matches, so a second `apply` changes nothing.

use super::{ScheduleError, eventbridge_expression};
use crate::config::Config;
use crate::ids::ConnectorId;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::{RuleState, Target};
use serde::Serialize;
use std::collections::BTreeMap;

/// The start of the description of every rule `apply` manages.
pub const MANAGED_MARK: &str = "memory-connector schedule";
/// The target id of the sync function on every rule.
pub const TARGET_ID: &str = "sync";
pub const DEFAULT_PREFIX: &str = "memory-connector";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("connector {connector}: {source}")]
    Schedule { connector: ConnectorId, source: ScheduleError },
    #[error(
        "connector {connector}: rule name {name:?} is not a valid EventBridge rule name (at most 64 of A-Z a-z 0-9 . - _)"
    )]
    Name { connector: ConnectorId, name: String },
    #[error("EventBridge {operation} {rule}: {detail}")]
    Aws { operation: &'static str, rule: String, detail: String },
}

/// One rule as the config wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    pub name: String,
    pub connector_id: ConnectorId,
    pub expression: String,
    pub enabled: bool,
    pub description: String,
    /// The target's constant input.
    pub input: String,
}

/// What `apply` did (or, with `dry_run`, would do) to one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Create {
        rule: String,
        expression: String,
        enabled: bool,
    },
    /// `what`: the fields that differ (`expression`, `state`, `target`...).
    Update {
        rule: String,
        what: Vec<String>,
    },
    Delete {
        rule: String,
    },
    Unchanged {
        rule: String,
    },
}

impl Change {
    pub fn is_change(&self) -> bool {
        !matches!(self, Change::Unchanged { .. })
    }
}

/// The rules the config wants, in connector order.
pub fn desired_rules(config: &Config, prefix: &str) -> Result<Vec<RuleSpec>, RulesError> {
    config
        .connectors
        .iter()
        .map(|c| {
            let name = format!("{prefix}-{}", c.id.as_str());
            let valid =
                name.len() <= 64 && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'));
            if !valid {
                return Err(RulesError::Name { connector: c.id.clone(), name });
            }
            let expression = eventbridge_expression(&c.schedule)
                .map_err(|source| RulesError::Schedule { connector: c.id.clone(), source })?;
            let input = serde_json::json!({"connector_id": c.id.as_str(), "trigger": "schedule"}).to_string();
            Ok(RuleSpec {
                name,
                connector_id: c.id.clone(),
                expression,
                enabled: c.enabled,
                description: format!("{MANAGED_MARK} of connector {} (managed by `schedules apply`)", c.id.as_str()),
                input,
            })
        })
        .collect()
}

/// A rule as it is in EventBridge.
#[derive(Debug, Clone)]
struct Existing {
    expression: Option<String>,
    enabled: bool,
    description: String,
    /// The `sync` target: (arn, input).
    target: Option<(String, Option<String>)>,
    other_targets: Vec<String>,
}

/// Reconciles rules through `client` on `bus` (None: the default bus).
pub struct ScheduleRules {
    client: Client,
    prefix: String,
    bus: Option<String>,
    target_arn: String,
}

impl ScheduleRules {
    pub fn new(client: Client, prefix: impl Into<String>, bus: Option<String>, target_arn: impl Into<String>) -> Self {
        Self { client, prefix: prefix.into(), bus, target_arn: target_arn.into() }
    }

    /// With a client from the default AWS chain ([`crate::aws::sdk_config`]).
    pub async fn from_env(prefix: impl Into<String>, bus: Option<String>, target_arn: impl Into<String>) -> Self {
        Self::new(Client::new(&crate::aws::sdk_config().await), prefix, bus, target_arn)
    }

    fn aws<'a, E: std::error::Error>(operation: &'static str, rule: &'a str) -> impl FnOnce(E) -> RulesError + 'a {
        move |e| RulesError::Aws { operation, rule: rule.to_owned(), detail: crate::http::error_chain(&e) }
    }

    /// The managed rules of the prefix, by name.
    async fn existing(&self) -> Result<BTreeMap<String, Existing>, RulesError> {
        let mut rules = BTreeMap::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_rules()
                .name_prefix(format!("{}-", self.prefix))
                .set_event_bus_name(self.bus.clone())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(Self::aws("ListRules", &self.prefix))?;
            for rule in page.rules.unwrap_or_default() {
                let description = rule.description.clone().unwrap_or_default();
                let Some(name) = rule.name.clone().filter(|_| description.starts_with(MANAGED_MARK)) else { continue };
                let targets = self
                    .client
                    .list_targets_by_rule()
                    .rule(&name)
                    .set_event_bus_name(self.bus.clone())
                    .send()
                    .await
                    .map_err(Self::aws("ListTargetsByRule", &name))?
                    .targets
                    .unwrap_or_default();
                let target = targets.iter().find(|t| t.id == TARGET_ID).map(|t| (t.arn.clone(), t.input.clone()));
                let other_targets = targets.iter().filter(|t| t.id != TARGET_ID).map(|t| t.id.clone()).collect();
                rules.insert(
                    name,
                    Existing {
                        expression: rule.schedule_expression.clone(),
                        enabled: rule.state == Some(RuleState::Enabled),
                        description,
                        target,
                        other_targets,
                    },
                );
            }
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(rules),
            }
        }
    }

    /// Makes EventBridge match `config`; with `dry_run` only says what it
    /// would do. Every schedule is converted before anything is written.
    pub async fn apply(&self, config: &Config, dry_run: bool) -> Result<Vec<Change>, RulesError> {
        let desired = desired_rules(config, &self.prefix)?;
        let mut existing = self.existing().await?;
        let mut changes = Vec::new();
        for spec in &desired {
            let change = match existing.remove(&spec.name) {
                None => Change::Create {
                    rule: spec.name.clone(),
                    expression: spec.expression.clone(),
                    enabled: spec.enabled,
                },
                Some(current) => {
                    let mut what = Vec::new();
                    if current.expression.as_deref() != Some(spec.expression.as_str()) {
                        what.push(format!(
                            "expression {} -> {}",
                            current.expression.unwrap_or_default(),
                            spec.expression
                        ));
                    }
                    if current.enabled != spec.enabled {
                        what.push(if spec.enabled { "enable".into() } else { "disable".into() });
                    }
                    if current.description != spec.description {
                        what.push("description".into());
                    }
                    if current.target != Some((self.target_arn.clone(), Some(spec.input.clone()))) {
                        what.push("target".into());
                    }
                    if what.is_empty() {
                        Change::Unchanged { rule: spec.name.clone() }
                    } else {
                        Change::Update { rule: spec.name.clone(), what }
                    }
                }
            };
            if !dry_run && change.is_change() {
                self.put(spec).await?;
            }
            changes.push(change);
        }
        for (name, stale) in existing {
            if !dry_run {
                self.delete(&name, &stale).await?;
            }
            changes.push(Change::Delete { rule: name });
        }
        Ok(changes)
    }

    async fn put(&self, spec: &RuleSpec) -> Result<(), RulesError> {
        let state = if spec.enabled { RuleState::Enabled } else { RuleState::Disabled };
        self.client
            .put_rule()
            .name(&spec.name)
            .schedule_expression(&spec.expression)
            .state(state)
            .description(&spec.description)
            .set_event_bus_name(self.bus.clone())
            .send()
            .await
            .map_err(Self::aws("PutRule", &spec.name))?;
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(&self.target_arn)
            .input(&spec.input)
            .build()
            .map_err(Self::aws("PutTargets", &spec.name))?;
        let put = self
            .client
            .put_targets()
            .rule(&spec.name)
            .targets(target)
            .set_event_bus_name(self.bus.clone())
            .send()
            .await
            .map_err(Self::aws("PutTargets", &spec.name))?;
        if put.failed_entry_count > 0 {
            return Err(RulesError::Aws {
                operation: "PutTargets",
                rule: spec.name.clone(),
                detail: format!("{:?}", put.failed_entries.unwrap_or_default()),
            });
        }
        Ok(())
    }

    async fn delete(&self, name: &str, stale: &Existing) -> Result<(), RulesError> {
        let mut ids = stale.other_targets.clone();
        if stale.target.is_some() {
            ids.push(TARGET_ID.to_owned());
        }
        if !ids.is_empty() {
            self.client
                .remove_targets()
                .rule(name)
                .set_ids(Some(ids))
                .set_event_bus_name(self.bus.clone())
                .send()
                .await
                .map_err(Self::aws("RemoveTargets", name))?;
        }
        self.client
            .delete_rule()
            .name(name)
            .set_event_bus_name(self.bus.clone())
            .send()
            .await
            .map_err(Self::aws("DeleteRule", name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
