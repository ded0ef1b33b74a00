use super::*;
use crate::config::{Environment, load_str};
use std::collections::BTreeMap;

/// A config with these connectors (`connector(...)` lines) and `max_concurrent_connectors`.
pub(crate) fn config(connectors: &str, max_concurrent: u32) -> Config {
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
advanced:
  pipeline:
    max_concurrent_connectors: {max_concurrent}
connectors:
{connectors}"#
    );
    load_str(&yaml, "test.yaml", &Environment::from_map([])).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn connector(id: &str, schedule: &str, enabled: bool) -> String {
    format!("  - id: {id}\n    context_id: C{id}\n    enabled: {enabled}\n    schedule: {schedule}\n")
}

pub(crate) fn deployment(group: &str) -> Deployment {
    Deployment::emulated(group)
}

fn no_pause() -> BTreeSet<ConnectorId> {
    BTreeSet::new()
}

#[test]
fn desired_schedules_carry_zone_window_state_and_message() {
    let cfg = config(
        &(connector("hourly", "{type: interval, interval_hours: 1}", true)
            + &connector(
                "paris",
                "{type: cron, cron: \"30 8 * * 1-5\", timezone: Europe/Paris, jitter_seconds: 90}",
                true,
            )
            + &connector("off", "{type: interval, interval_minutes: 15, jitter_seconds: 60}", false)
            + &connector("held", "{type: cron, cron: \"0 */6 * * *\", timezone: \" UTC \"}", true)),
        2,
    );
    let paused = BTreeSet::from([ConnectorId::new("held")]);
    let specs = desired_schedules(&cfg, &paused).unwrap();
    let by_name: BTreeMap<&str, &ScheduleSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let hourly = by_name["hourly"];
    assert_eq!(
        (hourly.expression.as_str(), hourly.timezone.as_str(), hourly.window_minutes, hourly.enabled),
        ("rate(1 hour)", "UTC", None, true)
    );
    let input: serde_json::Value = serde_json::from_str(&hourly.input).unwrap();
    assert_eq!(
        input,
        serde_json::json!({"connector_id": "hourly", "trigger": "schedule", "scheduled_at": "<aws.scheduler.scheduled-time>"})
    );
    assert_eq!(hourly.message_group, "hourly", "each connector in its own message group");
    assert!(hourly.description.starts_with(MANAGED_MARK));
    let paris = by_name["paris"];
    assert_eq!(
        (paris.expression.as_str(), paris.timezone.as_str(), paris.window_minutes),
        ("cron(30 8 ? * MON-FRI *)", "Europe/Paris", Some(2)),
        "90 s of jitter is a 2-minute window (rounded up)"
    );
    assert!(!by_name["off"].enabled, "a disabled connector's schedule is DISABLED");
    assert_eq!(by_name["off"].window_minutes, Some(1));
    assert!(!by_name["held"].enabled, "a paused connector's schedule is DISABLED");
    assert_eq!(by_name["held"].timezone, "UTC");

    let serial = config(&connector("a", "{type: interval, interval_hours: 1}", true), 1);
    assert_eq!(desired_schedules(&serial, &no_pause()).unwrap()[0].message_group, SERIAL_GROUP);

    let day = config(&connector("d", "{type: interval, interval_hours: 24, jitter_seconds: 86400}", true), 2);
    assert_eq!(desired_schedules(&day, &no_pause()).unwrap()[0].window_minutes, Some(1440));
    let long = config(&connector("d", "{type: interval, interval_hours: 48, jitter_seconds: 86401}", true), 2);
    let error = desired_schedules(&long, &no_pause()).unwrap_err().to_string();
    assert!(error.contains("connector d") && error.contains("24 hours"), "{error}");
    let bad = config(&connector("c", "{type: cron, cron: \"0 0 1 * MON\"}", true), 2);
    let error = desired_schedules(&bad, &no_pause()).unwrap_err().to_string();
    assert!(error.contains("connector c") && error.contains("day-of-week"), "{error}");
}

