//! `memory-connector deploy-config` and `schedules apply|drift` through the
//! real binary against moto (EventBridge Scheduler, S3, EventBridge rules),
//! with the schedule group tagged the way `infra/template.yaml` tags it.
//! Skipped loudly without moto (`AWS_ENDPOINT_URL`, set by `make test`).

use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState};
use connector_core::schedule::scheduler::Deployment;
use connector_core::schedule::scheduler::client::create_group_like_the_template;
use serde_json::Value;
use sims::harness::{CliRun, Workspace};

fn config(weekdays: &str, max_concurrent: u32) -> String {
    format!(
        r#"
memory_api:
  url: "http://127.0.0.1:9"
  api_key: "k"
lightrag:
  mode: api
  api:
    url: "http://127.0.0.1:9"
state:
  backend: json
  path: state.json
api:
  enabled: false
advanced:
  pipeline:
    max_concurrent_connectors: {max_concurrent}
connectors:
  - id: hourly
    context_id: C1
    schedule: {{type: interval, interval_hours: 1, jitter_seconds: 120}}
  - id: weekdays
    context_id: C2
    schedule: {weekdays}
  - id: resting
    context_id: C3
    enabled: false
    schedule: {{type: interval, interval_hours: 6}}
"#
    )
}

const PARIS: &str = r#"{type: cron, cron: "0 9 * * 1-5", timezone: Europe/Paris}"#;

fn actions(run: &CliRun) -> Vec<(String, String)> {
    let json = run.json();
    let mut out: Vec<(String, String)> = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let name = c["schedule"].as_str().or(c["rule"].as_str()).unwrap_or_default().to_owned();
            (name, c["action"].as_str().unwrap_or_default().to_owned())
        })
        .filter(|(_, action)| action != "unchanged")
        .collect();
    out.sort();
    out
}

fn ok(run: &CliRun) -> &CliRun {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    run
}

