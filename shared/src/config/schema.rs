//! The configuration schema: serde types with the defaults that
//! `config/config.example.yaml` documents. Every struct rejects nothing by itself;
//! unknown keys are collected by the loader (`serde_ignored`) so that all of
//! them are reported together.

use crate::ids::ConnectorId;
use crate::secrets::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[derive(Default)]
pub struct Config {
    pub lightrag: LightragConfig,
    pub memory_api: MemoryApiConfig,
    pub connectors: Vec<ConnectorConfig>,
    pub state: StateConfig,
    pub api: ApiConfig,
    pub logging: LoggingConfig,
    pub monitoring: MonitoringConfig,
    pub advanced: AdvancedConfig,
    /// External services behind `transformation.include_audio`,
    /// `include_image` and `geocoding`.
    pub enrichment: EnrichmentConfig,
}

impl Config {
    pub fn connector(&self, id: &ConnectorId) -> Option<&ConnectorConfig> {
        self.connectors.iter().find(|c| &c.id == id)
    }
}

// ---------------------------------------------------------------- lightrag

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LightragMode {
    #[default]
    Api,
    Direct,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct LightragConfig {
    pub mode: LightragMode,
    pub api: LightragApiConfig,
    pub direct: LightragDirectConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LightragApiConfig {
    #[serde(deserialize_with = "super::lenient::string", serialize_with = "crate::secrets::serialize_masked_url")]
    pub url: String,
    /// `None` when absent or empty: no `X-API-Key` header is sent.
    pub api_key: Option<Secret>,
    #[serde(deserialize_with = "super::lenient::string")]
    pub workspace: String,
    /// Request timeout in seconds.
    pub timeout: u64,
    /// For servers with login accounts (`POST /login`).
    #[serde(deserialize_with = "super::lenient::opt_string")]
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Send new documents in batches (`POST /documents/texts`) of up to
    /// `ingestion.batch_size` documents and `max_batch_bytes` of text.
    pub batch_inserts: bool,
    pub max_batch_bytes: u64,
    /// At the end of a run, wait at most this many seconds for LightRAG to
    /// finish processing what the run submitted (0: do not wait; the next
    /// run checks).
    pub confirm_wait_seconds: u64,
    /// A document still pending or processing this long after it was
    /// submitted is reported as stuck.
    pub stuck_after_minutes: u64,
}

impl Default for LightragApiConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:9621".into(),
            api_key: None,
            workspace: "memories".into(),
            timeout: 300,
            username: None,
            password: None,
            batch_inserts: true,
            max_batch_bytes: 8 * 1024 * 1024,
            confirm_wait_seconds: 30,
            stuck_after_minutes: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LightragDirectConfig {
    /// Documents are written to `<working_dir>/inputs/<file_source basename>`.
    #[serde(deserialize_with = "super::lenient::path_buf")]
    pub working_dir: PathBuf,
}

impl Default for LightragDirectConfig {
    fn default() -> Self {
        Self { working_dir: PathBuf::from("./lightrag_storage") }
    }
}

// ---------------------------------------------------------------- memory api

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemoryApiConfig {
    #[serde(deserialize_with = "super::lenient::string", serialize_with = "crate::secrets::serialize_masked_url")]
    pub url: String,
    pub api_key: Option<Secret>,
    /// Request timeout in seconds.
    pub timeout: u64,
    /// Attempts after the first one for 429, 5xx and network errors.
    pub max_retries: u32,
    /// Exponential backoff multiplier.
    pub retry_backoff: f64,
    /// The largest list answer read, in bytes; a larger (or endless) body
    /// fails the request instead of filling the memory.
    pub max_response_bytes: u64,
}

/// 64 MiB: a full page of 10,000 memories with transcripts of a few KB each.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

impl Default for MemoryApiConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            api_key: None,
            timeout: 30,
            max_retries: 3,
            retry_backoff: 2.0,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

// ---------------------------------------------------------------- connectors

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConnectorConfig {
    #[serde(deserialize_with = "super::lenient::connector_id")]
    pub id: ConnectorId,
    pub enabled: bool,
    #[serde(deserialize_with = "super::lenient::opt_string")]
    pub description: Option<String>,
    #[serde(deserialize_with = "super::lenient::string")]
    pub context_id: String,
    pub schedule: ScheduleConfig,
    pub ingestion: IngestionConfig,
    pub transformation: TransformationConfig,
    pub retry: RetryConfig,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            id: ConnectorId::new(""),
            enabled: true,
            description: None,
            context_id: String::new(),
            schedule: ScheduleConfig::default(),
            ingestion: IngestionConfig::default(),
            transformation: TransformationConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleType {
    #[default]
    Interval,
    Cron,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ScheduleConfig {
    #[serde(rename = "type")]
    pub kind: ScheduleType,
    pub interval_hours: Option<f64>,
    /// Testing aid and sub-hour schedules; wins over `interval_hours` when set.
    pub interval_minutes: Option<f64>,
    /// 5-field Unix cron (minute hour day-of-month month day-of-week).
    #[serde(deserialize_with = "super::lenient::opt_string")]
    pub cron: Option<String>,
    /// IANA zone name for `cron`; UTC when absent.
    #[serde(deserialize_with = "super::lenient::opt_string")]
    pub timezone: Option<String>,
    /// Up to this many seconds of random delay per firing.
    pub jitter_seconds: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleType::Interval,
            interval_hours: Some(1.0),
            interval_minutes: None,
            cron: None,
            timezone: None,
            jitter_seconds: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum QueryRange {
    Day,
    #[default]
    Week,
    Month,
    All,
}

impl QueryRange {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryRange::Day => "day",
            QueryRange::Week => "week",
            QueryRange::Month => "month",
            QueryRange::All => "all",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IngestionConfig {
    pub query_range: QueryRange,
    pub query_limit: u32,
    /// Memories processed in parallel (requests in flight).
    pub batch_size: u32,
    pub skip_empty_transcripts: bool,
}

impl Default for IngestionConfig {
    fn default() -> Self {
        Self { query_range: QueryRange::Week, query_limit: 100, batch_size: 10, skip_empty_transcripts: true }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Standard,
    Rich,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TransformationConfig {
    pub strategy: Strategy,
    pub include_audio: bool,
    pub include_image: bool,
    pub geocoding: bool,
    pub extract_tags: bool,
}

impl Default for TransformationConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Standard,
            include_audio: false,
            include_image: false,
            geocoding: false,
            extract_tags: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub backoff_multiplier: f64,
    pub max_backoff_seconds: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_attempts: 3, backoff_multiplier: 2.0, max_backoff_seconds: 60 }
    }
}

// ---------------------------------------------------------------- state

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Json,
    Sqlite,
    Dynamodb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StateConfig {
    pub backend: StateBackend,
    #[serde(deserialize_with = "super::lenient::path_buf")]
    pub path: PathBuf,
    /// DynamoDB table (backend `dynamodb`); `STATE_TABLE` in the environment wins.
    #[serde(deserialize_with = "super::lenient::opt_string")]
    pub table: Option<String>,
    pub cleanup: CleanupConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackend::Json,
            path: PathBuf::from("./memory_sync_state.json"),
            table: None,
            cleanup: CleanupConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CleanupConfig {
    pub enabled: bool,
    pub retention_days: u32,
    #[serde(deserialize_with = "super::lenient::string")]
    pub cleanup_cron: String,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self { enabled: true, retention_days: 90, cleanup_cron: "0 2 * * *".into() }
    }
}

// ---------------------------------------------------------------- api

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiConfig {
    pub enabled: bool,
    /// Where the management API and the metrics port listen (default
    /// `127.0.0.1`; `0.0.0.0` for every interface, e.g. in a container).
    #[serde(deserialize_with = "super::lenient::string")]
    pub host: String,
    pub port: u16,
    pub enable_auth: bool,
    pub api_key: Option<Secret>,
    pub cors: CorsConfig,
    pub rate_limit: RateLimitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // Loopback unless told otherwise: the API can trigger and reset
            // runs, and the metrics port (on this host too) has no key.
            host: "127.0.0.1".into(),
            port: 9622,
            enable_auth: true,
            api_key: None,
            cors: CorsConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CorsConfig {
    pub enabled: bool,
    pub origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self { enabled: true, origins: vec!["http://localhost:3000".into(), "http://localhost:9621".into()] }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub requests_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { enabled: false, requests_per_minute: 60 }
    }
}

// ---------------------------------------------------------------- logging

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, PartialOrd, Ord)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    #[serde(alias = "WARN")]
    Warning,
    Error,
    Critical,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub file: LogFileConfig,
    pub console: LogConsoleConfig,
    pub components: LogComponents,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: LogFormat::Json,
            file: LogFileConfig::default(),
            console: LogConsoleConfig::default(),
            components: LogComponents::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    #[default]
    Size,
    Time,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogFileConfig {
    /// Off unless configured: a one-shot command should not scatter log files.
    pub enabled: bool,
    #[serde(deserialize_with = "super::lenient::path_buf")]
    pub path: PathBuf,
    pub max_bytes: u64,
    pub backup_count: u32,
    pub rotation: LogRotation,
}

impl Default for LogFileConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: PathBuf::from("./logs/memory_connector.log"),
            max_bytes: 10_485_760,
            backup_count: 5,
            rotation: LogRotation::Size,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConsoleConfig {
    pub enabled: bool,
    pub colorize: bool,
}

impl Default for LogConsoleConfig {
    fn default() -> Self {
        Self { enabled: true, colorize: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct LogComponents {
    pub scheduler: Option<LogLevel>,
    pub api_client: Option<LogLevel>,
    pub orchestrator: Option<LogLevel>,
    pub state_manager: Option<LogLevel>,
}

// ---------------------------------------------------------------- monitoring

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct MonitoringConfig {
    pub prometheus: PrometheusConfig,
    pub health_check: HealthCheckConfig,
    pub alerts: AlertsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PrometheusConfig {
    pub enabled: bool,
    pub port: u16,
    #[serde(deserialize_with = "super::lenient::string")]
    pub path: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self { enabled: false, port: 9623, path: "/metrics".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::lenient::string")]
    pub endpoint: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self { enabled: true, endpoint: "/health".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct AlertsConfig {
    pub enabled: bool,
    pub webhook_url: Option<Secret>,
    pub alert_on: Vec<AlertRule>,
}

/// One entry of `monitoring.alerts.alert_on` (a single-key map in YAML).
///
/// Serde is written by hand: `yaml_serde` reads externally tagged enums only
/// from YAML tags (`!consecutive_failures 3`), not from the single-key map the
/// reference uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertRule {
    ConsecutiveFailures(u32),
    NoSyncForHours(f64),
}

impl AlertRule {
    const KEYS: &'static [&'static str] = &["consecutive_failures", "no_sync_for_hours"];
}

impl Serialize for AlertRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            AlertRule::ConsecutiveFailures(n) => map.serialize_entry("consecutive_failures", n)?,
            AlertRule::NoSyncForHours(h) => map.serialize_entry("no_sync_for_hours", h)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for AlertRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        use std::fmt;

        struct RuleVisitor;

        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = AlertRule;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single-key map: `consecutive_failures: N` or `no_sync_for_hours: H`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AlertRule, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                let rule = match key.as_str() {
                    "consecutive_failures" => AlertRule::ConsecutiveFailures(map.next_value()?),
                    "no_sync_for_hours" => AlertRule::NoSyncForHours(map.next_value()?),
                    other => return Err(de::Error::unknown_variant(other, AlertRule::KEYS)),
                };
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("each alert rule is its own list item with a single key"));
                }
                Ok(rule)
            }
        }

        deserializer.deserialize_map(RuleVisitor)
    }
}

// ---------------------------------------------------------------- advanced

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AdvancedConfig {
    /// Seconds.
    pub shutdown_timeout: u64,
    pub pipeline: PipelineConfig,
    pub performance: PerformanceConfig,
    pub security: SecurityConfig,
}

impl Default for AdvancedConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: 30,
            pipeline: PipelineConfig::default(),
            performance: PerformanceConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PipelineConfig {
    pub max_concurrent_connectors: u32,
    pub job_timeout_minutes: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { max_concurrent_connectors: 2, job_timeout_minutes: 60 }
    }
}

impl PipelineConfig {
    /// `job_timeout_minutes` as a duration (at least a minute): how long one
    /// run may go on, and so how long its lease lasts.
    pub fn job_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.job_timeout_minutes.max(1).saturating_mul(60))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PerformanceConfig {
    pub enable_caching: bool,
    pub cache_ttl_seconds: u64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self { enable_caching: true, cache_ttl_seconds: 3600 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct SecurityConfig {
    pub encrypt_secrets: bool,
    pub encryption_key: Option<Secret>,
}

// ---------------------------------------------------------------- enrichment

/// The services that fill in what a memory lacks: a transcript from its audio,
/// a description of its photo, a place name for its coordinates. Each is used
/// only by connectors that switch the matching transformation flag on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct EnrichmentConfig {
    pub transcription: TranscriptionConfig,
    pub vision: VisionConfig,
    pub geocoding: GeocodingConfig,
}

/// The default base URL of the OpenAI API.
pub const OPENAI_URL: &str = "https://api.openai.com/v1";

/// Whether `url` is OpenAI's own API (which refuses requests without a key).
pub fn is_openai_url(url: &str) -> bool {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(|h| h.eq_ignore_ascii_case("api.openai.com"))) == Some(true)
}

/// An OpenAI-compatible `POST {url}/audio/transcriptions`. `api_key` has no
/// default: the example file writes `"${OPENAI_API_KEY}"`, and a config that
/// does not mention it must not need the variable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TranscriptionConfig {
    #[serde(deserialize_with = "super::lenient::string", serialize_with = "crate::secrets::serialize_masked_url")]
    pub url: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub model: String,
    pub api_key: Option<Secret>,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self { url: OPENAI_URL.into(), model: "whisper-1".into(), api_key: None }
    }
}

