//! What each Lambda function reads: its environment variables, the secrets
//! it is given as `<VARIABLE>_SECRET_ARN`, the secret fields of the config
//! it uses, and what Lambda itself does with its role. The one table the
//! functions load their config by (a function never needs the secrets of a
//! section it does not read) and `infra/template.yaml` is checked against
//! (`tests/scripts/template-check.sh` in `make test`: every secret variable
//! readable by the role, nothing more granted than the recorded calls use).

use super::{CONFIG_PATH_ENV, EVENT_BUS_ENV, SAFETY_MARGIN_ENV};
use crate::config::SECRET_FIELDS;
use crate::state::dynamodb::TABLE_ENV;
use crate::telemetry::emf::NAMESPACE_ENV;

/// One of the three functions of the serverless shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionRole {
    Sync,
    Api,
    Cleanup,
}

/// A secret a function is given: the template's parameter, passed as the
/// variable `<supplies>_SECRET_ARN`; start-up fetches it and sets
/// `supplies` (or, for a JSON secret, each of its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretInput {
    /// The template parameter holding the secret's ARN.
    pub parameter: &'static str,
    /// The variable whose value the secret is (`MEMORY_API_KEY`).
    pub supplies: &'static str,
    /// A deployment without it is refused (the parameter has no default).
    pub required: bool,
}

impl SecretInput {
    /// The environment variable naming the secret (`MEMORY_API_KEY_SECRET_ARN`).
    pub fn variable(&self) -> String {
        format!("{}{}", self.supplies, crate::secrets::SECRET_REFERENCE_SUFFIX)
    }
}

pub const MEMORY_API_KEY_SECRET: SecretInput =
    SecretInput { parameter: "MemoryApiKeySecretArn", supplies: "MEMORY_API_KEY", required: true };
pub const LIGHTRAG_API_KEY_SECRET: SecretInput =
    SecretInput { parameter: "LightragApiKeySecretArn", supplies: "LIGHTRAG_API_KEY", required: false };
pub const ALERT_WEBHOOK_SECRET: SecretInput =
    SecretInput { parameter: "AlertWebhookSecretArn", supplies: "ALERT_WEBHOOK_URL", required: false };
pub const CONNECTOR_API_KEY_SECRET: SecretInput =
    SecretInput { parameter: "ConnectorApiKeySecretArn", supplies: "CONNECTOR_API_KEY", required: true };

/// What Lambda does with a function's role on its behalf (not the code's
/// calls): the template may grant these without a recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformGrant {
    /// A managed policy by name (`service-role/AWSLambdaBasicExecutionRole`:
    /// the function's logs).
    ManagedPolicy(&'static str),
    /// `sqs:SendMessage` to the queue of the function's `OnFailure`
    /// destination (the policy SAM adds for `EventInvokeConfig`).
    OnFailureQueue,
}

const BASIC_EXECUTION: PlatformGrant = PlatformGrant::ManagedPolicy("service-role/AWSLambdaBasicExecutionRole");

impl FunctionRole {
    pub const ALL: [FunctionRole; 3] = [FunctionRole::Sync, FunctionRole::Api, FunctionRole::Cleanup];