fn pair(name: &str, action: &str) -> (String, String) {
    (name.to_owned(), action.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_config_uploads_reconciles_migrates_and_detects_drift() {
    let Some(_) = connector_core::aws::emulator_endpoint(
        "AWS_ENDPOINT_URL",
        "deploy_config_uploads_reconciles_migrates_and_detects_drift",
    ) else {
        return;
    };
    let sdk = connector_core::aws::sdk_config().await;
    let scheduler = connector_core::schedule::scheduler::client::client(&sdk);
    let s3 = connector_core::config_store::client(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let suffix = format!("{:08x}", fastrand::u32(..));
    let (group, bucket, prefix) = (format!("stack-{suffix}"), format!("config-{suffix}"), format!("old{suffix}"));
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let wiring = Deployment {
        config_uri: Some(format!("s3://{bucket}/config.yaml")),
        max_concurrency: Some(2),
        ..Deployment::emulated(&group)
    };
    create_group_like_the_template(&scheduler, &wiring).await.expect("schedule group");
    // A rule the earlier `schedules apply` made for `hourly`, and one it did not make.
    events
        .put_rule()
        .name(format!("{prefix}-hourly"))
        .schedule_expression("rate(1 hour)")
        .description("memory-connector schedule of connector hourly (managed by `schedules apply`)")
        .send()
        .await
        .expect("legacy rule");
    events.put_rule().name(format!("{prefix}-other")).schedule_expression("rate(1 day)").send().await.expect("rule");

    let mut ws = Workspace::new();
    ws.set_env("SCHEDULE_GROUP", &group);
    ws.set_env("SCHEDULE_RULE_PREFIX", &prefix);
    let first = config(PARIS, 2);
    ws.write_config(&first);

    let dry = ws.run_async(&["deploy-config", "--dry-run", "--json"]).await;
    assert_eq!(ok(&dry).json()["config"]["status"], "would_upload");
    assert_eq!(
        actions(&dry),
        [
            pair("hourly", "create"),
            pair(&format!("{prefix}-hourly"), "delete_rule"),
            pair("resting", "create"),
            pair("weekdays", "create")
        ]
    );
    let listed = scheduler.list_schedules().group_name(&group).send().await.expect("list").schedules;
    assert!(listed.is_empty(), "a dry run writes nothing");

    let deployed = ws.run_async(&["deploy-config", "--json"]).await;
    assert_eq!(ok(&deployed).json()["config"]["status"], "uploaded");
    assert_eq!(actions(&deployed).len(), 4);
    let object = s3.get_object().bucket(&bucket).key("config.yaml").send().await.expect("uploaded");
    let text = String::from_utf8(object.body.collect().await.expect("body").into_bytes().to_vec()).expect("utf-8");
    assert_eq!(text, first, "the file itself is uploaded");
    let weekdays = scheduler.get_schedule().group_name(&group).name("weekdays").send().await.expect("weekdays");
    assert_eq!(weekdays.schedule_expression.as_deref(), Some("cron(0 9 ? * MON-FRI *)"));
    assert_eq!(weekdays.schedule_expression_timezone.as_deref(), Some("Europe/Paris"));
    let resting = scheduler.get_schedule().group_name(&group).name("resting").send().await.expect("resting");
    assert_eq!(resting.state, Some(ScheduleState::Disabled));
    assert!(events.describe_rule().name(format!("{prefix}-hourly")).send().await.is_err(), "migrated");
    assert!(events.describe_rule().name(format!("{prefix}-other")).send().await.is_ok(), "not ours: kept");

    let clean = ws.run_async(&["schedules", "drift"]).await;
    assert!(ok(&clean).stdout.contains("no drift"), "{}", clean.stdout);
    let again = ws.run_async(&["deploy-config", "--json"]).await;
    assert_eq!(ok(&again).json()["config"]["status"], "unchanged");
    assert!(actions(&again).is_empty(), "a second deploy changes nothing");

    // Someone edits a schedule by hand: drift says so (exit 1), deploy-config puts it back.
    scheduler
        .update_schedule()
        .group_name(&group)
        .name("hourly")
        .schedule_expression("rate(5 minutes)")
        .flexible_time_window(FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().expect("w"))
        .target(
            aws_sdk_scheduler::types::Target::builder()
                .arn(&wiring.queue_arn)
                .role_arn(&wiring.role_arn)
                .build()
                .expect("target"),
        )
        .description("memory-connector schedule of connector hourly (managed by `schedules apply`)")
        .send()
        .await
        .expect("hand edit");
    let drift = ws.run_async(&["schedules", "drift", "--json"]).await;
    assert_eq!(drift.code, 1, "stdout:\n{}\nstderr:\n{}", drift.stdout, drift.stderr);
    assert_eq!(actions(&drift), [pair("hourly", "update")]);
    assert!(drift.stderr.contains("deploy-config"), "{}", drift.stderr);
    let restored = ws.run_async(&["deploy-config"]).await;
    assert!(
        ok(&restored).stdout.contains("update     hourly  expression rate(5 minutes) -> rate(1 hour)"),
        "{}",
        restored.stdout
    );

    // A paused connector's schedule is disabled by the next deploy too.
    let store = connector_core::state::json::JsonStore::open(&ws.path().join("state.json")).await.expect("state");
    connector_core::admin::set_paused(&store, &connector_core::ids::ConnectorId::new("hourly"), true)
        .await
        .expect("pause");
    drop(store);
    // A config change: weekdays every 3 hours.
    ws.write_config(&config("{type: interval, interval_hours: 3}", 2));
    let changed = ws.run_async(&["deploy-config", "--json"]).await;
    assert_eq!(ok(&changed).json()["config"]["status"], "uploaded");
    assert_eq!(actions(&changed), [pair("hourly", "update"), pair("weekdays", "update")]);
    let hourly = scheduler.get_schedule().group_name(&group).name("hourly").send().await.expect("hourly");
    assert_eq!(hourly.state, Some(ScheduleState::Disabled), "paused");
    let json: Value = changed.json();
    assert!(json["calls"]["GetSchedule"].as_u64().unwrap_or(0) >= 3, "{json}");

    // The stack enforces 2 at once; a config asking for 5 is refused before anything is written.
    ws.write_config(&config("{type: interval, interval_hours: 3}", 5));
    let refused = ws.run_async(&["deploy-config"]).await;
    assert_eq!(refused.code, 2, "stdout:\n{}\nstderr:\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("MaxConcurrentConnectors=5"), "{}", refused.stderr);
    let object = s3.get_object().bucket(&bucket).key("config.yaml").send().await.expect("still there");
    let text = String::from_utf8(object.body.collect().await.expect("body").into_bytes().to_vec()).expect("utf-8");
    assert!(text.contains("max_concurrent_connectors: 2"), "not uploaded");

    // `schedules apply` alone would make schedules from a config the functions do not have.
    let alone = ws.run_async(&["schedules", "apply", "--dry-run"]).await;
    assert_eq!(alone.code, 2, "stdout:\n{}\nstderr:\n{}", alone.stdout, alone.stderr);
    assert!(
        alone.stderr.contains("differs from the deployed config") && alone.stderr.contains("deploy-config"),
        "{}",
        alone.stderr
    );
    ws.write_config(&text);
    let same = ws.run_async(&["schedules", "apply", "--json"]).await;
    assert!(actions(ok(&same)).is_empty(), "the deployed config itself applies, and nothing differs");
}
