//! `pause`/`resume` in the `api` function switch the connector's EventBridge
//! Scheduler schedule too (the `RunLauncher` seam), against DynamoDB Local
//! (state) and moto (Scheduler; the config read from S3 as deployed). Skipped loudly without emulators.

use aws_sdk_scheduler::types::ScheduleState;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use connector_core::config_store::ConfigObject;
use connector_core::ids::ConnectorId;
use connector_core::schedule::scheduler::client::{Schedules, client, create_group_like_the_template};
use connector_core::schedule::scheduler::{Deployment, desired_schedules};
use connector_core::serverless::{CONFIG_URI_ENV, FunctionSettings, SCHEDULE_GROUP_ENV, api_router};
use connector_core::state::StateStore;
use connector_core::state::dynamodb::DynamoStore;
use serde_json::Value;
use sims::harness::ConfigSpec;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tower::ServiceExt;

const KEY: &str = "api-pause-key-77c";

async fn post(router: &axum::Router, path: &str) -> (StatusCode, Value) {
    let request =
        Request::builder().method("POST").uri(path).header("X-API-Key", KEY).body(Body::empty()).expect("req");
    let answer = router.clone().oneshot(request).await.expect("answer");
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_switch_the_schedule() {
    let Some(_) =
        connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL_DYNAMODB", "api pause_and_resume_switch_the_schedule")
    else {
        return;
    };
    let Some(_) =
        connector_core::aws::emulator_endpoint("AWS_ENDPOINT_URL", "api pause_and_resume_switch_the_schedule")
    else {
        return;
    };
    let sdk = connector_core::aws::sdk_config().await;
    let suffix = format!("{:08x}", fastrand::u32(..));
    let table = format!("api-pause-{suffix}");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    store.create_table().await.expect("table");
    let dir = tempfile::tempdir().expect("dir");
    let mut spec = ConfigSpec::new("http://127.0.0.1:9", "http://127.0.0.1:9");
    spec.backend = "dynamodb";
    spec.api_key = Some(KEY.into());
    let yaml = spec.render();
    // The config as deploy-config leaves it: in S3 (CONFIG_URI), no layer file.
    let config_path = dir.path().join("no-layer.yaml");
    let s3 = connector_core::config_store::client(&sdk);
    s3.create_bucket().bucket(format!("config-{suffix}")).send().await.expect("bucket");
    let object = ConfigObject::new(s3, &format!("s3://config-{suffix}/config.yaml")).expect("uri");
    object.put(&yaml, None).await.expect("upload");

    // The stack's group and the connector's schedule, as deploy-config leaves them.
    let scheduler = client(&sdk);
    let group = format!("api-{suffix}");
    let wiring = Deployment { config_uri: None, max_concurrency: None, ..Deployment::emulated(&group) };
    create_group_like_the_template(&scheduler, &wiring).await.expect("group");
    let deployment = Deployment::from_group(&scheduler, &group).await.expect("wiring");
    let env = connector_core::config::Environment::from_map([("MEMORY_API_KEY".to_owned(), "unused".to_owned())]);
    let config = connector_core::config::load_str(&yaml, "config.yaml", &env).expect("config");
    let schedules = Schedules::new(scheduler.clone(), deployment, 100.0);
    schedules.reconcile(&desired_schedules(&config, &BTreeSet::new()).expect("specs"), false).await.expect("apply");

    let vars = HashMap::from([
        ("STATE_TABLE".to_owned(), table),
        ("MEMORY_API_KEY".to_owned(), "unused".to_owned()),
        (SCHEDULE_GROUP_ENV.to_owned(), group.clone()),
        (CONFIG_URI_ENV.to_owned(), object.uri()),
    ]);
    let router = api_router(FunctionSettings { config_path, vars, sdk, safety_margin: Duration::from_secs(5) })
        .await
        .expect("cold start");
    let state = |s: Option<ScheduleState>| s.expect("state");
    let schedule_state = || async {
        state(scheduler.get_schedule().group_name(&group).name("personal-memories").send().await.expect("get").state)
    };
    assert_eq!(schedule_state().await, ScheduleState::Enabled);

    let (status, body) = post(&router, "/connectors/personal-memories/pause").await;
    assert_eq!((status, body["paused"].clone()), (StatusCode::OK, Value::Bool(true)), "{body}");
    assert_eq!(schedule_state().await, ScheduleState::Disabled, "the schedule stops firing");
    let connector = ConnectorId::new("personal-memories");
    assert!(store.connector_state(&connector).await.expect("state").expect("written").paused);
    // Paused: the next deploy keeps it disabled.
    let paused = BTreeSet::from([connector.clone()]);
    let kept = schedules.reconcile(&desired_schedules(&config, &paused).expect("specs"), true).await.expect("plan");
    assert!(kept.iter().all(|c| !c.is_change()), "{kept:?}");

    let (status, _) = post(&router, "/connectors/personal-memories/resume").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schedule_state().await, ScheduleState::Enabled, "the schedule fires again");
}
