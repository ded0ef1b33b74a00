//! Loader tests across the stages: the complete example, interpolation,
//! typed references, error reports (insta snapshots of what a person reads),
//! every validation rule, and secrecy.

use super::*;
use crate::ids::ConnectorId;
use std::path::{Path, PathBuf};

const SECRETS: &[(&str, &str)] = &[
    ("MEMORY_API_KEY", "mem-key-7f3a9c2e"),
    ("LIGHTRAG_API_KEY", "lightrag-key-b81d44"),
    ("CONNECTOR_API_KEY", "connector-key-5e6f"),
    ("ALERT_WEBHOOK_URL", "https://hooks.example.com/T000/B000/tokenXYZ123"),
    ("ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef-enc"),
];

pub(super) fn env(pairs: &[(&str, &str)]) -> Environment {
    Environment::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/config.example.yaml")
}

/// The smallest valid config (the management API without auth).
pub(super) const MINIMAL: &str = r#"
memory_api:
  url: "http://127.0.0.1:8080"
api:
  enable_auth: false
connectors:
  - id: "personal"
    context_id: "CTX1"
"#;

fn load_ok(yaml: &str, e: &Environment) -> Config {
    match load_str(yaml, "test.yaml", e) {
        Ok(c) => c,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

pub(super) fn load_err(yaml: &str, e: &Environment) -> ConfigError {
    match load_str(yaml, "test.yaml", e) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(err) => err,
    }
}

fn fields(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.field.as_str()).collect()
}

// ------------------------------------------------------------ complete example

#[test]
fn example_config_loads_with_the_reference_values() {
    let c = load_with_env(&example_path(), &env(SECRETS)).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.lightrag.mode, LightragMode::Api);
    assert_eq!(c.lightrag.api.url, "http://localhost:9621");
    assert_eq!(c.lightrag.api.api_key.as_ref().map(|s| s.expose()), Some("lightrag-key-b81d44"));
    assert_eq!(c.lightrag.api.workspace, "memories");
    assert_eq!(c.lightrag.api.timeout, 300);
    assert_eq!(c.lightrag.direct.working_dir, PathBuf::from("./lightrag_storage"));

    assert_eq!(c.memory_api.url, "http://127.0.0.1:8080");
    assert_eq!(c.memory_api.api_key.as_ref().map(|s| s.expose()), Some("mem-key-7f3a9c2e"));
    assert_eq!((c.memory_api.timeout, c.memory_api.max_retries), (30, 3));
    assert_eq!(c.memory_api.retry_backoff, 2.0);
    assert_eq!(c.memory_api.max_response_bytes, 64 * 1024 * 1024);

    assert_eq!(c.connectors.len(), 2);
    let p = &c.connectors[0];
    assert_eq!(p.id, ConnectorId::new("personal-memories"));
    assert!(p.enabled);
    assert_eq!(p.description.as_deref(), Some("Personal memory sync"));
    assert_eq!(p.context_id, "CTX123");
    assert_eq!(p.schedule.kind, ScheduleType::Interval);
    assert_eq!(p.schedule.interval_hours, Some(1.0));
    assert_eq!(p.ingestion.query_range, QueryRange::Week);
    assert_eq!((p.ingestion.query_limit, p.ingestion.batch_size), (100, 10));
    assert!(p.ingestion.skip_empty_transcripts);
    assert_eq!(p.transformation.strategy, Strategy::Standard);
    assert!(!p.transformation.include_audio && !p.transformation.geocoding && p.transformation.extract_tags);
    assert_eq!(p.retry, RetryConfig { max_attempts: 3, backoff_multiplier: 2.0, max_backoff_seconds: 60 });

    let w = &c.connectors[1];
    assert_eq!(w.id.as_str(), "work-memories");
    assert!(!w.enabled);
    assert_eq!(w.context_id, "CTX456");
    assert_eq!(w.schedule.kind, ScheduleType::Cron);
    assert_eq!(w.schedule.cron.as_deref(), Some("0 9,17 * * 1-5"));
    assert_eq!(w.ingestion.query_range, QueryRange::Day);
    assert_eq!((w.ingestion.query_limit, w.ingestion.batch_size), (50, 5));
    assert_eq!(w.retry.max_attempts, 3);

    assert_eq!(c.state.backend, StateBackend::Json);
    assert_eq!(c.state.path, PathBuf::from("./memory_sync_state.json"));
    assert_eq!(c.state.cleanup, CleanupConfig { enabled: true, retention_days: 90, cleanup_cron: "0 2 * * *".into() });

    assert!(c.api.enabled && c.api.enable_auth);
    assert_eq!((c.api.host.as_str(), c.api.port), ("0.0.0.0", 9622));
    assert_eq!(c.api.api_key.as_ref().map(|s| s.expose()), Some("connector-key-5e6f"));
    assert_eq!(c.api.cors.origins, vec!["http://localhost:3000", "http://localhost:9621"]);
    assert_eq!(c.api.rate_limit, RateLimitConfig { enabled: false, requests_per_minute: 60 });

    assert_eq!((c.logging.level, c.logging.format), (LogLevel::Info, LogFormat::Json));
    assert!(c.logging.file.enabled);
    assert_eq!(c.logging.file.path, PathBuf::from("./logs/memory_connector.log"));
    assert_eq!((c.logging.file.max_bytes, c.logging.file.backup_count), (10_485_760, 5));
    assert_eq!(c.logging.file.rotation, LogRotation::Size);
    assert!(c.logging.console.enabled && c.logging.console.colorize);
    assert_eq!(c.logging.components.state_manager, Some(LogLevel::Debug));
    assert_eq!(c.logging.components.scheduler, Some(LogLevel::Info));

    assert_eq!(c.monitoring.prometheus, PrometheusConfig { enabled: false, port: 9623, path: "/metrics".into() });
    assert!(c.monitoring.health_check.enabled);
    assert_eq!(c.monitoring.health_check.endpoint, "/health");
    assert!(!c.monitoring.alerts.enabled);
    assert_eq!(
        c.monitoring.alerts.webhook_url.as_ref().map(|s| s.expose()),
        Some("https://hooks.example.com/T000/B000/tokenXYZ123")
    );
    assert_eq!(c.monitoring.alerts.alert_on, vec![AlertRule::ConsecutiveFailures(3), AlertRule::NoSyncForHours(24.0)]);

    assert_eq!(c.advanced.shutdown_timeout, 30);
    assert_eq!(c.advanced.pipeline, PipelineConfig { max_concurrent_connectors: 2, job_timeout_minutes: 60 });
    assert_eq!(c.advanced.performance, PerformanceConfig { enable_caching: true, cache_ttl_seconds: 3600 });
    assert!(!c.advanced.security.encrypt_secrets);
    assert_eq!(
        c.advanced.security.encryption_key.as_ref().map(|s| s.expose()),
        Some("0123456789abcdef0123456789abcdef-enc")
    );
}

