//! `infra/template.yaml` against the code (run by
//! `tests/scripts/template-check.sh` in `make test`, after the whole test
//! run recorded its AWS calls): the template expanded offline by
//! `aws-sam-translator`, evaluated under the default parameters and under
//! every option set ([`cfn`]), each function's role read from it ([`iam`])
//! and compared with [`FunctionRole`] and with the calls the functions'
//! tests and the state store's tests sent ([`calls`]):
//!
//! - every `*_SECRET_ARN` a function receives is its own (the table) and
//!   readable by its role; its other variables are ones its code reads;
//! - every recorded call is allowed on the resource it touched, and every
//!   grant is used by a recorded call or by Lambda itself (logs, the
//!   failure destination): nothing more is granted;
//! - the alarms watch the metrics the functions write; logs expire; the
//!   API is throttled and logged; the table and the failure queue survive.

mod calls;
mod cfn;
mod iam;

use super::FunctionRole;
use super::roles::{PlatformGrant, SecretInput};
use crate::telemetry::emf::{EmfMetric, NAMESPACE_ENV};
use calls::{Need, Recordings};
use cfn::{ACCOUNT, REGION, Template};
use iam::RoleGrants;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The expanded template (written by tests/scripts/template-check.sh).
const EXPANDED_ENV: &str = "MEMORY_CONNECTOR_EXPANDED_TEMPLATE";

fn expanded() -> Value {
    let path = std::env::var_os(EXPANDED_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{EXPANDED_ENV} is not set: run tests/scripts/template-check.sh (make test does)"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn secret_arn(parameter: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{parameter}-AbCdEf")
}

/// The parameter sets the template is checked under: the defaults (only
/// the required secrets given), and every option set.
fn parameter_sets() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let secrets: Vec<&SecretInput> = FunctionRole::ALL.iter().flat_map(|r| r.secrets()).collect();
    let required = secrets.iter().filter(|s| s.required).map(|s| (s.parameter, secret_arn(s.parameter)));
    let mut every: Vec<(&str, String)> = secrets.iter().map(|s| (s.parameter, secret_arn(s.parameter))).collect();
    every.push(("AlarmTopicArn", format!("arn:aws:sns:{REGION}:{ACCOUNT}:alarms")));
    every.push(("ApiReservedConcurrency", "5".into()));
    every.dedup();
    vec![("the defaults", required.collect()), ("every option", every)]
}

fn templates() -> Vec<(&'static str, Template)> {
    let doc = expanded();
    parameter_sets()
        .into_iter()
        .map(|(name, params)| {
            let given: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            (name, Template::new(doc.clone(), &given))
        })
        .collect()
}

/// The function's environment variables, evaluated.
fn environment(template: &Template, role: FunctionRole) -> Map<String, Value> {
    let variables = &template.resource(role.logical_id())["Properties"]["Environment"]["Variables"];
    template.eval(variables).and_then(|v| v.as_object().cloned()).unwrap_or_default()
}

fn is_secret_variable(name: &str) -> bool {
    name.ends_with(crate::secrets::SECRET_REFERENCE_SUFFIX)
}

fn fail_with(problems: Vec<String>) {
    assert!(problems.is_empty(), "infra/template.yaml and the code disagree:\n- {}", problems.join("\n- "));
}