fn matching(spec: &ScheduleSpec) -> CurrentSchedule {
    CurrentSchedule {
        expression: Some(spec.expression.clone()),
        timezone: Some(spec.timezone.clone()),
        window_minutes: spec.window_minutes,
        enabled: spec.enabled,
        description: Some(spec.description.clone()),
        target_arn: Some(deployment("g").queue_arn),
        role_arn: Some(deployment("g").role_arn),
        input: Some(spec.input.clone()),
        message_group: Some(spec.message_group.clone()),
        dead_letter_arn: Some(deployment("g").dead_letter_arn),
        retry: Some((MAX_EVENT_AGE_SECONDS, MAX_RETRY_ATTEMPTS)),
    }
}

#[test]
fn differences_name_each_field() {
    let cfg = config(&connector("a", "{type: cron, cron: \"0 9 * * *\", timezone: Europe/Paris}", true), 2);
    let spec = &desired_schedules(&cfg, &no_pause()).unwrap()[0];
    let d = deployment("g");
    assert!(differences(spec, &matching(spec), &d).is_empty());
    let utc = config(&connector("a", "{type: interval, interval_hours: 1}", true), 2);
    let utc_spec = &desired_schedules(&utc, &no_pause()).unwrap()[0];
    assert!(
        differences(utc_spec, &CurrentSchedule { timezone: None, ..matching(utc_spec) }, &d).is_empty(),
        "an absent zone is UTC"
    );
    let cases: Vec<(CurrentSchedule, &str)> = vec![
        (
            CurrentSchedule { expression: Some("cron(0 8 * * ? *)".into()), ..matching(spec) },
            "expression cron(0 8 * * ? *) -> cron(0 9 * * ? *)",
        ),
        (CurrentSchedule { timezone: Some("UTC".into()), ..matching(spec) }, "timezone UTC -> Europe/Paris"),
        (CurrentSchedule { window_minutes: Some(5), ..matching(spec) }, "flexible window 5 min -> off"),
        (CurrentSchedule { enabled: false, ..matching(spec) }, "enable"),
        (CurrentSchedule { description: None, ..matching(spec) }, "description"),
        (CurrentSchedule { target_arn: Some("arn:other".into()), ..matching(spec) }, "target arn:other -> "),
        (CurrentSchedule { role_arn: None, ..matching(spec) }, "role"),
        (CurrentSchedule { input: Some("{}".into()), ..matching(spec) }, "input"),
        (CurrentSchedule { message_group: Some("serial".into()), ..matching(spec) }, "message group serial -> a"),
        (CurrentSchedule { dead_letter_arn: None, ..matching(spec) }, "dead-letter queue"),
        (CurrentSchedule { retry: Some((3600, 3)), ..matching(spec) }, "retry policy"),
    ];
    for (current, expected) in cases {
        let what = differences(spec, &current, &d);
        assert_eq!(what.len(), 1, "{current:?}: {what:?}");
        assert!(what[0].starts_with(expected), "{what:?} should start with {expected:?}");
    }
}

#[test]
fn the_stack_must_enforce_the_configured_bound() {
    let one = config(&connector("a", "{type: interval, interval_hours: 1}", true), 1);
    let five = config(&connector("a", "{type: interval, interval_hours: 1}", true), 5);
    let stack = |max| Deployment { max_concurrency: max, ..deployment("g") };
    assert_eq!(consumer_concurrency(&one), 2, "AWS's smallest MaximumConcurrency; the single group keeps it to one");
    check_concurrency(&one, &stack(Some(2))).unwrap();
    check_concurrency(&five, &stack(Some(5))).unwrap();
    check_concurrency(&five, &stack(None)).unwrap();
    let error = check_concurrency(&five, &stack(Some(2))).unwrap_err();
    assert!(error.is_usage());
    let text = error.to_string();
    assert!(text.contains("allows 5") && text.contains("MaxConcurrentConnectors=5"), "{text}");
    let text = check_concurrency(&one, &stack(Some(3))).unwrap_err().to_string();
    assert!(text.contains("MaxConcurrentConnectors=2"), "{text}");
}