#[test]
fn example_config_without_its_variables_names_each_one() {
    let err = load_with_env(&example_path(), &env(&[])).unwrap_err();
    assert_eq!(
        fields(&err),
        vec![
            "lightrag.api.api_key",
            "memory_api.api_key",
            "api.api_key",
            "monitoring.alerts.webhook_url",
            "advanced.security.encryption_key"
        ]
    );
    assert!(err.problems.iter().all(|p| p.message.contains("is not set")));
}

// ------------------------------------------------------------ files and .env

#[test]
fn load_reads_the_env_file_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let yaml = MINIMAL.replace(
        "url: \"http://127.0.0.1:8080\"",
        "url: \"http://127.0.0.1:8080\"\n  api_key: \"${MC_CONFIG_TEST_ONLY_BESIDE_KEY}\"",
    );
    std::fs::write(&config, yaml).unwrap();
    std::fs::write(dir.path().join(".env"), "MC_CONFIG_TEST_ONLY_BESIDE_KEY=from-dotenv\n").unwrap();
    let c = load(&config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.memory_api.api_key.unwrap().expose(), "from-dotenv");
}

#[test]
fn unreadable_file_says_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = load_with_env(&missing, &env(&[])).unwrap_err();
    assert!(err.is_unreadable());
    assert_eq!(err.source, missing.display().to_string());
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("cannot read {}: ", missing.display())), "{shown}");
    assert!(shown.contains("No such file"), "{shown}");
}

// ------------------------------------------------------------ interpolation

