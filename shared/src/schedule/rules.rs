//! The EventBridge rules an earlier `schedules apply` made, one per
//! connector on the default (or a named) bus (`aws` feature): `apply` now
//! makes EventBridge Scheduler schedules ([`super::scheduler`]) and deletes
//! these rules once the schedules exist (migration).
//!
//! A rule of that version is named `<prefix>-<connector id>` and says so in
//! its description ([`MANAGED_MARK`]); only such rules are deleted, their
//! targets first. Every other rule is left alone.

use aws_sdk_eventbridge::Client;
use std::collections::BTreeMap;

/// The start of the description of every rule the earlier version managed
/// (the mark its schedules carry now).
pub use super::scheduler::MANAGED_MARK;
/// The target id of the sync function on every rule.
pub const TARGET_ID: &str = "sync";
pub const DEFAULT_PREFIX: &str = "memory-connector";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("EventBridge {operation} {rule}: {detail}")]
    Aws { operation: &'static str, rule: String, detail: String },
}

/// A managed rule as it is in EventBridge: the ids of its targets.
#[derive(Debug, Clone)]
pub struct Existing {
    targets: Vec<String>,
}

/// The managed rules of `prefix` on `bus` (None: the default bus).
pub struct LegacyRules {
    client: Client,
    prefix: String,
    bus: Option<String>,
}

impl LegacyRules {
    pub fn new(client: Client, prefix: impl Into<String>, bus: Option<String>) -> Self {
        Self { client, prefix: prefix.into(), bus }
    }

    /// The managed rules of the prefix, by name.
    pub async fn existing(&self) -> Result<BTreeMap<String, Existing>, RulesError> {
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
                let managed = rule.description.as_deref().is_some_and(|d| d.starts_with(MANAGED_MARK));
                let Some(name) = rule.name.clone().filter(|_| managed) else { continue };
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
                rules.insert(name, Existing { targets: targets.into_iter().map(|t| t.id).collect() });
            }
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(rules),
            }
        }
    }

    fn aws<'a, E: std::error::Error>(operation: &'static str, rule: &'a str) -> impl FnOnce(E) -> RulesError + 'a {
        move |e| RulesError::Aws { operation, rule: rule.to_owned(), detail: crate::errors::error_chain(&e) }
    }

    /// Deletes a managed rule, its targets first.
    pub async fn delete(&self, name: &str, stale: &Existing) -> Result<(), RulesError> {
        let ids = stale.targets.clone();
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