/// An OpenAI-compatible `POST {url}/chat/completions` that accepts images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VisionConfig {
    #[serde(deserialize_with = "super::lenient::string", serialize_with = "crate::secrets::serialize_masked_url")]
    pub url: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub model: String,
    pub api_key: Option<Secret>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self { url: OPENAI_URL.into(), model: "gpt-4o-mini".into(), api_key: None }
    }
}

/// A Nominatim-compatible reverse geocoder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GeocodingConfig {
    #[serde(deserialize_with = "super::lenient::string", serialize_with = "crate::secrets::serialize_masked_url")]
    pub url: String,
    /// Nominatim's usage policy asks for a User-Agent naming the application and a contact.
    #[serde(deserialize_with = "super::lenient::string")]
    pub user_agent: String,
    /// At most this many requests per second (Nominatim's policy: 1).
    pub requests_per_second: f64,
}

/// The public Nominatim instance.
pub const NOMINATIM_URL: &str = "https://nominatim.openstreetmap.org";

impl Default for GeocodingConfig {
    fn default() -> Self {
        Self {
            url: NOMINATIM_URL.into(),
            user_agent: concat!("memory-connector/", env!("CARGO_PKG_VERSION"), " (contact: you@example.com)").into(),
            requests_per_second: 1.0,
        }
    }
}