#[test]
fn whole_references_become_numbers_and_bools_where_the_schema_wants_them() {
    let yaml = format!(
        "{MINIMAL}  - id: second\n    enabled: ${{ENABLED}}\n    context_id: ${{CTX}}\n    schedule:\n      interval_minutes: ${{MINUTES}}\n    ingestion:\n      query_limit: ${{LIMIT:-250}}\nmemory_api:\n  url: http://${{HOST}}:${{MPORT}}\n  retry_backoff: ${{BACKOFF}}\n  api_key: ${{KEY}}\n"
    )
    .replace("memory_api:\n  url: \"http://127.0.0.1:8080\"\n", "")
    .replace("api:\n  enable_auth: false\n", "api:\n  enable_auth: false\n  port: ${PORT}\n");
    let e = env(&[
        ("PORT", "9700"),
        ("ENABLED", "false"),
        ("CTX", "0123"),
        ("MINUTES", "7.5"),
        ("HOST", "mem"),
        ("MPORT", "8081"),
        ("BACKOFF", "1.5"),
        ("KEY", "000123456789012345678901234567"),
    ]);
    let c = load_ok(&yaml, &e);
    assert_eq!(c.api.port, 9700);
    let second = &c.connectors[1];
    assert!(!second.enabled);
    // Text fields keep the exact text, leading zeros included.
    assert_eq!(second.context_id, "0123");
    assert_eq!(second.schedule.interval_minutes, Some(7.5));
    assert_eq!(second.ingestion.query_limit, 250);
    assert_eq!(c.memory_api.url, "http://mem:8081");
    assert_eq!(c.memory_api.retry_backoff, 1.5);
    // A key of digits is not turned into a (rounded) number.
    assert_eq!(c.memory_api.api_key.unwrap().expose(), "000123456789012345678901234567");
}

#[test]
fn typed_reference_in_an_alert_rule() {
    let yaml = format!("{MINIMAL}monitoring:\n  alerts:\n    alert_on:\n      - consecutive_failures: ${{N}}\n");
    let c = load_ok(&yaml, &env(&[("N", "5")]));
    assert_eq!(c.monitoring.alerts.alert_on, vec![AlertRule::ConsecutiveFailures(5)]);
}

#[test]
fn numbers_in_text_fields_are_read_as_text() {
    let yaml = MINIMAL.replace("\"CTX1\"", "123").replace("\"personal\"", "42");
    let c = load_ok(&yaml, &env(&[]));
    assert_eq!(c.connectors[0].context_id, "123");
    assert_eq!(c.connectors[0].id.as_str(), "42");
}

#[test]
fn typed_reference_that_still_does_not_fit_is_one_problem() {
    let yaml = MINIMAL.replace("enable_auth: false", "enable_auth: false\n  port: ${PORT}");
    let err = load_err(&yaml, &env(&[("PORT", "70000")]));
    assert_eq!(fields(&err), vec!["api.port"]);
    assert!(err.problems[0].message.contains("70000"), "{err}");

    let err = load_err(&yaml, &env(&[("PORT", "abc")]));
    assert_eq!(fields(&err), vec!["api.port"]);
    assert!(err.problems[0].message.contains("expected u16"), "{err}");

    // Unset: reported once, as unset, not again as "not a number".
    let err = load_err(&yaml, &env(&[]));
    assert_eq!(fields(&err), vec!["api.port"]);
    assert!(err.problems[0].message.contains("PORT is not set"), "{err}");
}

#[test]
fn empty_optional_secrets_are_none() {
    let yaml = MINIMAL.replace(
        "url: \"http://127.0.0.1:8080\"",
        "url: \"http://127.0.0.1:8080\"\n  api_key: \"${MEMORY_API_KEY:-}\"",
    ) + "lightrag:\n  api:\n    api_key: \"\"\n    username: \"\"\n";
    let c = load_ok(&yaml, &env(&[]));
    assert_eq!(c.memory_api.api_key, None);
    assert_eq!(c.lightrag.api.api_key, None);
    assert_eq!(c.lightrag.api.username, None);
    // Set but empty, no default: also None (not a problem).
    let yaml = MINIMAL.replace("enable_auth: false", "enable_auth: false\n  api_key: ${K}");
    assert_eq!(load_ok(&yaml, &env(&[("K", "")])).api.api_key, None);
}

#[test]
fn empty_file_is_reported_as_missing_connectors() {
    let err = load_err("", &env(&[]));
    assert!(fields(&err).contains(&"connectors"), "{err}");
}

