//! Semantic validation: the rules a well-typed config must also satisfy.
//!
//! Every rule runs and every broken one is reported, each naming the field,
//! the bad value (never a secret's) and what is allowed.

use super::cron::{parse_unix_cron, time_zone};
use super::error::Problem;
use super::schema::*;
use crate::secrets::Secret;

/// Longest connector id: it becomes part of URLs, file names and DynamoDB keys.
pub const MAX_CONNECTOR_ID_LEN: usize = 64;
/// Shortest `advanced.security.encryption_key`.
pub const MIN_ENCRYPTION_KEY_CHARS: usize = 32;
/// `memory_api.max_response_bytes` below this could not hold a page of a few memories.
pub const MIN_MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// All problems of `config`; empty when it is valid.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut v = Validator::default();
    v.lightrag(&config.lightrag);
    v.memory_api(&config.memory_api);
    v.connectors(&config.connectors);
    v.state(&config.state);
    v.api(&config.api);
    v.logging(&config.logging);
    v.monitoring(&config.monitoring);
    v.advanced(&config.advanced);
    v.enrichment(config);
    v.problems
}

/// What serving the management API (`serve`, the `api` function) or
/// calling it (`trigger`) needs beyond [`validate`]: with `api.enable_auth`,
/// a key. Not part of `validate`: `sync`, `status` and the other one-shot
/// commands never use it, so a config for them alone need not carry one.
pub fn api_auth_problem(api: &ApiConfig) -> Option<Problem> {
    let missing = api.api_key.as_ref().is_none_or(|k| k.expose().trim().is_empty());
    (api.enabled && api.enable_auth && missing).then(|| {
        Problem::new(
            "api.api_key",
            "is missing; the management API needs it while api.enabled and api.enable_auth are true (e.g. api_key: \"${CONNECTOR_API_KEY}\", or set enable_auth: false)",
        )
    })
}

/// The routes of the management API and its web console (`/` too, its
/// overview): the health endpoint may be none of them and lie below none of
/// them (the router would refuse to start).
pub const API_ROUTE_PREFIXES: &[&str] =
    &["/connectors", "/lookup", "/openapi.json", "/login", "/logout", "/console.css", "/console"];

/// Why `path` cannot be a route of its own (`None`: it can): `/`-separated
/// segments of letters, digits and `-._~`, none empty, `.` or `..`. Nothing
/// the router would read as a capture (`{id}`, `:id`) or a wildcard (`*`).
pub fn route_path_problem(path: &str) -> Option<String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Some(format!("`{}` must start with `/`", crate::text::escape_controls(path)));
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    let bad_segment = |s: &str| s.is_empty() || s == "." || s == ".." || !s.chars().all(allowed);
    (!rest.is_empty() && rest.split('/').any(bad_segment)).then(|| {
        format!(
            "`{}` is not a plain path: use segments of letters, digits and -._~ (no empty, `.` or `..` segment, no `{{`, `:` or `*`)",
            crate::text::escape_controls(path)
        )
    })
}

/// Why `endpoint` cannot be the health endpoint: not a plain path, or one of
/// the management API's routes ([`API_ROUTE_PREFIXES`]) or below one.
pub fn health_endpoint_problem(endpoint: &str) -> Option<String> {
    if let Some(problem) = route_path_problem(endpoint) {
        return Some(problem);
    }
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some(format!("`{endpoint}` is the web console's overview page; choose a path of its own"));
    }
    API_ROUTE_PREFIXES
        .iter()
        .find(|route| trimmed == **route || trimmed.starts_with(&format!("{route}/")))
        .map(|route| format!("`{endpoint}` is a route of the management API (`{route}`); choose a path of its own"))
}