    /// The name its recorded calls carry (`sync`).
    pub fn name(self) -> &'static str {
        match self {
            FunctionRole::Sync => "sync",
            FunctionRole::Api => "api",
            FunctionRole::Cleanup => "cleanup",
        }
    }

    /// Its resource in `infra/template.yaml`.
    pub fn logical_id(self) -> &'static str {
        match self {
            FunctionRole::Sync => "SyncFunction",
            FunctionRole::Api => "ApiFunction",
            FunctionRole::Cleanup => "CleanupFunction",
        }
    }

    /// The secrets it is given, and only those: a secret its role could
    /// not read would fail every cold start with AccessDenied.
    pub fn secrets(self) -> &'static [SecretInput] {
        match self {
            FunctionRole::Sync => &[MEMORY_API_KEY_SECRET, LIGHTRAG_API_KEY_SECRET, ALERT_WEBHOOK_SECRET],
            // The look-ups call the Memory API (resolve with fetch) and LightRAG.
            FunctionRole::Api => &[CONNECTOR_API_KEY_SECRET, MEMORY_API_KEY_SECRET, LIGHTRAG_API_KEY_SECRET],
            FunctionRole::Cleanup => &[],
        }
    }

    /// The plain variables its code reads (`true`: the template must set it).
    pub fn variables(self) -> &'static [(&'static str, bool)] {
        match self {
            FunctionRole::Sync => {
                &[(TABLE_ENV, true), (CONFIG_PATH_ENV, true), (SAFETY_MARGIN_ENV, false), (NAMESPACE_ENV, true)]
            }
            FunctionRole::Api => &[(TABLE_ENV, true), (CONFIG_PATH_ENV, true), (EVENT_BUS_ENV, false)],
            FunctionRole::Cleanup => &[(TABLE_ENV, true), (CONFIG_PATH_ENV, true)],
        }
    }

    /// The secret fields of the config it uses (of [`SECRET_FIELDS`]).
    pub fn secret_fields(self) -> &'static [&'static str] {
        match self {
            FunctionRole::Sync => &[
                "memory_api.api_key",
                "lightrag.api.api_key",
                "lightrag.api.password",
                "monitoring.alerts.webhook_url",
                "enrichment.transcription.api_key",
                "enrichment.vision.api_key",
            ],
            FunctionRole::Api => {
                &["api.api_key", "memory_api.api_key", "lightrag.api.api_key", "lightrag.api.password"]
            }
            FunctionRole::Cleanup => &[],
        }
    }

    /// The secret fields it never uses: their `${VAR}` need not resolve.
    pub fn unread_secret_fields(self) -> Vec<&'static str> {
        SECRET_FIELDS.iter().copied().filter(|f| !self.secret_fields().contains(f)).collect()
    }

    /// What Lambda does with its role for it.
    pub fn platform(self) -> &'static [PlatformGrant] {
        match self {
            FunctionRole::Sync => &[BASIC_EXECUTION, PlatformGrant::OnFailureQueue],
            FunctionRole::Api | FunctionRole::Cleanup => &[BASIC_EXECUTION],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Environment};

    const LAMBDA_CONFIG: &str = include_str!("../../../config/lambda/memory-connector/config.yaml");

    /// The environment a function has on the template's defaults: each
    /// required secret (a plain string) resolved into its variable.
    fn default_environment(role: FunctionRole) -> Environment {
        Environment::from_map(
            role.secrets()
                .iter()
                .filter(|s| s.required)
                .map(|s| (s.supplies.to_owned(), format!("value-of-{}", s.supplies))),
        )
    }

    #[test]
    fn every_secret_field_named_is_one_of_the_schema() {
        for role in FunctionRole::ALL {
            for field in role.secret_fields() {
                assert!(SECRET_FIELDS.contains(field), "{role:?}: {field} is not a secret field of the schema");
            }
        }
    }

    /// The shipped Lambda config loads in every function with only the
    /// secrets that function is given on the template's defaults: `cleanup`
    /// needs no key at all, `sync` no management key. (Before, every function needed every variable the
    /// config named, so `cleanup` failed without `MEMORY_API_KEY`.)
    #[test]
    fn the_lambda_config_loads_for_each_function_with_its_own_secrets() {
        for role in FunctionRole::ALL {
            let env = default_environment(role);
            let config = config::load_str_for(LAMBDA_CONFIG, "lambda config", &env, &role.unread_secret_fields())
                .unwrap_or_else(|e| panic!("{role:?}: {e}"));
            if role == FunctionRole::Api {
                assert_eq!(config::api_auth_problem(&config.api), None, "the api function has its key");
            }
            if role == FunctionRole::Sync {
                assert!(config.memory_api.api_key.is_some(), "sync has the Memory API key");
            }
        }
        // Without its own secret a function still fails, naming the variable.
        let none = Environment::from_map(Vec::<(String, String)>::new());
        let error =
            config::load_str_for(LAMBDA_CONFIG, "lambda config", &none, &FunctionRole::Api.unread_secret_fields())
                .unwrap_err()
                .to_string();
        assert!(error.contains("CONNECTOR_API_KEY"), "{error}");
    }
}