#[test]
fn merge_keys_share_settings_between_connectors() {
    let yaml = r#"
memory_api: { url: "http://m:1" }
api: { enable_auth: false }
defaults: &defaults
  context_id: "CTX"
  ingestion: { query_limit: 7 }
connectors:
  - <<: *defaults
    id: a
  - <<: *defaults
    id: b
"#;
    // `defaults` itself is an unknown top-level key: report it, but the
    // merges themselves work.
    let err = load_err(yaml, &env(&[]));
    assert_eq!(fields(&err), vec!["defaults"]);
    let yaml = yaml.replace("defaults: &defaults", "x-defaults: &defaults");
    let err = load_err(&yaml, &env(&[]));
    assert_eq!(fields(&err), vec!["x-defaults"]);
}

// ------------------------------------------------------------ error reports

#[test]
fn snapshot_unknown_key() {
    let yaml = MINIMAL.to_owned() + "    schedule:\n      intervl_hours: 2\n";
    insta::assert_snapshot!("unknown_key", load_err(&yaml, &env(&[])));
}

#[test]
fn snapshot_several_unknown_keys() {
    let yaml = r#"
lightrag:
  mode: api
  apii:
    url: "http://x"
memory_api:
  url: "http://127.0.0.1:8080"
  timout: 10
api:
  enable_auth: false
connectors:
  - id: a
    context_id: C
  - id: b
    context_id: C
    ingestion:
      query_limt: 10
      batch: 3
logging:
  components:
    scheduler: INFO
    sync: DEBUG
extra: true
"#;
    insta::assert_snapshot!("several_unknown_keys", load_err(yaml, &env(&[])));
}

#[test]
fn snapshot_unset_variable() {
    let yaml = MINIMAL.replace(
        "url: \"http://127.0.0.1:8080\"",
        "url: \"${MEMORY_API_URL:-http://127.0.0.1:8080}\"\n  api_key: \"${MEMORY_API_KEY}\"",
    );
    insta::assert_snapshot!("unset_variable", load_err(&yaml, &env(&[])));
}

#[test]
fn snapshot_bad_enum_value() {
    let yaml = MINIMAL.to_owned() + "lightrag:\n  mode: http\n";
    insta::assert_snapshot!("bad_enum_value", load_err(&yaml, &env(&[])));
}

#[test]
fn snapshot_wrong_type() {
    let yaml = MINIMAL.to_owned() + "    ingestion:\n      query_limit: lots\n";
    insta::assert_snapshot!("wrong_type", load_err(&yaml, &env(&[])));
}

#[test]
fn snapshot_yaml_syntax_error() {
    let yaml = "memory_api:\n  url: \"http://x\"\n connectors:\n  - id: a\n";
    let err = load_err(yaml, &env(&[]));
    assert_eq!(fields(&err), vec![""]);
    insta::assert_snapshot!("yaml_syntax_error", err);
}

#[test]
fn snapshot_bad_cron() {
    let yaml = MINIMAL.to_owned()
        + "    schedule:\n      type: cron\n      cron: \"0 0 9 * * 1-5\"\n  - id: other\n    context_id: C\n    schedule:\n      type: cron\n      cron: \"0 25 * * *\"\n";
    insta::assert_snapshot!("bad_cron", load_err(&yaml, &env(&[])));
}

#[test]
fn snapshot_duplicate_connector_id() {
    let yaml = MINIMAL.to_owned() + "  - id: other\n    context_id: C\n  - id: personal\n    context_id: C2\n";
    insta::assert_snapshot!("duplicate_connector_id", load_err(&yaml, &env(&[])));
}

#[test]
fn snapshot_several_errors_together() {
    let yaml = r#"
lightrag:
  mode: api
  api:
    url: "localhost:9621"
    timeout: 0
memory_api:
  url: "ftp://memories"
  api_key: "${MEMORY_API_KEY}"
  retry_backoff: 0.5
  max_retries: many
connectors:
  - id: "bad id!"
    context_id: ""
    schedule:
      type: interval
      interval_hours: 0
    ingestion:
      query_limit: 0
      batch_size: 5000
      query_range: year
    retry:
      max_attempts: 0
  - id: ok
    context_id: C
    schedule: { type: cron }
state:
  backend: sqlite
  path: ""
api:
  enabled: true
  enable_auth: true
monitoring:
  alerts:
    enabled: true
advanced:
  pipeline:
    max_concurrent_connectors: 0
    job_timeout_minutes: 0
  security:
    encrypt_secrets: true
    encryption_key: "too-short-key"
logging:
  file:
    enabled: true
    max_bytes: 0
"#;
    insta::assert_snapshot!("several_errors_together", load_err(yaml, &env(&[])));
}

