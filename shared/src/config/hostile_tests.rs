//! The loader and validation against hostile configs (issue 15): paths that
//! would break the router, URLs with passwords, YAML that would echo or
//! silently change a secret, defaults nested in `${...}`, what listens where.

use super::*;

use super::tests::{MINIMAL, env, load_err};

fn no_env() -> Environment {
    Environment::from_map(Vec::<(String, String)>::new())
}

fn valid() -> Config {
    load_str(MINIMAL, "test.yaml", &no_env()).unwrap_or_else(|e| panic!("{e}"))
}

/// Paths a health endpoint or a metrics path must not be: API and console
/// routes, and the router's own syntax (captures, wildcards, v0.7 captures).
const HOSTILE_PATHS: &[&str] = &[
    "/connectors",
    "/connectors/",
    "/connectors/x",
    "/connectors/{id}",
    "/openapi.json",
    "/lookup/resolve",
    "/",
    "/login",
    "/logout",
    "/console.css",
    "/console/x/reset",
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
    for ok in ["/health", "/healthz", "/status/live", "/_health-1.2~x", "/consoles", "/login-check"] {
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
    let sections = r#"
lightrag:
  api:
    url: "http://rag-user:rag-pass-91c2@lightrag.local:9621"
enrichment:
  transcription:
    url: "https://tok-user:tok-pass-0c1d@stt.example.com/v1"
  geocoding:
    url: "https://geo-user:geo-pass-e7f8@geo.example.com"
"#;
    let yaml = format!(
        "{sections}{}",
        MINIMAL.replace("http://127.0.0.1:8080", "https://mem-user:mem-pass-55ab@memories.example.com/base")
    );
    let yaml = yaml.as_str();
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

/// Properties of the loader over hostile input.
mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    fn fragment() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("$".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just(":-".to_owned()),
                Just("A".to_owned()),
                Just("B".to_owned()),
                Just("x".to_owned()),
                Just("$${".to_owned()),
            ],
            0..16,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes as a config file: an answer, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = load_str(&text, "fuzz.yaml", &no_env());
        }

        /// YAML-shaped noise (keys, indentation, flow, anchors, tags, numbers).
        #[test]
        fn yaml_shaped_noise_never_panics(tokens in proptest::collection::vec(prop_oneof![
            Just("api:"), Just("memory_api:"), Just("connectors:"), Just("- "), Just("  "), Just("\n"), Just("url: "),
            Just("api_key: "), Just("0x1F"), Just("1e3"), Just("&a "), Just("*a"), Just("<<: "), Just("!!str "),
            Just("{"), Just("}"), Just("["), Just("]"), Just("\"${A:-${B}}\""), Just("~"), Just("id: "), Just(","),
        ], 0..40)) {
            let _ = load_str(&tokens.concat(), "fuzz.yaml", &env(&[("A", "1")]));
        }

        /// A secret is never in a loader's error, whatever else is wrong.
        #[test]
        fn errors_never_hold_a_secret(
            secret in "[A-Za-z][A-Za-z0-9_-]{11,30}",
            breakage in 0usize..6,
        ) {
            let broken = match breakage {
                0 => "  timeout: [oops]",
                1 => "  timeout: 1e99",
                2 => "  bogus_key: 1",
                3 => "  url: \"not a url\"",
                4 => "  retry_backoff: ${UNSET}",
                _ => "  timeout: -1",
            };
            let yaml = MINIMAL.replace(
                "url: \"http://127.0.0.1:8080\"",
                &format!("url: \"http://127.0.0.1:8080\"\n  api_key: \"{secret}\"\n{broken}"),
            );
            if let Err(err) = load_str(&yaml, "fuzz.yaml", &no_env()) {
                prop_assert!(!err.to_string().contains(&secret), "{}", err);
            }
            for key in ["api_key: [{s}]", "api_key: {{k: {s}}}", "api_key: !!binary {s}"] {
                let yaml = MINIMAL.replace("url: \"http://127.0.0.1:8080\"", &format!("url: \"http://127.0.0.1:8080\"\n  {}", key.replace("{s}", &secret)));
                if let Err(err) = load_str(&yaml, "fuzz.yaml", &no_env()) {
                    prop_assert!(!err.to_string().contains(&secret), "{}", err);
                }
            }
        }

        /// A reference is resolved or reported, never left as text.
        #[test]
        fn references_are_resolved_or_reported_never_literal(input in fragment()) {
            let e = env(&[("A", "a"), ("B", "")]);
            let out = super::super::interpolate::substitute(&input, &e);
            prop_assert_eq!(&out, &super::super::interpolate::substitute(&input, &e));
            if out.errors.is_empty() && !input.contains("$${") {
                prop_assert!(!out.text.contains("${"), "{:?} -> {:?}", input, out.text);
            }
        }
    }
}
