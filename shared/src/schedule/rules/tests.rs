//! `apply` against moto's EventBridge (`AWS_ENDPOINT_URL`); skipped loudly without it.

use super::*;
use crate::config::{Environment, load_str};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:memory-connector-sync";

fn config(connectors: &str) -> Config {
    let yaml = format!(
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
{connectors}"#
    );
    load_str(&yaml, "test.yaml", &Environment::from_map([])).unwrap_or_else(|e| panic!("{e}"))
}

fn connector(id: &str, schedule: &str, enabled: bool) -> String {
    format!("  - id: {id}\n    context_id: C{id}\n    enabled: {enabled}\n    schedule: {schedule}\n")
}

async fn client(test: &str) -> Option<Client> {
    crate::aws::emulator_endpoint("AWS_ENDPOINT_URL", test)?;
    Some(Client::new(&crate::aws::sdk_config().await))
}

fn rule_names(changes: &[Change]) -> Vec<(String, &'static str)> {
    changes
        .iter()
        .map(|c| match c {
            Change::Create { rule, .. } => (rule.clone(), "create"),
            Change::Update { rule, .. } => (rule.clone(), "update"),
            Change::Delete { rule } => (rule.clone(), "delete"),
            Change::Unchanged { rule } => (rule.clone(), "unchanged"),
        })
        .collect()
}

#[test]
fn desired_rules_carry_expression_state_and_input() {
    let two = config(
        &(connector("a", "{type: interval, interval_hours: 1}", true)
            + &connector("b", "{type: cron, cron: \"0 9 * * 1-5\"}", false)),
    );
    let rules = desired_rules(&two, "mc").unwrap();
    assert_eq!(rules[0].name, "mc-a");
    assert_eq!(rules[0].expression, "rate(1 hour)");
    assert_eq!(rules[0].input, r#"{"connector_id":"a","trigger":"schedule"}"#);
    assert!(rules[0].enabled && !rules[1].enabled);
    assert_eq!(rules[1].expression, "cron(0 9 ? * MON-FRI *)");
    let bad = config(&connector("c", "{type: cron, cron: \"0 0 1 * MON\"}", true));
    let error = desired_rules(&bad, "mc").unwrap_err().to_string();
    assert!(error.contains("connector c") && error.contains("day-of-week"), "{error}");
}

#[tokio::test]
async fn apply_is_idempotent_and_follows_config_changes() {
    let Some(client) = client("schedules::apply_is_idempotent_and_follows_config_changes").await else { return };
    let prefix = format!("mc{:08x}", fastrand::u32(..));
    let rules = ScheduleRules::new(client.clone(), &prefix, None, ARN);
    // A rule of the prefix this tool did not make is never touched.
    client.put_rule().name(format!("{prefix}-foreign")).schedule_expression("rate(5 minutes)").send().await.unwrap();

    let first = config(
        &(connector("alpha", "{type: interval, interval_hours: 1}", true)
            + &connector("beta", "{type: cron, cron: \"30 2 * * *\"}", true)
            + &connector("gamma", "{type: interval, interval_minutes: 15}", true)),
    );
    let planned = rules.apply(&first, true).await.unwrap();
    assert!(planned.iter().all(|c| matches!(c, Change::Create { .. })), "{planned:?}");
    assert!(rules.existing().await.unwrap().is_empty(), "a dry run writes nothing");

    let created = rules.apply(&first, false).await.unwrap();
    assert_eq!(rule_names(&created).iter().filter(|(_, a)| *a == "create").count(), 3, "{created:?}");
    let again = rules.apply(&first, false).await.unwrap();
    assert!(again.iter().all(|c| !c.is_change()), "the second apply changes nothing: {again:?}");

    let alpha = client.describe_rule().name(format!("{prefix}-alpha")).send().await.unwrap();
    assert_eq!(alpha.schedule_expression.as_deref(), Some("rate(1 hour)"));
    assert_eq!(alpha.state, Some(RuleState::Enabled));
    let targets = client.list_targets_by_rule().rule(format!("{prefix}-beta")).send().await.unwrap().targets.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!((targets[0].id.as_str(), targets[0].arn.as_str()), (TARGET_ID, ARN));
    assert_eq!(targets[0].input.as_deref(), Some(r#"{"connector_id":"beta","trigger":"schedule"}"#));

    // alpha every 2 hours, beta disabled, gamma gone, delta new.
    let second = config(
        &(connector("alpha", "{type: interval, interval_hours: 2}", true)
            + &connector("beta", "{type: cron, cron: \"30 2 * * *\"}", false)
            + &connector("delta", "{type: cron, cron: \"0 */6 * * *\"}", true)),
    );
    let changed = rules.apply(&second, false).await.unwrap();
    let mut summary = rule_names(&changed);
    summary.sort();
    assert_eq!(
        summary,
        [
            (format!("{prefix}-alpha"), "update"),
            (format!("{prefix}-beta"), "update"),
            (format!("{prefix}-delta"), "create"),
            (format!("{prefix}-gamma"), "delete"),
        ]
    );
    let alpha = client.describe_rule().name(format!("{prefix}-alpha")).send().await.unwrap();
    assert_eq!(alpha.schedule_expression.as_deref(), Some("rate(2 hours)"));
    let beta = client.describe_rule().name(format!("{prefix}-beta")).send().await.unwrap();
    assert_eq!(beta.state, Some(RuleState::Disabled));
    assert!(client.describe_rule().name(format!("{prefix}-gamma")).send().await.is_err(), "gamma deleted");
    assert!(client.describe_rule().name(format!("{prefix}-foreign")).send().await.is_ok(), "foreign rule kept");
    let settled = rules.apply(&second, false).await.unwrap();
    assert!(settled.iter().all(|c| !c.is_change()), "{settled:?}");
}