#[test]
fn one_problem_is_singular() {
    let yaml = MINIMAL.to_owned() + "lightrag:\n  mode: http\n";
    let shown = load_err(&yaml, &env(&[])).to_string();
    assert!(shown.starts_with("invalid configuration in test.yaml (1 problem):\n  - "), "{shown}");
}

#[test]
fn several_type_errors_are_all_reported() {
    let yaml = MINIMAL.to_owned()
        + "    ingestion:\n      query_limit: lots\n      batch_size: [1]\nlightrag:\n  mode: http\n  api:\n    timeout: soon\n";
    let err = load_err(&yaml, &env(&[]));
    let mut got = fields(&err);
    got.sort();
    assert_eq!(
        got,
        vec![
            "connectors[0].ingestion.batch_size",
            "connectors[0].ingestion.query_limit",
            "lightrag.api.timeout",
            "lightrag.mode"
        ]
    );
}

#[test]
fn a_bad_list_item_is_reported_once() {
    let yaml = MINIMAL.to_owned()
        + "  - just-a-string\nmonitoring:\n  alerts:\n    alert_on:\n      - consecutive_failures: x\n      - never: 1\n";
    let err = load_err(&yaml, &env(&[]));
    assert_eq!(fields(&err), vec!["connectors[1]", "monitoring.alerts.alert_on[0].consecutive_failures"]);
}

#[test]
fn unknown_alert_rule_names_the_choices() {
    let yaml = MINIMAL.to_owned() + "monitoring:\n  alerts:\n    alert_on:\n      - never: 1\n";
    let err = load_err(&yaml, &env(&[]));
    assert_eq!(fields(&err), vec!["monitoring.alerts.alert_on[0]"]);
    assert!(err.problems[0].message.contains("consecutive_failures"), "{err}");
}

#[test]
fn top_level_that_is_not_a_mapping() {
    let err = load_err("- a\n- b\n", &env(&[]));
    assert_eq!(fields(&err), vec![""]);
    assert!(err.to_string().contains("invalid type: sequence"), "{err}");
}

// ------------------------------------------------------------ validation rules

fn valid() -> Config {
    load_ok(MINIMAL, &env(&[]))
}