#[cfg(feature = "aws")]
mod moto;

/// `infra/template.yaml` gives the schedule group the tags the CLI reads,
/// lets the scheduler role send only to the queue and the schedules'
/// dead-letter queue, and bounds the consumer the way the code assumes.
#[test]
fn the_template_wires_what_the_code_expects() {
    let resource = crate::infra_template::resource;
    let group = resource("ScheduleGroup");
    for (key, value) in [
        (tags::QUEUE_ARN, "!GetAtt SyncQueue.Arn"),
        (tags::ROLE_ARN, "!GetAtt SchedulerRole.Arn"),
        (tags::DEAD_LETTER_ARN, "!GetAtt SyncFailures.Arn"),
        (tags::CONFIG_URI, "!Sub s3://${ConfigBucket}/config.yaml"),
        (tags::MAX_CONCURRENCY, "!Ref MaxConcurrentConnectors"),
    ] {
        assert!(group.contains(&format!("- Key: {key}\n          Value: {value}")), "tag {key}: {group}");
    }
    let role = resource("SchedulerRole");
    assert!(role.contains("Service: scheduler.amazonaws.com") && role.contains("aws:SourceAccount"), "{role}");
    let actions: Vec<&str> = role.lines().filter_map(|l| l.trim().strip_prefix("Action: ")).collect();
    assert_eq!(actions, ["sts:AssumeRole", "sqs:SendMessage"], "the role may do nothing else: {role}");
    assert!(role.contains("- !GetAtt SyncQueue.Arn\n                  - !GetAtt SyncFailures.Arn\n"), "{role}");

    let queue = resource("SyncQueue");
    for needed in [
        "FifoQueue: true",
        "ContentBasedDeduplication: true",
        "maxReceiveCount: 3",
        "deadLetterTargetArn: !GetAtt SyncDeadLetter.Arn",
    ] {
        assert!(queue.contains(needed), "SyncQueue lacks {needed}: {queue}");
    }
    let visibility: u32 = queue
        .lines()
        .find_map(|l| l.trim().strip_prefix("VisibilityTimeout: "))
        .and_then(|v| v.parse().ok())
        .expect("VisibilityTimeout");
    let longest_sync: u32 = resource("SyncTimeoutSeconds")
        .lines()
        .find_map(|l| l.trim().strip_prefix("MaxValue: "))
        .and_then(|v| v.parse().ok())
        .expect("SyncTimeoutSeconds MaxValue");
    assert!(visibility > longest_sync, "a message must not come back while its run may still go on");
    let sync = resource("SyncFunction");
    for needed in
        ["Type: SQS", "BatchSize: 1", "ReportBatchItemFailures", "MaximumConcurrency: !Ref MaxConcurrentConnectors"]
    {
        assert!(sync.contains(needed), "SyncFunction's queue event lacks {needed}");
    }
    assert!(!sync.contains("EventBridgeRule"), "SyncRequested goes through the queue too");
    let param = resource("MaxConcurrentConnectors");
    assert!(param.contains("MinValue: 2"), "AWS's smallest MaximumConcurrency: {param}");
    let rule = resource("SyncRequestedRule");
    assert!(rule.contains(&format!("MessageGroupId: {SERIAL_GROUP}")), "{rule}");
    // pause/resume: GetSchedule, then UpdateSchedule passing the scheduler role.
    let api = resource("ApiFunction");
    for needed in
        ["scheduler:GetSchedule", "scheduler:UpdateSchedule", "iam:PassRole", "SCHEDULE_GROUP: !Ref ScheduleGroup"]
    {
        assert!(api.contains(needed), "ApiFunction lacks {needed}");
    }
    for function in ["SyncFunction", "ApiFunction", "CleanupFunction"] {
        let body = resource(function);
        assert!(
            body.contains("Action: s3:GetObject") && body.contains("Action: s3:ListBucket"),
            "{function} reads the config"
        );
    }
}
