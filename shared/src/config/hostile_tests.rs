//! The loader and validation against hostile configs (issue 15): paths that
//! would break the router, URLs with passwords, YAML that would echo or
//! silently change a secret, defaults nested in `${...}`, what listens where.

use super::*;

const MINIMAL: &str = r#"
memory_api:
  url: "http://127.0.0.1:8080"
api:
  enable_auth: false
connectors:
  - id: "personal"
    context_id: "CTX1"
"#;

fn no_env() -> Environment {
    Environment::from_map(Vec::<(String, String)>::new())
}

fn env(pairs: &[(&str, &str)]) -> Environment {
    Environment::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

fn load_err(yaml: &str, e: &Environment) -> ConfigError {
    match load_str(yaml, "test.yaml", e) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(err) => err,
    }
}

fn valid() -> Config {
    load_str(MINIMAL, "test.yaml", &no_env()).unwrap_or_else(|e| panic!("{e}"))
}

/// Paths a health endpoint or a metrics path must not be: API routes, and
/// the router's own syntax (captures, wildcards, v0.7 captures).
const HOSTILE_PATHS: &[&str] = &[
    "/connectors",
    "/connectors/",
    "/connectors/x",
    "/connectors/{id}",
    "/openapi.json",
    "/{id}",
    "/:id",
    "/*rest",
    "/{*rest}",
    "/a//b",
    "/a/../b",
    "/a b",
    "/héalth",
];

#[test]
fn health_endpoints_that_overlap_or_break_the_router_are_refused_naming_the_field() {
    for path in HOSTILE_PATHS {
        let mut config = valid();
        config.monitoring.health_check.endpoint = (*path).to_owned();
        let problems = validate(&config);
        assert_eq!(
            problems.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["monitoring.health_check.endpoint"],
            "{path}: {problems:?}"
        );
    }
    for ok in ["/health", "/healthz", "/status/live", "/", "/_health-1.2~x"] {
        let mut config = valid();
        config.monitoring.health_check.endpoint = ok.to_owned();
        assert_eq!(validate(&config), vec![], "{ok}");
    }
}

#[test]
fn metrics_paths_that_break_the_router_are_refused() {
    for path in ["/{x}", "/:x", "/*x", "/a//b"] {
        let mut config = valid();
        config.monitoring.prometheus.enabled = true;
        config.monitoring.prometheus.path = path.to_owned();
        let problems = validate(&config);
        assert!(problems.iter().any(|p| p.field == "monitoring.prometheus.path"), "{path}: {problems:?}");
    }
}

#[test]
fn passwords_in_urls_are_masked_wherever_the_config_is_shown() {
    let yaml = r#"
lightrag:
  api:
    url: "http://rag-user:rag-pass-91c2@lightrag.local:9621"
memory_api:
  url: "https://mem-user:mem-pass-55ab@memories.example.com/base"
enrichment:
  transcription:
    url: "https://tok-user:tok-pass-0c1d@stt.example.com/v1"
  geocoding:
    url: "https://geo-user:geo-pass-e7f8@geo.example.com"
api:
  enable_auth: false
connectors:
  - id: "personal"
    context_id: "CTX1"
"#;
    let config = load_str(yaml, "test.yaml", &no_env()).unwrap_or_else(|e| panic!("{e}"));
    let shown = [redacted_yaml(&config), serde_json::to_string(&config).unwrap()];
    for text in &shown {
        for password in ["rag-pass-91c2", "mem-pass-55ab", "tok-pass-0c1d", "geo-pass-e7f8"] {
            assert!(!text.contains(password), "{password} shown:\n{text}");
        }
        assert!(text.contains("rag-user:***@lightrag.local:9621"), "{text}");
    }
    // The loaded config itself keeps the real URL: requests need it.
    assert_eq!(config.memory_api.url, "https://mem-user:mem-pass-55ab@memories.example.com/base");
}

#[test]
fn a_yaml_error_never_echoes_the_value_of_a_secret_field() {
    for value in ["123456789012345678901234567890", "9999999999999999999999999999999999999"] {
        let yaml = MINIMAL
            .replace("url: \"http://127.0.0.1:8080\"", &format!("url: \"http://127.0.0.1:8080\"\n  api_key: {value}"));
        let err = load_err(&yaml, &no_env());
        assert!(!err.to_string().contains(&value[..12]), "the key is echoed: {err}");
        assert!(err.to_string().contains("memory_api.api_key"), "{err}");
    }
}