/// Each mutation of a valid config breaks exactly one rule, named by its field.
#[test]
fn each_validation_rule_names_its_field() {
    type Mutation = fn(&mut Config);
    let cases: &[(&str, Mutation)] = &[
        ("lightrag.api.url", |c| c.lightrag.api.url = "not a url".into()),
        ("lightrag.api.url", |c| c.lightrag.api.url = "ftp://host".into()),
        ("lightrag.api.url", |c| c.lightrag.api.url = String::new()),
        ("lightrag.api.timeout", |c| c.lightrag.api.timeout = 0),
        ("lightrag.direct.working_dir", |c| {
            c.lightrag.mode = LightragMode::Direct;
            c.lightrag.direct.working_dir = PathBuf::new();
        }),
        ("memory_api.url", |c| c.memory_api.url = "127.0.0.1:8080".into()),
        ("memory_api.timeout", |c| c.memory_api.timeout = 0),
        ("memory_api.retry_backoff", |c| c.memory_api.retry_backoff = 0.9),
        ("memory_api.retry_backoff", |c| c.memory_api.retry_backoff = f64::NAN),
        ("memory_api.max_response_bytes", |c| c.memory_api.max_response_bytes = 1000),
        ("connectors", |c| c.connectors.clear()),
        ("connectors[0].id", |c| c.connectors[0].id = ConnectorId::new("")),
        ("connectors[0].id", |c| c.connectors[0].id = ConnectorId::new("-leading-dash")),
        ("connectors[0].id", |c| c.connectors[0].id = ConnectorId::new("has/slash")),
        ("connectors[0].id", |c| c.connectors[0].id = ConnectorId::new("a".repeat(65))),
        ("connectors[1].id", |c| c.connectors.push(c.connectors[0].clone())),
        ("connectors[0].context_id", |c| c.connectors[0].context_id = "  ".into()),
        ("connectors[0].schedule", |c| c.connectors[0].schedule.interval_hours = None),
        ("connectors[0].schedule", |c| c.connectors[0].schedule.interval_hours = Some(0.0)),
        ("connectors[0].schedule.interval_hours", |c| c.connectors[0].schedule.interval_hours = Some(-1.0)),
        ("connectors[0].schedule.interval_minutes", |c| {
            c.connectors[0].schedule.interval_minutes = Some(f64::INFINITY)
        }),
        ("connectors[0].schedule.cron", |c| c.connectors[0].schedule.kind = ScheduleType::Cron),
        ("connectors[0].schedule.cron", |c| {
            c.connectors[0].schedule.kind = ScheduleType::Cron;
            c.connectors[0].schedule.cron = Some("0 0 0 * * *".into());
        }),
        ("connectors[0].schedule.timezone", |c| c.connectors[0].schedule.timezone = Some("Mars/Olympus_Mons".into())),
        ("connectors[0].ingestion.query_limit", |c| c.connectors[0].ingestion.query_limit = 0),
        ("connectors[0].ingestion.query_limit", |c| c.connectors[0].ingestion.query_limit = 10_001),
        ("connectors[0].ingestion.batch_size", |c| c.connectors[0].ingestion.batch_size = 0),
        ("connectors[0].ingestion.batch_size", |c| c.connectors[0].ingestion.batch_size = 1_001),
        ("connectors[0].retry.max_attempts", |c| c.connectors[0].retry.max_attempts = 0),
        ("connectors[0].retry.backoff_multiplier", |c| c.connectors[0].retry.backoff_multiplier = 0.0),
        ("state.path", |c| c.state.path = PathBuf::new()),
        ("state.path", |c| {
            c.state.backend = StateBackend::Sqlite;
            c.state.path = PathBuf::new();
        }),
        ("state.cleanup.cleanup_cron", |c| c.state.cleanup.cleanup_cron = "daily".into()),
        ("state.cleanup.retention_days", |c| c.state.cleanup.retention_days = 0),
        ("api.host", |c| c.api.host = String::new()),
        ("api.rate_limit.requests_per_minute", |c| {
            c.api.rate_limit.enabled = true;
            c.api.rate_limit.requests_per_minute = 0;
        }),
        ("monitoring.alerts.webhook_url", |c| c.monitoring.alerts.enabled = true),
        ("monitoring.alerts.webhook_url", |c| {
            c.monitoring.alerts.enabled = true;
            c.monitoring.alerts.webhook_url = Some(crate::secrets::Secret::new("hooks.example.com/x"));
        }),
        ("monitoring.alerts.alert_on[0].consecutive_failures", |c| {
            c.monitoring.alerts.alert_on = vec![AlertRule::ConsecutiveFailures(0)]
        }),
        ("monitoring.alerts.alert_on[0].no_sync_for_hours", |c| {
            c.monitoring.alerts.alert_on = vec![AlertRule::NoSyncForHours(-2.0)]
        }),
        ("monitoring.prometheus.path", |c| {
            c.monitoring.prometheus.enabled = true;
            c.monitoring.prometheus.path = "metrics".into();
        }),
        ("monitoring.health_check.endpoint", |c| c.monitoring.health_check.endpoint = "health".into()),
        ("advanced.security.encryption_key", |c| c.advanced.security.encrypt_secrets = true),
        ("advanced.security.encryption_key", |c| {
            c.advanced.security.encrypt_secrets = true;
            c.advanced.security.encryption_key = Some(crate::secrets::Secret::new("x".repeat(31)));
        }),
        ("logging.file.max_bytes", |c| {
            c.logging.file.enabled = true;
            c.logging.file.max_bytes = 0;
        }),
        ("logging.file.path", |c| {
            c.logging.file.enabled = true;
            c.logging.file.path = PathBuf::new();
        }),
        ("advanced.pipeline.max_concurrent_connectors", |c| c.advanced.pipeline.max_concurrent_connectors = 0),
        ("advanced.pipeline.job_timeout_minutes", |c| c.advanced.pipeline.job_timeout_minutes = 0),
    ];
    assert!(validate(&valid()).is_empty());
    for (i, (field, mutate)) in cases.iter().enumerate() {
        let mut config = valid();
        mutate(&mut config);
        let problems = validate(&config);
        let got: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(got, vec![*field], "case {i}: {problems:?}");
    }
}

