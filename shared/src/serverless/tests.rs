//! The event shapes, the sample events and the Lambda config, the retry classification.

use super::*;

#[test]
fn event_shapes() {
    let direct = parse_sync_event(&json!({"connector_id": "docs", "force": true})).unwrap();
    assert_eq!(
        direct,
        SyncRequest { connector_id: "docs".into(), force: true, trigger: Trigger::Lambda, run_id: None }
    );
    let scheduled = parse_sync_event(&json!({"connector_id": "docs", "trigger": "schedule"})).unwrap();
    assert_eq!((scheduled.force, scheduled.trigger), (false, Trigger::Schedule));
    let requested = parse_sync_event(&json!({
        "version": "0", "source": "memory-connector", "detail-type": "SyncRequested",
        "detail": {"connector_id": "docs", "force": false}
    }))
    .unwrap();
    assert_eq!(requested.trigger, Trigger::Event);
    let raw = parse_sync_event(&json!({"detail-type": "Scheduled Event", "detail": {"connector_id": "x"}})).unwrap();
    assert_eq!((raw.connector_id.as_str(), raw.trigger.as_str()), ("x", "schedule"));
    for bad in [
        json!([]),
        json!({}),
        json!({"connector_id": ""}),
        json!({"connector_id": "x", "force": "yes"}),
        json!({"detail-type": "Other", "detail": {"connector_id": "x"}}),
    ] {
        let error = parse_sync_event(&bad).unwrap_err();
        assert!(!error.is_retryable(), "{bad}: {error}");
    }
}

/// The sample events of `config/events/` (used with `cargo lambda invoke`)
/// are what the handler expects (a schedule rule's and a Scheduler
/// schedule's constant input, a direct invoke, a `SyncRequested` event),
/// and the Lambda config layer is valid.
#[test]
fn sample_events_and_the_lambda_config() {
    for (name, text, trigger, force) in [
        ("sync-scheduled", include_str!("../../../config/events/sync-scheduled.json"), "schedule", false),
        ("sync-direct", include_str!("../../../config/events/sync-direct.json"), "lambda", false),
        ("sync-requested", include_str!("../../../config/events/sync-requested.json"), "event", true),
        ("sync-scheduler", include_str!("../../../config/events/sync-scheduler.json"), "schedule", false),
    ] {
        let event: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let request = parse_sync_event(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (request.connector_id.as_str(), request.trigger.as_str(), request.force),
            ("personal-memories", trigger, force),
            "{name}"
        );
    }
    for text in [
        include_str!("../../../config/events/cleanup-scheduled.json"),
        include_str!("../../../config/events/api-get-health.json"),
    ] {
        serde_json::from_str::<Value>(text).unwrap();
    }
    let env = Environment::from_map([
        ("MEMORY_API_KEY".to_owned(), "k".to_owned()),
        ("CONNECTOR_API_KEY".to_owned(), "c".to_owned()),
    ]);
    let config =
        config::load_str(include_str!("../../../config/lambda/memory-connector/config.yaml"), "lambda config", &env)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.state.backend, StateBackend::Dynamodb);
    assert!(config.connector(&ConnectorId::new("personal-memories")).is_some());
    assert_eq!(
        crate::schedule::eventbridge::unix_cron_to_eventbridge(&config.state.cleanup.cleanup_cron).unwrap(),
        "cron(0 2 * * ? *)",
        "the template's CleanupSchedule default matches cleanup_cron"
    );
}

#[test]
fn every_reason_is_listed() {
    let errors = [
        FunctionError::BadEvent("x".into()),
        FunctionError::UnknownConnector("x".into()),
        FunctionError::Config("x".into()),
        FunctionError::State(StateError::Unsupported("x".into())),
    ];
    for error in &errors {
        assert!(FunctionError::REASONS.contains(&error.reason()), "{error}");
    }
    assert!(FunctionError::REASONS.contains(&"secrets"));
}

#[test]
fn only_aws_failures_are_retried() {
    let state = FunctionError::State(StateError::Unsupported("x".into()));
    assert!(state.is_retryable());
    assert!(!FunctionError::UnknownConnector("x".into()).is_retryable());
    let answered = classify(Err(FunctionError::UnknownConnector("x".into()))).unwrap();
    assert_eq!(answered["status"], "rejected");
    assert!(classify(Err(state)).is_err());
}
