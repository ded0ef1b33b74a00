//! The api function as API Gateway calls it: each sample request of
//! `config/events/api-*.json` (HTTP API, payload format 2.0) read as
//! lambda_http's `LambdaRequest` and handed to the function's router
//! through `lambda_http::Adapter`, as the runtime does; the answer is the
//! JSON API Gateway receives. On the template's defaults: the shipped
//! Lambda config and only what the template gives the api function
//! (`STATE_TABLE`, `CONFIG_PATH`, the management key's secret, a plain
//! string in Secrets Manager). DynamoDB Local and moto; skipped loudly
//! without them.

use connector_core::serverless::{FunctionRole, FunctionSettings, api_function};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service as _};
use serde_json::{Value, json};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The key the sample requests carry.
const SAMPLE_KEY: &str = "sample-connector-api-key";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sample(name: &str) -> Value {
    let path = workspace().join(format!("config/events/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("sample event JSON")
}

/// The function's answer to `request` as API Gateway gets it: status and body.
async fn invoke(router: &axum::Router, request: Value) -> (u16, Value) {
    let request: LambdaRequest = serde_json::from_value(request).expect("an API Gateway HTTP API request");
    let mut adapter = Adapter::from(router.clone());
    let answer = adapter.call(LambdaEvent::new(request, Context::default())).await.expect("answer");
    let answer = serde_json::to_value(&answer).expect("the answer serializes");
    let status = u16::try_from(answer["statusCode"].as_u64().expect("statusCode")).expect("status");
    assert_eq!(answer["isBase64Encoded"], false, "{answer}");
    let body = answer["body"].as_str().map(|b| serde_json::from_str(b).expect("a JSON body")).unwrap_or(Value::Null);
    (status, body)
}

/// Every sample request of the API, on the template's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_api_gateway_requests_on_the_templates_defaults() {
    const TEST: &str = "api function: every_route_answers_api_gateway_requests_on_the_templates_defaults";
    if connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", TEST).is_none()
        || connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL", TEST).is_none()
    {
        return;
    }
    let sdk = connector_core::aws::sdk_config().await;
    let suffix = format!("{:010x}", fastrand::u64(..) >> 24);
    let table = format!("api-events-{suffix}");
    connector_core::state::dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table)
        .create_table()
        .await
        .expect("table");
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("memory-connector/api-{suffix}"))
        .secret_string(SAMPLE_KEY)
        .send()
        .await
        .expect("secret in moto")
        .arn
        .expect("arn");

    // What the template gives the api function on its defaults, by the table.
    let role = FunctionRole::Api;
    let config_path = workspace().join("config/lambda/memory-connector/config.yaml");
    let mut vars = HashMap::new();
    for input in role.secrets().iter().filter(|s| s.required) {
        vars.insert(input.variable(), secret.clone());
    }
    for (name, required) in role.variables() {
        match (*name, required) {
            ("STATE_TABLE", _) => vars.insert((*name).to_owned(), table.clone()),
            ("CONFIG_PATH", _) => vars.insert((*name).to_owned(), config_path.display().to_string()),
            (other, true) => panic!("the test does not know the api function's required variable {other}"),
            _ => None,
        };
    }
    // Where the simulators listen: what a deployment edits in the shipped
    // config (its `${MEMORY_API_URL}` and `${LIGHTRAG_URL}`).
    let memory = MemorySim::start(MemorySimOptions { api_key: Some(SAMPLE_KEY.into()), ..MemorySimOptions::default() })
        .await
        .expect("memory sim");
    let lightrag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    vars.insert("MEMORY_API_URL".into(), memory.url());
    vars.insert("LIGHTRAG_URL".into(), lightrag.url());
    let settings = FunctionSettings { config_path, vars, sdk, safety_margin: Duration::from_secs(5) };
    let router = api_function(settings).await.expect("cold start");

    let expected: &[(&str, u16, &str, Value)] = &[
        ("api-get-health", 200, "/status", json!("healthy")),
        ("api-list-connectors", 200, "/0/connector_id", json!("personal-memories")),
        ("api-get-connector", 200, "/config/id", json!("personal-memories")),
        ("api-get-status", 200, "/connector_id", json!("personal-memories")),
        ("api-get-history", 200, "", json!([])),
        ("api-get-failed", 200, "", json!([])),
        ("api-post-trigger", 202, "/status", json!("accepted")),
        ("api-post-reset", 202, "/reset", json!("accepted")),
        ("api-post-pause", 200, "/paused", json!(true)),
        ("api-post-resume", 200, "/paused", json!(false)),
        ("api-post-retry-failed", 200, "/replayed", json!(0)),
        ("api-get-openapi", 200, "/openapi", json!("3.0.3")),
        ("api-get-lookup-resolve", 404, "/error/code", json!("not_found")),
        ("api-get-lookup-by-memory", 404, "/error/code", json!("not_found")),
        // LightRAG was asked (the simulator knows no such entity).
        ("api-get-lookup-by-entity", 404, "/error/code", json!("not_found")),
        ("api-post-ask", 200, "/connector_id", json!("personal-memories")),
    ];
    for (name, status, pointer, value) in expected {
        let (got, body) = invoke(&router, sample(name)).await;
        assert_eq!(got, *status, "{name}: {body}");
        assert_eq!(body.pointer(pointer), Some(value), "{name}: {body}");
    }
    let mut samples: Vec<String> = std::fs::read_dir(workspace().join("config/events"))
        .expect("config/events")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().trim_end_matches(".json").to_owned())
        .filter(|n| n.starts_with("api-"))
        .collect();
    samples.sort();
    let mut covered: Vec<String> = expected.iter().map(|(n, ..)| (*n).to_owned()).collect();
    covered.sort();
    assert_eq!(samples, covered, "every sample request is invoked here");

    // Without the key: refused, through the same path.
    let mut anonymous = sample("api-list-connectors");
    anonymous["headers"].as_object_mut().expect("headers").remove("x-api-key");
    let (status, body) = invoke(&router, anonymous).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
}

/// An api function whose config it cannot serve with (here: no management
/// key) answers `/health` with 503 `degraded` and every route 503, instead
/// of failing its start and answering 500 on everything.
#[tokio::test]
async fn a_misconfigured_function_answers_health_degraded() {
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("config.yaml");
    let shipped =
        std::fs::read_to_string(workspace().join("config/lambda/memory-connector/config.yaml")).expect("config");
    std::fs::write(&config_path, shipped.replace("\"${CONNECTOR_API_KEY}\"", "\"${CONNECTOR_API_KEY:-}\""))
        .expect("write");
    let vars = HashMap::from([("STATE_TABLE".to_owned(), "t".to_owned())]);
    let sdk = connector_core::aws::sdk_config().await;
    let router = api_function(FunctionSettings { config_path, vars, sdk, safety_margin: Duration::from_secs(5) })
        .await
        .expect("a config problem still starts the function");
    let (status, body) = invoke(&router, sample("api-get-health")).await;
    assert_eq!((status, body["status"].as_str()), (503, Some("degraded")), "{body}");
    let (status, body) = invoke(&router, sample("api-list-connectors")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("misconfigured")), "{body}");
}