#[test]
fn validation_accepts_the_edges_of_each_range() {
    let mut c = valid();
    c.connectors[0].id = ConnectorId::new(format!("A1._-{}", "x".repeat(59)));
    c.connectors[0].ingestion.query_limit = 10_000;
    c.connectors[0].ingestion.batch_size = 1_000;
    c.connectors[0].retry.backoff_multiplier = 1.0;
    c.connectors[0].schedule.interval_hours = Some(0.0);
    c.connectors[0].schedule.interval_minutes = Some(0.5);
    c.connectors[0].schedule.timezone = Some("UTC".into());
    for zone in ["Etc/UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"] {
        let mut zoned = valid();
        zoned.connectors[0].schedule.timezone = Some(zone.into());
        assert_eq!(validate(&zoned), vec![], "{zone}");
    }
    c.memory_api.retry_backoff = 1.0;
    c.memory_api.url = "https://memories.example.com/base".into();
    c.lightrag.mode = LightragMode::Direct;
    c.lightrag.api.url = String::new(); // not used in direct mode
    c.state.backend = StateBackend::Dynamodb;
    c.state.path = PathBuf::new(); // the table comes from the environment
    c.state.cleanup.enabled = false;
    c.state.cleanup.cleanup_cron = "never".into();
    c.api.enabled = false; // no key needed
    c.api.enable_auth = true;
    c.advanced.security.encrypt_secrets = true;
    c.advanced.security.encryption_key = Some(crate::secrets::Secret::new("k".repeat(32)));
    assert_eq!(validate(&c), vec![]);
}

/// The API key is asked for where the API is served or called, not by
/// `validate`: a config only ever used for `sync` need not carry one.
#[test]
fn the_api_key_is_needed_only_to_serve_the_api() {
    let mut c = valid();
    c.api.enabled = true;
    c.api.enable_auth = true;
    c.api.api_key = None;
    assert_eq!(validate(&c), vec![], "sync, status and the like need no API key");
    let problem = super::api_auth_problem(&c.api).expect("serving needs a key");
    assert_eq!(problem.field, "api.api_key");
    c.api.api_key = Some(crate::secrets::Secret::new("  ".to_owned()));
    assert!(super::api_auth_problem(&c.api).is_some(), "a blank key is no key");
    c.api.api_key = Some(crate::secrets::Secret::new("k".to_owned()));
    assert_eq!(super::api_auth_problem(&c.api), None);
    c.api.api_key = None;
    c.api.enable_auth = false;
    assert_eq!(super::api_auth_problem(&c.api), None);
    c.api.enable_auth = true;
    c.api.enabled = false;
    assert_eq!(super::api_auth_problem(&c.api), None);
}

#[test]
fn connector_id_pattern() {
    for ok in ["a", "A", "0", "personal-memories", "work.v2_x", &"z".repeat(64)] {
        assert!(is_valid_connector_id(ok), "{ok}");
    }
    for bad in ["", "-a", ".a", "_a", "a b", "a/b", "ä", &"z".repeat(65)] {
        assert!(!is_valid_connector_id(bad), "{bad}");
    }
}

// ------------------------------------------------------------ secrecy

#[test]
fn secrets_appear_neither_in_debug_nor_in_errors() {
    let config = load_with_env(&example_path(), &env(SECRETS)).unwrap();
    let debug = format!("{config:?}");
    let yaml = redacted_yaml(&config);
    for (_, value) in SECRETS {
        assert!(!debug.contains(value), "Debug shows {value}");
        assert!(!yaml.contains(value), "redacted_yaml shows {value}");
    }

    // An invalid config full of secrets: type error in a secret field, a
    // secret copied into a field whose error quotes its value, a webhook
    // that is not a URL, a short encryption key.
    let yaml = r#"
memory_api:
  url: "http://127.0.0.1:8080"
  api_key: "${MEMORY_API_KEY}"
  timeout: "${MEMORY_API_KEY}"
lightrag:
  api:
    api_key: ["${LIGHTRAG_API_KEY}"]
api:
  api_key: "${CONNECTOR_API_KEY}"
  host: [1]
connectors:
  - id: "${CONNECTOR_API_KEY}/x"
    context_id: "${CONNECTOR_API_KEY}"
    schedule: { type: cron, cron: "${CONNECTOR_API_KEY}" }
monitoring:
  alerts:
    enabled: true
    webhook_url: "not-a-url-secret-token-123"
advanced:
  security:
    encrypt_secrets: true
    encryption_key: "short-secret-key"
"#;
    let err = load_err(yaml, &env(SECRETS));
    let shown = err.to_string();
    for value in SECRETS.iter().map(|(_, v)| *v).chain(["not-a-url-secret-token-123", "short-secret-key"]) {
        assert!(!shown.contains(value), "error shows {value}:\n{shown}");
    }
    for field in [
        "memory_api.timeout",
        "lightrag.api.api_key",
        "connectors[0].id",
        "connectors[0].schedule.cron",
        "monitoring.alerts.webhook_url",
        "advanced.security.encryption_key",
    ] {
        assert!(fields(&err).contains(&field), "{field} missing in:\n{shown}");
    }
}

