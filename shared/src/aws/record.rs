//! Recording the AWS calls a function sends, for the template check (tests
//! only). With `MEMORY_CONNECTOR_RECORD_AWS_CALLS=<folder>` set, the clients
//! a function builds carry an SDK interceptor that writes, once per distinct
//! call, a JSON line to `<folder>/<pid>.jsonl`: the function (`role`), the
//! state-store method in progress (see [`in_store_method`]), the operation,
//! and each IAM action it needs on each resource (a `TransactWriteItems` of
//! a `Put` and a `ConditionCheck` needs `dynamodb:PutItem` and
//! `dynamodb:ConditionCheckItem`), with the environment variable that named
//! the resource. Without the variable nothing is attached and nothing is
//! written.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::ConfigBag;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The folder the calls are recorded in (unset: nothing is recorded).
pub const RECORD_ENV: &str = "MEMORY_CONNECTOR_RECORD_AWS_CALLS";
/// The role the state store's own tests record under.
pub const STORE_ROLE: &str = "store";

tokio::task_local! {
    static STORE_METHOD: &'static str;
}

/// Runs `future` as the state-store method `method`: the calls it sends are
/// recorded under that name (the template check maps a function's store
/// methods to the calls the store's own tests saw them send).
pub async fn in_store_method<F: Future>(method: &'static str, future: F) -> F::Output {
    STORE_METHOD.scope(method, future).await
}

/// Writes what one function sends; cheap to clone.
#[derive(Debug, Clone)]
pub struct CallRecorder {
    dir: PathBuf,
    role: &'static str,
    /// Variable values that name resources, and the variable.
    names: Arc<Vec<(String, String)>>,
}

impl CallRecorder {
    /// The recorder of `role` when [`RECORD_ENV`] is set; `vars` is the
    /// function's environment (which variable named which resource).
    pub fn from_env(role: &'static str, vars: &HashMap<String, String>) -> Option<Self> {
        let dir = std::env::var_os(RECORD_ENV).filter(|d| !d.is_empty())?;
        Some(Self::new(role, dir.into(), vars))
    }