/// Each function gets exactly its secrets (and its role may read them),
/// and only variables its code reads. Before: `Globals` gave every function
/// every secret, so setting `ConnectorApiKeySecretArn` made `sync` and
/// `cleanup` fail at start with AccessDenied.
#[test]
#[ignore = "needs the expanded template: tests/scripts/template-check.sh"]
fn each_function_gets_exactly_its_secrets_readable_and_its_variables() {
    let mut problems = Vec::new();
    for (set, template) in templates() {
        for role in FunctionRole::ALL {
            let env = environment(&template, role);
            let grants = RoleGrants::of_function(&template, role.logical_id());
            let expected: BTreeSet<String> = role
                .secrets()
                .iter()
                .filter(|s| s.required || set == "every option")
                .map(SecretInput::variable)
                .collect();
            let given: BTreeSet<String> = env.keys().filter(|k| is_secret_variable(k)).cloned().collect();
            if given != expected {
                problems
                    .push(format!("{set}: {} receives secrets {given:?}, its code reads {expected:?}", role.name()));
            }
            for (variable, arn) in env.iter().filter(|(k, _)| is_secret_variable(k)) {
                let arn = cfn::scalar(arn);
                if let Some(input) = role.secrets().iter().find(|s| s.variable() == *variable)
                    && arn != secret_arn(input.parameter)
                {
                    problems.push(format!(
                        "{set}: {}'s {variable} is not the parameter {}",
                        role.name(),
                        input.parameter
                    ));
                }
                if !grants.allows("secretsmanager:GetSecretValue", &arn) {
                    problems.push(format!("{set}: {} receives {variable} but its role may not read it", role.name()));
                }
            }
            for variable in env.keys().filter(|k| !is_secret_variable(k)) {
                if !role.variables().iter().any(|(name, _)| name == variable) {
                    problems.push(format!("{set}: {} receives {variable}, which its code never reads", role.name()));
                }
            }
            for (variable, _) in role.variables().iter().filter(|(_, required)| *required) {
                if !env.contains_key(*variable) {
                    problems.push(format!("{set}: {} needs {variable}, the template does not set it", role.name()));
                }
            }
        }
    }
    // A required secret is a deploy-time error when missing, not a failure at run time.
    let doc = expanded();
    for input in FunctionRole::ALL.iter().flat_map(|r| r.secrets()).filter(|s| s.required) {
        let spec = &doc["Parameters"][input.parameter];
        let pattern = spec["AllowedPattern"].as_str().unwrap_or_default();
        if spec.get("Default").is_some() || pattern.is_empty() || pattern.starts_with("^$|") {
            problems
                .push(format!("{} must be required (no Default, an AllowedPattern refusing \"\")", input.parameter));
        }
    }
    fail_with(problems);
}

/// The ARNs a recorded need touched, for `role` in `template`.
fn arns(template: &Template, role: FunctionRole, need: &Need) -> Result<Vec<String>, String> {
    let env = environment(template, role);
    let r = &need.resource;
    let named = |variable: &str| {
        env.get(variable).map(cfn::scalar).ok_or_else(|| {
            format!(
                "{} names a resource by {variable}, which the template does not give it ({})",
                role.name(),
                need.seen
            )
        })
    };
    let via = r["via"].as_str();
    match r["type"].as_str().unwrap_or_default() {
        kind @ ("table" | "index") => {
            let table = match via {
                _ if need.via_store => named(crate::state::dynamodb::TABLE_ENV)?,
                Some(variable) => named(variable)?,
                None => return Err(format!("{} touched a table no variable of it names ({})", role.name(), need.seen)),
            };
            let base = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}");
            Ok(vec![if kind == "index" {
                format!("{base}/index/{}", r["index"].as_str().unwrap_or_default())
            } else {
                base
            }])
        }
        // The code reads every `*_SECRET_ARN` it is given, whatever its name.
        "secret" => {
            let all: Vec<String> =
                env.iter().filter(|(k, _)| is_secret_variable(k)).map(|(_, v)| cfn::scalar(v)).collect();
            if all.is_empty() {
                return Err(format!("{}'s tests give it a secret the template does not ({})", role.name(), need.seen));
            }
            Ok(all)
        }
        "event-bus" => {
            let bus = match via {
                Some(variable) => named(variable)?,
                None => r["name"].as_str().unwrap_or_default().to_owned(),
            };
            Ok(vec![format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}")])
        }
        other => Err(format!(
            "{}: the recorder does not know the resources of {} ({other}): teach aws/record.rs ({})",
            role.name(),
            r["service"],
            need.seen
        )),
    }
}

/// The queue of the function's `OnFailure` destination, if it has one.
fn failure_destination(template: &Template, role: FunctionRole) -> Option<String> {
    template.resources_of_type("AWS::Lambda::EventInvokeConfig").find_map(|(_, config)| {
        let config = template.eval(&config["Properties"])?;
        (config["FunctionName"] == format!("{}-phys", role.logical_id()))
            .then(|| config["DestinationConfig"]["OnFailure"]["Destination"].as_str().map(str::to_owned))
            .flatten()
    })
}