#[test]
fn redacted_yaml_masks_secrets_and_reads_back() {
    let config = load_with_env(&example_path(), &env(SECRETS)).unwrap();
    let yaml = redacted_yaml(&config);
    assert!(yaml.contains("api_key: '***'") || yaml.contains("api_key: \"***\""), "{yaml}");
    assert!(yaml.contains("consecutive_failures: 3"), "{yaml}");
    let back = load_ok(&yaml, &env(&[]));
    let mut expected = config.clone();
    let masked = Some(crate::secrets::Secret::new("***"));
    expected.lightrag.api.api_key = masked.clone();
    expected.memory_api.api_key = masked.clone();
    expected.api.api_key = masked.clone();
    expected.monitoring.alerts.webhook_url = masked.clone();
    expected.enrichment.transcription.api_key = masked.clone();
    expected.enrichment.vision.api_key = masked.clone();
    expected.advanced.security.encryption_key = masked;
    assert_eq!(back, expected);
}

// ------------------------------------------------------------ enrichment

#[test]
fn enrichment_defaults_need_no_key_when_unused() {
    let c = load_ok(MINIMAL, &env(&[]));
    assert_eq!(c.enrichment.transcription.model, "whisper-1");
    assert_eq!(c.enrichment.vision.model, "gpt-4o-mini");
    assert_eq!(c.enrichment.vision.url, "https://api.openai.com/v1");
    assert_eq!(c.enrichment.transcription.api_key, None);
    assert_eq!(c.enrichment.geocoding.url, "https://nominatim.openstreetmap.org");
    assert_eq!(c.enrichment.geocoding.requests_per_second, 1.0);
    assert!(c.enrichment.geocoding.user_agent.starts_with("memory-connector/"));
    // A partial vision section keeps the vision model default, not the transcription one.
    let partial = format!("{MINIMAL}enrichment:\n  vision:\n    url: \"http://127.0.0.1:1/v1\"\n");
    assert_eq!(load_ok(&partial, &env(&[])).enrichment.vision.model, "gpt-4o-mini");
}

#[test]
fn enrichment_needs_an_openai_key_only_when_a_connector_uses_openai() {
    let flags = |flags: &str| {
        MINIMAL
            .replace("    context_id: \"CTX1\"\n", &format!("    context_id: \"CTX1\"\n    transformation:\n{flags}"))
    };
    let audio = flags("      include_audio: true\n");
    assert_eq!(fields(&load_err(&audio, &env(&[]))), ["enrichment.transcription.api_key"]);
    let image = flags("      include_image: true\n");
    assert_eq!(fields(&load_err(&image, &env(&[]))), ["enrichment.vision.api_key"]);
    let keyed = format!("{audio}enrichment:\n  transcription:\n    api_key: \"${{OPENAI_API_KEY}}\"\n");
    let c = load_ok(&keyed, &env(&[("OPENAI_API_KEY", "sk-abc")]));
    assert_eq!(c.enrichment.transcription.api_key.as_ref().map(|k| k.expose()), Some("sk-abc"));
    assert!(!redacted_yaml(&c).contains("sk-abc"), "the key is a secret");
    let local = format!("{audio}enrichment:\n  transcription:\n    url: \"http://127.0.0.1:9000/v1\"\n");
    load_ok(&local, &env(&[]));
}

#[test]
fn geocoding_settings_are_checked_when_used() {
    let geo = MINIMAL.replace(
        "    context_id: \"CTX1\"\n",
        "    context_id: \"CTX1\"\n    transformation:\n      geocoding: true\n",
    );
    load_ok(&geo, &env(&[]));
    let bad = format!("{geo}enrichment:\n  geocoding:\n    user_agent: \" \"\n    requests_per_second: 5\n");
    assert_eq!(
        fields(&load_err(&bad, &env(&[]))),
        ["enrichment.geocoding.user_agent", "enrichment.geocoding.requests_per_second"]
    );
    let own_server =
        format!("{geo}enrichment:\n  geocoding:\n    url: \"http://127.0.0.1:8088\"\n    requests_per_second: 50\n");
    load_ok(&own_server, &env(&[]));
    let unused = format!("{MINIMAL}enrichment:\n  geocoding:\n    requests_per_second: 0\n");
    load_ok(&unused, &env(&[]));
}