#[test]
fn numeric_looking_unquoted_secrets_are_refused_with_a_hint_to_quote_them() {
    for value in ["0x1F", "1e3", "0o17", "0b101", "+12", ".inf", "12.50", "True"] {
        let yaml = MINIMAL
            .replace("url: \"http://127.0.0.1:8080\"", &format!("url: \"http://127.0.0.1:8080\"\n  api_key: {value}"));
        let err = load_err(&yaml, &no_env());
        let problem =
            err.problems.iter().find(|p| p.field == "memory_api.api_key").unwrap_or_else(|| panic!("{value}: {err}"));
        assert!(problem.message.contains("quote"), "{value}: {problem}");
        assert!(!problem.message.contains(value), "{value} is echoed: {problem}");
    }
    // Quoted, or from the environment, the text is kept exactly.
    let quoted =
        MINIMAL.replace("url: \"http://127.0.0.1:8080\"", "url: \"http://127.0.0.1:8080\"\n  api_key: \"0x1F\"");
    let config = load_str(&quoted, "test.yaml", &no_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.memory_api.api_key.as_ref().map(|k| k.expose()), Some("0x1F"));
    let from_env =
        MINIMAL.replace("url: \"http://127.0.0.1:8080\"", "url: \"http://127.0.0.1:8080\"\n  api_key: ${KEY}");
    let config = load_str(&from_env, "test.yaml", &env(&[("KEY", "1e3")])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.memory_api.api_key.as_ref().map(|k| k.expose()), Some("1e3"));
}

#[test]
fn text_fields_that_yaml_would_change_are_refused_naming_the_change() {
    for (value, read_as) in [("0x1F", "31"), ("1e3", "1000"), ("1.50", "1.5"), ("True", "true")] {
        let yaml = MINIMAL.replace("context_id: \"CTX1\"", &format!("context_id: {value}"));
        let err = load_err(&yaml, &no_env());
        let problem = err
            .problems
            .iter()
            .find(|p| p.field == "connectors[0].context_id")
            .unwrap_or_else(|| panic!("{value}: {err}"));
        assert!(problem.message.contains("quote"), "{problem}");
        assert!(problem.message.contains(value) && problem.message.contains(read_as), "{problem}");
    }
    // Text that reads back as written stays accepted: `context_id: 123`, `workspace: 0012`.
    let yaml = MINIMAL.replace("context_id: \"CTX1\"", "context_id: 123");
    let config = load_str(&yaml, "test.yaml", &no_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.connectors[0].context_id, "123");
}

#[test]
fn the_api_and_metrics_listen_on_loopback_unless_told_otherwise() {
    let config = valid();
    assert_eq!(config.api.host, "127.0.0.1");
    assert_eq!(exposure_warnings(&config, None), Vec::<String>::new());
}

#[test]
fn validate_warns_when_the_api_listens_beyond_loopback_without_auth() {
    let mut config = valid();
    config.api.enable_auth = false;
    for host in ["0.0.0.0", "::", "192.168.1.20", "connector.example.com"] {
        config.api.host = host.into();
        let warnings = exposure_warnings(&config, None);
        assert_eq!(warnings.len(), 1, "{host}: {warnings:?}");
        assert!(warnings[0].contains("api.enable_auth") && warnings[0].contains(host), "{warnings:?}");
    }
    for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"] {
        config.api.host = host.into();
        assert_eq!(exposure_warnings(&config, None), Vec::<String>::new(), "{host}");
    }
    // `serve --host` decides where it listens.
    assert_eq!(exposure_warnings(&config, Some("0.0.0.0")).len(), 1);
    // With a key, only the metrics port (which has none) is worth a word.
    config.api.host = "0.0.0.0".into();
    config.api.enable_auth = true;
    config.api.api_key = Some(crate::secrets::Secret::new("k"));
    assert_eq!(exposure_warnings(&config, None), Vec::<String>::new());
    config.monitoring.prometheus.enabled = true;
    let warnings = exposure_warnings(&config, None);
    assert!(warnings.len() == 1 && warnings[0].contains("metrics"), "{warnings:?}");
}

#[test]
fn a_nested_default_is_resolved_by_the_loader_not_kept_literal() {
    let yaml = MINIMAL.replace("url: \"http://127.0.0.1:8080\"", "url: \"${MEM_URL:-${FALLBACK_URL}}\"");
    let config = load_str(&yaml, "test.yaml", &env(&[("FALLBACK_URL", "http://fallback:8080")]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.memory_api.url, "http://fallback:8080");
    let err = load_err(&yaml, &no_env());
    assert!(err.to_string().contains("FALLBACK_URL is not set"), "{err}");
}