/// Every call the functions' tests (and the store's tests, for the store
/// methods each function used) sent is allowed on the resource it touched,
/// and nothing else is granted. Before: `api` could `dynamodb:Scan`, which
/// it never does.
#[test]
#[ignore = "needs the expanded template and a whole test run's recorded calls: tests/scripts/template-check.sh"]
fn roles_allow_every_recorded_call_and_nothing_more() {
    let dir = std::env::var_os(crate::aws::record::RECORD_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{} is not set: run make test", crate::aws::record::RECORD_ENV));
    let recordings = Recordings::load(&dir);
    fail_with(check_recorded_calls(&recordings));
}

fn check_recorded_calls(recordings: &Recordings) -> Vec<String> {
    let mut problems = Vec::new();
    for (set, template) in templates() {
        for role in FunctionRole::ALL {
            let needs = recordings.needs(role.name());
            if needs.is_empty() {
                problems.push(format!("no AWS call of the {} function was recorded: were its tests run?", role.name()));
                continue;
            }
            for method in recordings.unseen_store_methods(role.name()) {
                problems.push(format!("{} uses the store's {method}, which the store's tests never ran", role.name()));
            }
            let grants = RoleGrants::of_function(&template, role.logical_id());
            let mut used = vec![false; grants.grants.len()];
            for need in &needs {
                match arns(&template, role, need) {
                    Err(problem) => problems.push(format!("{set}: {problem}")),
                    Ok(arns) => {
                        for arn in arns {
                            let mut allowed = false;
                            for (i, grant) in grants.grants.iter().enumerate() {
                                if grant.allows(&need.action, &arn) {
                                    used[i] = true;
                                    allowed = true;
                                }
                            }
                            if !allowed {
                                problems.push(format!(
                                    "{set}: {}'s role does not allow {} on {arn}, which {} sends",
                                    role.name(),
                                    need.action,
                                    need.seen
                                ));
                            }
                        }
                    }
                }
            }
            let destination = failure_destination(&template, role);
            let platform = role.platform();
            for (grant, used) in grants.grants.iter().zip(used) {
                let lambda_sends = platform.contains(&PlatformGrant::OnFailureQueue)
                    && grant.action == "sqs:SendMessage"
                    && destination.as_deref() == Some(grant.resource.as_str());
                if grant.action.contains('*') {
                    problems.push(format!("{set}: {} is granted the wildcard {}", role.name(), grant.action));
                } else if !used && !lambda_sends {
                    problems.push(format!(
                        "{set}: {} is granted {} on {} ({}/{}) but no recorded call uses it",
                        role.name(),
                        grant.action,
                        grant.resource,
                        grant.policy,
                        grant.sid
                    ));
                }
            }
            let managed: BTreeSet<&str> = grants.managed.iter().map(String::as_str).collect();
            let expected: Vec<String> = platform
                .iter()
                .filter_map(|p| match p {
                    PlatformGrant::ManagedPolicy(name) => Some(format!("arn:aws:iam::aws:policy/{name}")),
                    PlatformGrant::OnFailureQueue => None,
                })
                .collect();
            if managed != expected.iter().map(String::as_str).collect() {
                problems
                    .push(format!("{set}: {} has managed policies {managed:?}, expected {expected:?}", role.name()));
            }
        }
    }
    problems
}

/// The alarms watch what the functions write and what Lambda, SQS and API
/// Gateway report; logs expire; the API is throttled and logged; the table
/// and the failure queue survive a stack deletion.
#[test]
#[ignore = "needs the expanded template: tests/scripts/template-check.sh"]
fn alarms_logs_and_hardening() {
    let mut problems = Vec::new();
    for (set, template) in templates() {
        let namespace = environment(&template, FunctionRole::Sync).get(NAMESPACE_ENV).map(cfn::scalar);
        let mut watched: BTreeSet<String> = BTreeSet::new();
        for (id, alarm) in template.resources_of_type("AWS::CloudWatch::Alarm") {
            let alarm = template.eval(&alarm["Properties"]).unwrap_or_default();
            let mut metrics = vec![alarm.clone()];
            metrics
                .extend(alarm["Metrics"].as_array().into_iter().flatten().map(|m| m["MetricStat"]["Metric"].clone()));
            for metric in metrics.iter().filter(|m| m["MetricName"].is_string()) {
                let name = metric["MetricName"].as_str().unwrap_or_default();
                let dimensions: Vec<String> = metric["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| format!("{}={}", d["Name"].as_str().unwrap_or_default(), cfn::scalar(&d["Value"])))
                    .collect();
                if metric["Namespace"].as_str() == namespace.as_deref() {
                    match EmfMetric::ALL.iter().find(|m| m.name() == name) {
                        Some(m) if dimensions.iter().all(|d| d.starts_with(&format!("{}=", m.dimension()))) => {}
                        _ => {
                            problems.push(format!("{set}: {id} watches {name} {dimensions:?}, which sync never writes"))
                        }
                    }
                }
                watched.insert(format!(
                    "{}/{name} {}",
                    metric["Namespace"].as_str().unwrap_or_default(),
                    dimensions.join(",")
                ));
            }
            let actions = alarm["AlarmActions"].as_array().map(Vec::len).unwrap_or(0);
            let expected = usize::from(set == "every option");
            if actions != expected || alarm["OKActions"].as_array().map(Vec::len).unwrap_or(0) != expected {
                problems.push(format!("{set}: {id} notifies {actions} topics, expected {expected}"));
            }
            if alarm["TreatMissingData"] != "notBreaching" {
                problems.push(format!("{set}: {id} would fire on missing data (no runs, no traffic)"));
            }
        }
        let ns = namespace.clone().unwrap_or_default();
        let mut expected = vec![
            format!("{ns}/Runs Status={}", crate::state::RunStatus::Failed.as_str()),
            "AWS/SQS/ApproximateNumberOfMessagesVisible QueueName=SyncFailures-phys".to_owned(),
        ];
        expected.extend(super::FunctionError::REASONS.iter().map(|r| format!("{ns}/RejectedEvents Reason={r}")));
        for role in FunctionRole::ALL {
            for metric in ["Errors", "Throttles"] {
                expected.push(format!("AWS/Lambda/{metric} FunctionName={}-phys", role.logical_id()));
            }
        }
        for missing in expected.iter().filter(|e| !watched.contains(*e)) {
            problems.push(format!("{set}: no alarm watches {missing}"));
        }
        // Logs: each function's own group, kept LogRetentionDays.
        let days = template.string(&serde_json::json!({"Ref": "LogRetentionDays"}));
        for role in FunctionRole::ALL {
            let function = template.eval(&template.resource(role.logical_id())["Properties"]).unwrap_or_default();
            let group = function["LoggingConfig"]["LogGroup"].as_str().unwrap_or_default();
            let retention = group
                .strip_suffix("-phys")
                .and_then(|id| template.eval(&template.resource(id)["Properties"]["RetentionInDays"]))
                .map(|v| cfn::scalar(&v));
            if retention != days {
                problems.push(format!("{set}: {}'s logs are not kept LogRetentionDays (group {group:?})", role.name()));
            }
        }
        // Hardening.
        let table = template.eval(&template.resource("StateTable")["Properties"]).unwrap_or_default();
        if table["DeletionProtectionEnabled"] != true {
            problems.push(format!("{set}: the state table has no deletion protection"));
        }
        let queue = template.resource("SyncFailures");
        if queue["DeletionPolicy"] != "Retain" || queue["UpdateReplacePolicy"] != "Retain" {
            problems.push(format!("{set}: the failure queue is deleted with the stack"));
        }
        for (id, stage) in template.resources_of_type("AWS::ApiGatewayV2::Stage") {
            let stage = template.eval(&stage["Properties"]).unwrap_or_default();
            let route = &stage["DefaultRouteSettings"];
            if !route["ThrottlingRateLimit"].is_string() || !route["ThrottlingBurstLimit"].is_string() {
                problems.push(format!("{set}: {id} is not throttled"));
            }
            if !stage["AccessLogSettings"]["DestinationArn"].as_str().is_some_and(|a| a.contains(":log-group:")) {
                problems.push(format!("{set}: {id} has no access log"));
            }
        }
        let api = template.eval(&template.resource("ApiFunction")["Properties"]).unwrap_or_default();
        let reserved = api.get("ReservedConcurrentExecutions").map(cfn::scalar);
        let expected = (set == "every option").then(|| "5".to_owned());
        if reserved != expected {
            problems.push(format!("{set}: the api function reserves {reserved:?}, expected {expected:?}"));
        }
    }
    fail_with(problems);
}

/// The sample API Gateway events are requests of the template's route.
#[test]
#[ignore = "needs the expanded template: tests/scripts/template-check.sh"]
fn sample_api_events_are_requests_of_the_templates_route() {
    let doc = expanded();
    let paths = doc["Resources"]["HttpApi"]["Properties"]["Body"]["paths"].as_object().cloned().unwrap_or_default();
    let routes: BTreeSet<String> = paths
        .iter()
        .flat_map(|(path, methods)| {
            methods.as_object().into_iter().flatten().map(move |(method, _)| {
                let method =
                    if method == "x-amazon-apigateway-any-method" { "ANY".into() } else { method.to_uppercase() };
                format!("{method} {path}")
            })
        })
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config/events").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("api-") {
            continue;
        }
        let event: Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).expect("event")).expect("json");
        let route = event["routeKey"].as_str().unwrap_or_default();
        assert!(routes.contains(route), "{name}: route {route} is not one of the template's {routes:?}");
        assert_eq!(event["requestContext"]["routeKey"], route, "{name}");
        seen += 1;
    }
    assert!(seen > 5, "the API's sample events are in config/events/api-*.json");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The check itself fails where it should: a call no statement allows,
    /// a grant no call uses, a secret the role cannot read.
    #[test]
    fn the_checker_catches_a_missing_and_an_unused_grant() {
        let doc = json!({
            "Parameters": {},
            "Resources": {
                "T": {"Type": "AWS::DynamoDB::Table"},
                "CleanupFunction": {"Type": "AWS::Lambda::Function", "Properties": {
                    "Role": {"Fn::GetAtt": ["CleanupFunctionRole", "Arn"]},
                    "Environment": {"Variables": {"STATE_TABLE": {"Ref": "T"}}}}},
                "CleanupFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p",
                    "PolicyDocument": {"Statement": [{"Sid": "S", "Effect": "Allow",
                        "Action": ["dynamodb:Query", "dynamodb:Scan"], "Resource": {"Fn::GetAtt": ["T", "Arn"]}}]}}]}},
            }
        });
        let template = Template::new(doc, &[]);
        let recordings = Recordings::from_lines(vec![
            json!({"role": "cleanup", "store_method": "prune_runs"}),
            json!({"role": "store", "store_method": "prune_runs", "operation": "Query",
                   "needs": [{"action": "dynamodb:Query", "resource": {"type": "table", "name": "x"}}]}),
            json!({"role": "store", "store_method": "prune_runs", "operation": "BatchWriteItem",
                   "needs": [{"action": "dynamodb:BatchWriteItem", "resource": {"type": "table", "name": "x"}}]}),
        ]);
        let grants = RoleGrants::of_function(&template, "CleanupFunction");
        let needs = recordings.needs("cleanup");
        assert_eq!(needs.len(), 2);
        let arn = &arns(&template, FunctionRole::Cleanup, &needs[0]).unwrap()[0];
        assert_eq!(arn, "arn:aws:dynamodb:us-east-1:123456789012:table/T-phys");
        assert!(grants.allows("dynamodb:Query", arn));
        assert!(!grants.allows("dynamodb:BatchWriteItem", arn), "a call the role does not allow");
        assert!(grants.grants.iter().any(|g| g.action == "dynamodb:Scan"), "a grant no call uses");
        assert!(recordings.unseen_store_methods("cleanup").is_empty());
    }
}
