//! Deploying a config to the serverless shape (`aws` feature), decision 0025:
//! `memory-connector deploy-config` validates the config, uploads it to the
//! stack's S3 object ([`crate::config_store`]) and reconciles the schedules
//! in the same step, so config and schedules cannot drift; `schedules apply`
//! reconciles only (a config shipped in the Lambda layer); `schedules drift`
//! compares the schedules with the deployed config and changes nothing.
//!
//! Everything is checked before anything is written: the schedules the
//! config wants (expressions, windows), the stack's concurrency against the
//! config's, the paused connectors from the state store. Reconciling also
//! deletes the EventBridge rules an earlier version made (migration).

use crate::config::Config;
use crate::config_store::{ConfigObject, ConfigStoreError, Fetched};
use crate::ids::ConnectorId;
use crate::schedule::rules::{LegacyRules, RulesError};
use crate::schedule::scheduler::client::{self as scheduler_client, Schedules};
use crate::schedule::scheduler::{
    Change, Deployment, ScheduleSpec, SchedulerError, check_concurrency, desired_schedules,
};
use crate::state::{StateError, StateStore};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Store(#[from] ConfigStoreError),
    #[error("reading which connectors are paused: {0}")]
    State(#[from] StateError),
    #[error(
        "schedule group {group}: the stack has no config object (tag memory-connector:config-uri); its config is the Lambda layer: use `schedules apply`"
    )]
    NoConfigObject { group: String },
    #[error("the deployed config {source_name}: {detail}")]
    DeployedConfig { source_name: String, detail: String },
}

impl DeployError {
    /// A problem of the config or the deployment (exit 2), not of AWS.
    pub fn is_usage(&self) -> bool {
        match self {
            DeployError::Scheduler(e) => e.is_usage(),
            DeployError::NoConfigObject { .. } | DeployError::DeployedConfig { .. } => true,
            DeployError::Store(e) => matches!(e, ConfigStoreError::BadUri { .. }),
            DeployError::Rules(_) | DeployError::State(_) => false,
        }
    }
}

/// Which stack: its schedule group (whose tags say the rest).
#[derive(Debug, Clone)]
pub struct DeployTarget {
    pub group: String,
    /// Name prefix of the EventBridge rules an earlier version made.
    pub rules_prefix: String,
    pub requests_per_second: f64,
}

/// What happened to the config object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ConfigUpload {
    Unchanged { uri: String },
    Uploaded { uri: String, etag: String },
    WouldUpload { uri: String },
}

/// The stack's schedules, legacy rules and config object.
pub struct Deployer {
    schedules: Schedules,
    rules: LegacyRules,
    config_object: Option<ConfigObject>,
}

impl Deployer {
    /// Reads the stack's wiring from its schedule group.
    pub async fn connect(sdk: &aws_config::SdkConfig, target: &DeployTarget) -> Result<Self, DeployError> {
        let client = scheduler_client::client(sdk);
        let deployment = Deployment::from_group(&client, &target.group).await?;
        let config_object = match &deployment.config_uri {
            Some(uri) => Some(ConfigObject::new(crate::config_store::client(sdk), uri)?),
            None => None,
        };
        let rules = LegacyRules::new(aws_sdk_eventbridge::Client::new(sdk), target.rules_prefix.clone(), None);
        Ok(Self { schedules: Schedules::new(client, deployment, target.requests_per_second), rules, config_object })
    }

    pub fn deployment(&self) -> &Deployment {
        self.schedules.deployment()
    }

    /// Calls made to EventBridge Scheduler so far, by operation.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.schedules.calls().by_operation()
    }

    /// The schedules `config` wants, checked against the stack: every
    /// refusal happens here, before anything is written.
    pub fn desired(&self, config: &Config, paused: &BTreeSet<ConnectorId>) -> Result<Vec<ScheduleSpec>, DeployError> {
        check_concurrency(config, self.deployment())?;
        Ok(desired_schedules(config, paused)?)
    }

    /// Makes the schedules match `desired` and deletes the legacy rules;
    /// with `dry_run` only says what it would do.
    pub async fn reconcile(&self, desired: &[ScheduleSpec], dry_run: bool) -> Result<Vec<Change>, DeployError> {
        let mut changes = self.schedules.reconcile(desired, dry_run).await?;
        // Only after every schedule exists, so no connector is left without a trigger.
        for (rule, existing) in self.rules.existing().await? {
            if !dry_run {
                self.rules.delete(&rule, &existing).await?;
            }
            changes.push(Change::DeleteRule { rule });
        }
        Ok(changes)
    }

    fn object(&self) -> Result<&ConfigObject, DeployError> {
        self.config_object
            .as_ref()
            .ok_or_else(|| DeployError::NoConfigObject { group: self.deployment().group.clone() })
    }

    /// The deployed config's text and where it is; `None` when nothing was uploaded yet.
    pub async fn deployed_text(&self) -> Result<Option<(String, String)>, DeployError> {
        let object = self.object()?;
        Ok(match object.fetch(None).await? {
            Fetched::Found { text, .. } => Some((text, object.uri())),
            Fetched::Missing | Fetched::NotModified => None,
        })
    }

    /// Uploads `text` unless the object already holds exactly it.
    pub async fn upload(&self, text: &str, dry_run: bool) -> Result<ConfigUpload, DeployError> {
        let object = self.object()?;
        let uri = object.uri();
        let current = match object.fetch(None).await? {
            Fetched::Found { text: current, etag } => Some((current, etag)),
            Fetched::Missing | Fetched::NotModified => None,
        };
        if current.as_ref().is_some_and(|(current, _)| current == text) {
            return Ok(ConfigUpload::Unchanged { uri });
        }
        if dry_run {
            return Ok(ConfigUpload::WouldUpload { uri });
        }
        let etag = object.put(text, current.as_ref().map(|(_, etag)| etag.as_str())).await?;
        Ok(ConfigUpload::Uploaded { uri, etag })
    }
}

/// The connectors of `config` that are paused in `store` (their schedules
/// stay `DISABLED`), read in batches ([`StateStore::overviews`]). Disabled
/// connectors are not looked up.
pub async fn paused_connectors(store: &dyn StateStore, config: &Config) -> Result<BTreeSet<ConnectorId>, StateError> {
    let enabled: Vec<ConnectorId> = config.connectors.iter().filter(|c| c.enabled).map(|c| c.id.clone()).collect();
    let overviews = store.overviews(&enabled).await?;
    Ok(enabled
        .into_iter()
        .zip(overviews)
        .filter(|(_, o)| o.state.as_ref().is_some_and(|s| s.paused))
        .map(|(id, _)| id)
        .collect())
}