    /// The recorder of `role` writing into `dir`.
    pub fn new(role: &'static str, dir: PathBuf, vars: &HashMap<String, String>) -> Self {
        let mut names: Vec<(String, String)> =
            vars.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (v.trim().to_owned(), k.clone())).collect();
        names.sort();
        Self { dir, role, names: Arc::new(names) }
    }

    /// Records that `method` of the state store was called (whether or not
    /// it sent anything).
    pub fn store_method(&self, method: &'static str) {
        self.write(json!({"role": self.role, "store_method": method}));
    }

    fn via(&self, name: &str) -> Option<&str> {
        self.names.iter().find(|(value, _)| value == name).map(|(_, variable)| variable.as_str())
    }

    fn write(&self, record: Value) {
        static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        let line = record.to_string();
        let fresh = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner()).insert(line.clone());
        if !fresh {
            return;
        }
        let path = self.dir.join(format!("{}.jsonl", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(format!("{line}\n").as_bytes())
        });
        if let Err(e) = written {
            eprintln!("{RECORD_ENV}: cannot write {}: {e}", path.display());
        }
    }

    /// The resource `name` of `kind`, with the variable that named it.
    fn resource(&self, service: &str, kind: &str, name: &str, index: Option<&str>) -> Value {
        json!({"service": service, "type": kind, "name": name, "index": index, "via": self.via(name)})
    }

    /// The (action, resource) pairs a serialized request needs.
    fn needs(&self, prefix: &str, operation: &str, body: &Value) -> Vec<(String, Value)> {
        let action = |op: &str| format!("{prefix}:{op}");
        let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        match prefix {
            "dynamodb" => {
                let table = |v: &Value| {
                    str_at(v, "TableName").map(|t| {
                        let index = str_at(v, "IndexName");
                        self.resource(prefix, if index.is_some() { "index" } else { "table" }, &t, index.as_deref())
                    })
                };
                if let Some(items) = body.get("TransactItems").and_then(Value::as_array) {
                    let kinds = [
                        ("Put", "PutItem"),
                        ("Update", "UpdateItem"),
                        ("Delete", "DeleteItem"),
                        ("ConditionCheck", "ConditionCheckItem"),
                        ("Get", "GetItem"),
                    ];
                    return items
                        .iter()
                        .flat_map(|item| {
                            kinds.iter().filter_map(move |(key, op)| {
                                item.get(*key).and_then(&table).map(|resource| (action(op), resource))
                            })
                        })
                        .collect();
                }
                if let Some(tables) = body.get("RequestItems").and_then(Value::as_object) {
                    return tables
                        .keys()
                        .map(|t| (action(operation), self.resource(prefix, "table", t, None)))
                        .collect();
                }
                table(body).map(|resource| (action(operation), resource)).into_iter().collect()
            }
            "secretsmanager" => str_at(body, "SecretId")
                .map(|id| (action(operation), self.resource(prefix, "secret", &id, None)))
                .into_iter()
                .collect(),
            "events" => {
                let mut buses: Vec<String> = body
                    .get("Entries")
                    .and_then(Value::as_array)
                    .map(|entries| {
                        entries
                            .iter()
                            .map(|e| str_at(e, "EventBusName").unwrap_or_else(|| "default".to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                buses.sort();
                buses.dedup();
                buses.iter().map(|bus| (action(operation), self.resource(prefix, "event-bus", bus, None))).collect()
            }
            // A service this recorder cannot name resources of: the check
            // refuses it until it is taught here.
            _ => vec![(action(operation), json!({"service": prefix, "type": "unknown"}))],
        }
    }
}

/// The IAM prefix of an SDK service name.
fn iam_prefix(service: &str) -> String {
    match service {
        "DynamoDB" => "dynamodb".into(),
        "Secrets Manager" => "secretsmanager".into(),
        "EventBridge" => "events".into(),
        other => other.to_ascii_lowercase().replace(' ', ""),
    }
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else { return Ok(()) };
        let prefix = iam_prefix(metadata.service());
        let body: Value =
            context.request().body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        let needs: Vec<Value> = self
            .needs(&prefix, metadata.name(), &body)
            .into_iter()
            .map(|(action, resource)| json!({"action": action, "resource": resource}))
            .collect();
        self.write(json!({
            "role": self.role,
            "store_method": STORE_METHOD.try_with(|m| *m).ok(),
            "service": prefix,
            "operation": metadata.name(),
            "needs": needs,
        }));
        Ok(())
    }
}

/// A DynamoDB client from `sdk`, recording its calls when `recorder` is given.
pub fn dynamodb(sdk: &SdkConfig, recorder: Option<&CallRecorder>) -> aws_sdk_dynamodb::Client {
    let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(recorder) = recorder {
        config = config.interceptor(recorder.clone());
    }
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

/// A Secrets Manager client from `sdk`, recording its calls when `recorder` is given.
pub fn secretsmanager(sdk: &SdkConfig, recorder: Option<&CallRecorder>) -> aws_sdk_secretsmanager::Client {
    let mut config = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(recorder) = recorder {
        config = config.interceptor(recorder.clone());
    }
    aws_sdk_secretsmanager::Client::from_conf(config.build())
}

/// An EventBridge client from `sdk`, recording its calls when `recorder` is given.
pub fn eventbridge(sdk: &SdkConfig, recorder: Option<&CallRecorder>) -> aws_sdk_eventbridge::Client {
    let mut config = aws_sdk_eventbridge::config::Builder::from(sdk);
    if let Some(recorder) = recorder {
        config = config.interceptor(recorder.clone());
    }
    aws_sdk_eventbridge::Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> CallRecorder {
        CallRecorder {
            dir: PathBuf::from("/nonexistent"),
            role: "sync",
            names: Arc::new(vec![("t1".into(), "STATE_TABLE".into()), ("arn:s".into(), "X_SECRET_ARN".into())]),
        }
    }

    #[test]
    fn a_transaction_needs_the_action_of_each_item() {
        let body = json!({"TransactItems": [
            {"ConditionCheck": {"TableName": "t1", "Key": {}}},
            {"Put": {"TableName": "t1", "Item": {}}},
            {"Update": {"TableName": "t1", "Key": {}}},
        ]});
        let needs = recorder().needs("dynamodb", "TransactWriteItems", &body);
        let actions: Vec<&str> = needs.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(actions, ["dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]);
        assert!(needs.iter().all(|(_, r)| r["via"] == "STATE_TABLE" && r["type"] == "table"));
    }

    #[test]
    fn queries_of_an_index_batches_secrets_and_buses_name_their_resource() {
        let r = recorder();
        let query = r.needs("dynamodb", "Query", &json!({"TableName": "t1", "IndexName": "open"}));
        assert_eq!(query[0].1["type"], "index");
        assert_eq!(query[0].1["index"], "open");
        let batch = r.needs("dynamodb", "BatchGetItem", &json!({"RequestItems": {"t1": {"Keys": []}}}));
        assert_eq!((batch[0].0.as_str(), batch[0].1["name"].as_str()), ("dynamodb:BatchGetItem", Some("t1")));
        let secret = r.needs("secretsmanager", "GetSecretValue", &json!({"SecretId": "arn:s"}));
        assert_eq!(secret[0].1["via"], "X_SECRET_ARN");
        let events = r.needs("events", "PutEvents", &json!({"Entries": [{"Detail": "{}"}, {"EventBusName": "b"}]}));
        let buses: Vec<&str> = events.iter().filter_map(|(_, r)| r["name"].as_str()).collect();
        assert_eq!(buses, ["b", "default"]);
        assert_eq!(r.needs("s3", "GetObject", &Value::Null)[0].1["type"], "unknown");
        assert_eq!(iam_prefix("Secrets Manager"), "secretsmanager");
    }
}
