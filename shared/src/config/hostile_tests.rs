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