/// What is reachable beyond this machine without a key: the management API
/// with `api.enable_auth: false`, and the metrics port (never authenticated),
/// when they listen on anything but loopback. `host` is `serve --host` when
/// given (it wins over `api.host`). Warnings, not errors: behind a firewall
/// or in a container it can be intended.
pub fn exposure_warnings(config: &Config, host: Option<&str>) -> Vec<String> {
    let host = host.unwrap_or(&config.api.host);
    if is_loopback(host) {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    if config.api.enabled && !config.api.enable_auth {
        warnings.push(format!(
            "api.host `{host}` listens beyond loopback and api.enable_auth is false: anyone who can reach port {} can \
             read, trigger and reset the connectors; set enable_auth: true with an api_key, or host: \"127.0.0.1\"",
            config.api.port
        ));
    }
    if config.monitoring.prometheus.enabled {
        warnings.push(format!(
            "the metrics port {} has no authentication and listens on `{host}` (api.host) beyond loopback; \
             firewall it, or set api.host: \"127.0.0.1\"",
            config.monitoring.prometheus.port
        ));
    }
    warnings
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `::1`, with or without brackets).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `id` may name files, URL segments and keys: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn is_valid_connector_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id.len() <= MAX_CONNECTOR_ID_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(field, message));
    }

    fn http_url(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(field, "is empty; expected an http:// or https:// URL");
            return;
        }
        if !value.contains("://") {
            self.push(field, format!("`{value}` is not an http(s) URL; expected e.g. \"http://{value}\""));
            return;
        }
        match url::Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => self.push(field, format!("`{value}` has scheme `{}`; expected http or https", url.scheme())),
            Err(e) => {
                self.push(field, format!("`{value}` is not a valid URL ({e}); expected an http:// or https:// URL"))
            }
        }
    }

    /// Like `http_url` for a URL that is a secret (webhooks carry tokens).
    fn secret_http_url(&mut self, field: &str, value: &Secret) {
        let ok = url::Url::parse(value.expose()).map(|u| matches!(u.scheme(), "http" | "https")).unwrap_or(false);
        if !ok {
            self.push(field, "is not an http:// or https:// URL (value not shown: it is a secret)");
        }
    }

    fn positive(&mut self, field: &str, value: u64, unit: &str) {
        if value == 0 {
            self.push(field, format!("is 0; expected a number of {unit} greater than 0"));
        }
    }

    fn at_least_one(&mut self, field: &str, value: u64) {
        if value < 1 {
            self.push(field, format!("is {value}; expected at least 1"));
        }
    }

    fn multiplier(&mut self, field: &str, value: f64) {
        if !(value.is_finite() && value >= 1.0) {
            self.push(field, format!("is {value}; expected a number >= 1 (1 = constant delay)"));
        }
    }

    fn in_range(&mut self, field: &str, value: u32, min: u32, max: u32) {
        if !(min..=max).contains(&value) {
            self.push(field, format!("is {value}; expected {min} to {max}"));
        }
    }

    fn cron(&mut self, field: &str, expr: &str) {
        if let Err(e) = parse_unix_cron(expr) {
            self.push(field, format!("`{expr}` is not a valid 5-field cron expression: {e}; e.g. \"0 9,17 * * 1-5\""));
        }
    }

    /// The enrichment services are checked only when a connector uses them,
    /// so a config without the section (or with every flag off) never needs
    /// an OpenAI key or a reachable geocoder.
    fn enrichment(&mut self, config: &Config) {
        let using = |flag: fn(&TransformationConfig) -> bool| {
            config.connectors.iter().find(|c| flag(&c.transformation)).map(|c| c.id.as_str().to_owned())
        };
        let e = &config.enrichment;
        if let Some(connector) = using(|t| t.include_audio) {
            self.openai_service(
                "enrichment.transcription",
                &e.transcription.url,
                &e.transcription.model,
                e.transcription.api_key.as_ref(),
                &connector,
                "include_audio",
            );
        }
        if let Some(connector) = using(|t| t.include_image) {
            self.openai_service(
                "enrichment.vision",
                &e.vision.url,
                &e.vision.model,
                e.vision.api_key.as_ref(),
                &connector,
                "include_image",
            );
        }
        if using(|t| t.geocoding).is_some() {
            let g = &e.geocoding;
            self.http_url("enrichment.geocoding.url", &g.url);
            if g.user_agent.trim().is_empty() {
                self.push(
                    "enrichment.geocoding.user_agent",
                    "is empty; Nominatim's usage policy asks for a User-Agent naming the application and a contact, e.g. \"memory-connector/1.0 (contact: me@example.org)\"",
                );
            }
            if !(g.requests_per_second.is_finite() && g.requests_per_second > 0.0) {
                self.push(
                    "enrichment.geocoding.requests_per_second",
                    format!(
                        "is {}; expected a number greater than 0 (the public Nominatim allows 1)",
                        g.requests_per_second
                    ),
                );
            } else if is_nominatim_public(&g.url) && g.requests_per_second > 1.0 {
                self.push(
                    "enrichment.geocoding.requests_per_second",
                    format!("is {}; the public Nominatim allows at most 1 request per second", g.requests_per_second),
                );
            }
        }
    }

    fn openai_service(
        &mut self,
        at: &str,
        url: &str,
        model: &str,
        api_key: Option<&Secret>,
        connector: &str,
        flag: &str,
    ) {
        self.http_url(&format!("{at}.url"), url);
        if model.trim().is_empty() {
            self.push(format!("{at}.model"), "is empty; expected a model name");
        }
        let key_missing = api_key.is_none_or(|k| k.expose().trim().is_empty());
        if key_missing && is_openai_url(url) {
            self.push(
                format!("{at}.api_key"),
                format!("is missing but connector `{connector}` sets transformation.{flag} and {url} needs a key; set e.g. api_key: \"${{OPENAI_API_KEY}}\""),
            );
        }
    }

    fn lightrag(&mut self, c: &LightragConfig) {
        match c.mode {
            LightragMode::Api => {
                self.http_url("lightrag.api.url", &c.api.url);
                self.positive("lightrag.api.timeout", c.api.timeout, "seconds");
            }
            LightragMode::Direct => {
                if c.direct.working_dir.as_os_str().is_empty() {
                    self.push("lightrag.direct.working_dir", "is empty; expected a directory path");
                }
            }
        }
    }

    fn memory_api(&mut self, c: &MemoryApiConfig) {
        self.http_url("memory_api.url", &c.url);
        self.positive("memory_api.timeout", c.timeout, "seconds");
        self.multiplier("memory_api.retry_backoff", c.retry_backoff);
        if c.max_response_bytes < MIN_MAX_RESPONSE_BYTES {
            self.push(
                "memory_api.max_response_bytes",
                format!("is {}; expected at least {MIN_MAX_RESPONSE_BYTES} (64 KiB)", c.max_response_bytes),
            );
        }
    }

    fn connectors(&mut self, connectors: &[ConnectorConfig]) {
        if connectors.is_empty() {
            self.push("connectors", "no connector is defined; expected at least one");
        }
        for (i, c) in connectors.iter().enumerate() {
            let at = format!("connectors[{i}]");
            let id = c.id.as_str();
            if id.is_empty() {
                self.push(format!("{at}.id"), "is empty; every connector needs an id");
            } else if !is_valid_connector_id(id) {
                self.push(
                    format!("{at}.id"),
                    format!(
                        "`{id}` is not a valid connector id; expected 1 to {MAX_CONNECTOR_ID_LEN} characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                    ),
                );
            } else if let Some(first) = connectors[..i].iter().position(|o| o.id == c.id) {
                self.push(
                    format!("{at}.id"),
                    format!("`{id}` is already the id of connectors[{first}]; ids must be unique"),
                );
            }
            if c.context_id.trim().is_empty() {
                self.push(format!("{at}.context_id"), "is empty; expected the Memory API context id");
            }
            self.schedule(&format!("{at}.schedule"), &c.schedule);
            self.in_range(&format!("{at}.ingestion.query_limit"), c.ingestion.query_limit, 1, 10_000);
            self.in_range(&format!("{at}.ingestion.batch_size"), c.ingestion.batch_size, 1, 1_000);
            self.at_least_one(&format!("{at}.retry.max_attempts"), c.retry.max_attempts.into());
            self.multiplier(&format!("{at}.retry.backoff_multiplier"), c.retry.backoff_multiplier);
        }
    }

    fn schedule(&mut self, at: &str, s: &ScheduleConfig) {
        match s.kind {
            ScheduleType::Interval => {
                let mut any_positive = false;
                let mut any_invalid = false;
                for (name, value) in [("interval_hours", s.interval_hours), ("interval_minutes", s.interval_minutes)] {
                    match value {
                        Some(v) if v.is_finite() && v > 0.0 => any_positive = true,
                        Some(0.0) => {}
                        Some(v) => {
                            any_invalid = true;
                            self.push(format!("{at}.{name}"), format!("is {v}; expected a number greater than 0"));
                        }
                        None => {}
                    }
                }
                if !any_positive && !any_invalid {
                    self.push(at, "type `interval` needs interval_hours > 0 or interval_minutes > 0");
                }
            }
            ScheduleType::Cron => match &s.cron {
                Some(expr) => self.cron(&format!("{at}.cron"), expr),
                None => self.push(
                    format!("{at}.cron"),
                    "is missing; type `cron` needs a 5-field cron expression, e.g. \"0 9,17 * * 1-5\"",
                ),
            },
        }
        if let Some(tz) = s.timezone.as_deref().map(str::trim)
            && let Err(e) = time_zone(tz)
        {
            self.push(
                format!("{at}.timezone"),
                format!("`{tz}` is not a time zone of this system's tz database ({e}); expected an IANA name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\" (the database is /usr/share/zoneinfo, or TZDIR; install tzdata if it is missing)"),
            );
        }
    }

    fn state(&mut self, s: &StateConfig) {
        if matches!(s.backend, StateBackend::Json | StateBackend::Sqlite) && s.path.as_os_str().is_empty() {
            self.push("state.path", "is empty; the json and sqlite backends need a file path");
        }
        if s.cleanup.enabled {
            self.cron("state.cleanup.cleanup_cron", &s.cleanup.cleanup_cron);
            self.at_least_one("state.cleanup.retention_days", s.cleanup.retention_days.into());
        }
    }

    fn api(&mut self, a: &ApiConfig) {
        if !a.enabled {
            return;
        }
        if a.host.trim().is_empty() {
            self.push(
                "api.host",
                "is empty; expected an address to listen on, e.g. \"127.0.0.1\" (or \"0.0.0.0\" for every interface)",
            );
        }
        if a.rate_limit.enabled {
            self.at_least_one("api.rate_limit.requests_per_minute", a.rate_limit.requests_per_minute.into());
        }
    }

    fn logging(&mut self, l: &LoggingConfig) {
        if l.file.enabled {
            if l.file.path.as_os_str().is_empty() {
                self.push("logging.file.path", "is empty; file logging needs a file path");
            }
            self.positive("logging.file.max_bytes", l.file.max_bytes, "bytes");
        }
    }

    fn monitoring(&mut self, m: &MonitoringConfig) {
        if m.prometheus.enabled
            && let Some(problem) = route_path_problem(&m.prometheus.path)
        {
            self.push("monitoring.prometheus.path", format!("{problem}, e.g. \"/metrics\""));
        }
        if m.health_check.enabled
            && let Some(problem) = health_endpoint_problem(&m.health_check.endpoint)
        {
            self.push("monitoring.health_check.endpoint", format!("{problem}, e.g. \"/health\""));
        }
        if m.alerts.enabled {
            match &m.alerts.webhook_url {
                None => self.push(
                    "monitoring.alerts.webhook_url",
                    "is missing; required when monitoring.alerts.enabled is true",
                ),
                Some(url) => self.secret_http_url("monitoring.alerts.webhook_url", url),
            }
        }
        for (i, rule) in m.alerts.alert_on.iter().enumerate() {
            match *rule {
                AlertRule::ConsecutiveFailures(0) => self
                    .push(format!("monitoring.alerts.alert_on[{i}].consecutive_failures"), "is 0; expected at least 1"),
                AlertRule::NoSyncForHours(h) if !(h.is_finite() && h > 0.0) => self.push(
                    format!("monitoring.alerts.alert_on[{i}].no_sync_for_hours"),
                    format!("is {h}; expected a number of hours greater than 0"),
                ),
                _ => {}
            }
        }
    }

    fn advanced(&mut self, a: &AdvancedConfig) {
        self.at_least_one("advanced.pipeline.max_concurrent_connectors", a.pipeline.max_concurrent_connectors.into());
        self.at_least_one("advanced.pipeline.job_timeout_minutes", a.pipeline.job_timeout_minutes);
        if a.security.encrypt_secrets {
            match &a.security.encryption_key {
                None => self.push(
                    "advanced.security.encryption_key",
                    format!(
                        "is missing; required (at least {MIN_ENCRYPTION_KEY_CHARS} characters) when encrypt_secrets is true"
                    ),
                ),
                Some(key) if key.expose().chars().count() < MIN_ENCRYPTION_KEY_CHARS => self.push(
                    "advanced.security.encryption_key",
                    format!(
                        "is too short; expected at least {MIN_ENCRYPTION_KEY_CHARS} characters (value not shown: it is a secret)"
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

fn is_nominatim_public(url: &str) -> bool {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(|h| h.eq_ignore_ascii_case("nominatim.openstreetmap.org")))
        == Some(true)
}
