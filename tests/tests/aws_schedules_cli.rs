//! `memory-connector schedules apply` through the real binary against
//! moto's EventBridge (`AWS_ENDPOINT_URL`, set by `make test`). Skipped
//! loudly without moto or when the binary was built without `--features aws`.

use sims::harness::Workspace;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:memory-connector-sync";

fn config(hours: u32) -> String {
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
  backend: dynamodb
  table: t
api:
  enabled: false
connectors:
  - id: hourly
    context_id: C1
    schedule: {{type: interval, interval_hours: {hours}}}
  - id: weekdays
    context_id: C2
    schedule: {{type: cron, cron: "0 9 * * 1-5"}}
"#
    )
}

fn actions(run: &sims::harness::CliRun) -> Vec<(String, String)> {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let json = run.json();
    let mut out: Vec<(String, String)> = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (c["rule"].as_str().unwrap_or_default().to_owned(), c["action"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_apply_twice_then_after_a_config_change() {
    let test = "schedules_apply_twice_then_after_a_config_change";
    if connector_core::test_support::required_var("AWS_ENDPOINT_URL", test, "no moto: run `make test`").is_none() {
        return;
    }
    let mut ws = Workspace::new();
    let help = ws.run_async(&["schedules", "--help"]).await;
    if help.code != 0 {
        connector_core::test_support::skip_test(
            test,
            "the binary was built without the `aws` feature (make test builds it with --features memory-connector/aws)",
        );
        return;
    }
    let prefix = format!("e2e{:08x}", fastrand::u32(..));
    ws.set_env("SYNC_FUNCTION_ARN", ARN);
    ws.set_env("SCHEDULE_RULE_PREFIX", &prefix);
    ws.write_config(&config(1));
    let apply = ["schedules", "apply", "--json"];

    let dry = ws.run_async(&["schedules", "apply", "--json", "--dry-run"]).await;
    assert!(actions(&dry).iter().all(|(_, a)| a == "create"));
    let first = ws.run_async(&apply).await;
    assert_eq!(
        actions(&first),
        [(format!("{prefix}-hourly"), "create".to_owned()), (format!("{prefix}-weekdays"), "create".to_owned())]
    );
    let second = ws.run_async(&apply).await;
    assert!(actions(&second).iter().all(|(_, a)| a == "unchanged"), "second run changes nothing: {}", second.stdout);

    ws.write_config(&config(3));
    let changed = ws.run_async(&apply).await;
    assert_eq!(
        actions(&changed),
        [(format!("{prefix}-hourly"), "update".to_owned()), (format!("{prefix}-weekdays"), "unchanged".to_owned())]
    );
    assert!(changed.stdout.contains("rate(1 hour) -> rate(3 hours)"), "{}", changed.stdout);

    let text = ws.run_async(&["schedules", "apply"]).await;
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("0 change(s)"), "{}", text.stdout);
}
