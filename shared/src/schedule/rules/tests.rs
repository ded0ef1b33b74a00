//! The legacy rules against moto's EventBridge (`AWS_ENDPOINT_URL`); skipped loudly without it.

use super::*;
use aws_sdk_eventbridge::types::Target;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:memory-connector-sync";

/// A rule as the earlier `schedules apply` made it.
pub(crate) async fn legacy_rule(client: &Client, name: &str, connector: &str) {
    client
        .put_rule()
        .name(name)
        .schedule_expression("rate(1 hour)")
        .description(format!("{MANAGED_MARK} of connector {connector} (managed by `schedules apply`)"))
        .send()
        .await
        .expect("put rule");
    let target = Target::builder()
        .id(TARGET_ID)
        .arn(ARN)
        .input(format!(r#"{{"connector_id":"{connector}","trigger":"schedule"}}"#))
        .build()
        .expect("target");
    client.put_targets().rule(name).targets(target).send().await.expect("put targets");
}

#[tokio::test]
async fn lists_and_deletes_only_the_rules_it_made() {
    let Some(_) = crate::aws::emulator_endpoint("AWS_ENDPOINT_URL", "rules::lists_and_deletes_only_the_rules_it_made")
    else {
        return;
    };
    let client = Client::new(&crate::aws::sdk_config().await);
    let prefix = format!("mc{:08x}", fastrand::u32(..));
    legacy_rule(&client, &format!("{prefix}-alpha"), "alpha").await;
    legacy_rule(&client, &format!("{prefix}-beta"), "beta").await;
    client.put_rule().name(format!("{prefix}-foreign")).schedule_expression("rate(5 minutes)").send().await.unwrap();

    let rules = LegacyRules::new(client.clone(), &prefix, None);
    let found = rules.existing().await.unwrap();
    assert_eq!(found.keys().cloned().collect::<Vec<_>>(), [format!("{prefix}-alpha"), format!("{prefix}-beta")]);
    for (name, rule) in &found {
        rules.delete(name, rule).await.unwrap();
    }
    assert!(rules.existing().await.unwrap().is_empty());
    assert!(client.describe_rule().name(format!("{prefix}-alpha")).send().await.is_err(), "deleted");
    assert!(client.describe_rule().name(format!("{prefix}-foreign")).send().await.is_ok(), "foreign rule kept");
}
