//! Logging set-up: `json` or `text`, console (stderr; colour only on a
//! terminal) and an optional file with size-based rotation, a global level
//! and per-component levels (`logging.components`, mapped to tracing
//! targets), `LOG_LEVEL` / `LOG_FORMAT` overriding the config.

use crate::config::{LogFormat, LogLevel, LoggingConfig};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The tracing targets of each `logging.components` entry.
pub const COMPONENT_TARGETS: &[(&str, &[&str])] = &[
    ("scheduler", &["connector_core::service"]),
    ("api_client", &["connector_core::memory_api", "connector_core::lightrag"]),
    ("orchestrator", &["connector_core::sync"]),
    ("state_manager", &["connector_core::state"]),
];

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error | LogLevel::Critical => "error",
    }
}

fn normalise(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "warning" => "warn".into(),
        "critical" => "error".into(),
        other => other.into(),
    }
}

/// The filter directive: global level, then the components. `LOG_LEVEL`
/// replaces the global level (components keep theirs).
pub fn filter_directive(config: &LoggingConfig, env_level: Option<&str>) -> String {
    let global = env_level.map(normalise).unwrap_or_else(|| level_name(config.level).into());
    let mut parts = vec![global];
    let c = &config.components;
    for (name, targets) in COMPONENT_TARGETS {
        let level = match *name {
            "scheduler" => c.scheduler,
            "api_client" => c.api_client,
            "orchestrator" => c.orchestrator,
            _ => c.state_manager,
        };
        if let Some(level) = level {
            for target in *targets {
                parts.push(format!("{target}={}", level_name(level)));
            }
        }
    }
    parts.join(",")
}

/// Whether logs are JSON (`LOG_FORMAT` wins over the config).
pub fn json_format(config: &LoggingConfig, env_format: Option<&str>) -> bool {
    match env_format.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => config.format == LogFormat::Json,
    }
}

/// Installs the global subscriber (once; later calls do nothing). A file
/// that cannot be opened is reported on stderr and logging goes on without it.
pub fn init(config: &LoggingConfig) {
    let directive = filter_directive(config, std::env::var("LOG_LEVEL").ok().as_deref());
    let json = json_format(config, std::env::var("LOG_FORMAT").ok().as_deref());
    let make_filter = || EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = Vec::new();
    if config.console.enabled {
        let colour = config.console.colorize
            && std::env::var_os("NO_COLOR").is_none()
            && io::IsTerminal::is_terminal(&io::stderr());
        let layer = tracing_subscriber::fmt::layer().with_writer(io::stderr);
        layers.push(if json {
            layer.json().flatten_event(true).with_filter(make_filter()).boxed()
        } else {
            layer.fmt_fields(EscapedFields).with_ansi(colour).with_filter(make_filter()).boxed()
        });
    }
    if config.file.enabled {
        if config.file.rotation == crate::config::LogRotation::Time {
            eprintln!(
                "warning: logging.file.rotation: time is not supported; the log file is rotated by size (max_bytes)"
            );
        }
        match RotatingFile::open(&config.file.path, config.file.max_bytes, config.file.backup_count) {
            Ok(file) => {
                let layer = tracing_subscriber::fmt::layer().with_writer(file).with_ansi(false);
                layers.push(if json {
                    layer.json().flatten_event(true).with_filter(make_filter()).boxed()
                } else {
                    layer.fmt_fields(EscapedFields).with_filter(make_filter()).boxed()
                });
            }
            Err(e) => eprintln!("warning: log file {}: {e}; logging to the console only", config.file.path.display()),
        }
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// The fields of a text log line (event and span fields) as the default
/// formatter writes them, with control characters escaped
/// ([`crate::text::escape_controls`]): a memory id or an upstream body with
/// a newline or an ANSI escape in it cannot write a log line of its own or
/// drive the terminal. JSON logs escape by themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut visitor = EscapingVisitor { writer: &mut writer, result: Ok(()), first: true };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: std::fmt::Result,
    first: bool,
}

impl EscapingVisitor<'_, '_> {
    fn write(&mut self, field: &Field, text: &str) {
        let name = field.name();
        // Metadata of `log` records, already shown by the event's own format.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) { "" } else { " " };
        let text = crate::text::escape_controls(text);
        self.result = match name {
            "message" => write!(self.writer, "{separator}{text}"),
            name => write!(self.writer, "{separator}{}={text}", name.trim_start_matches("r#")),
        };
    }
}

impl Visit for EscapingVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" { self.write(field, value) } else { self.write(field, &format!("{value:?}")) }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// A log file rotated by size: `app.log` -> `app.log.1` -> ... ->
/// `app.log.N` (the oldest dropped). Lines are small appends to a local
/// file; the lock is held only for one line.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<RotatingInner>>,
}

struct RotatingInner {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, backups: u32) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            inner: Arc::new(Mutex::new(RotatingInner {
                path: path.to_owned(),
                max_bytes: max_bytes.max(1),
                backups,
                file,
                size,
            })),
        })
    }
}

impl RotatingInner {
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.backups == 0 {
            self.file = OpenOptions::new().create(true).write(true).truncate(true).open(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.backups));
            for n in (1..self.backups).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.size > 0 && inner.size + buf.len() as u64 > inner.max_bytes {
            inner.rotate()?;
        }
        inner.file.write_all(buf)?;
        inner.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogComponents;

    #[test]
    fn components_map_to_targets_and_env_overrides() {
        let config = LoggingConfig {
            level: LogLevel::Warning,
            components: LogComponents {
                state_manager: Some(LogLevel::Debug),
                scheduler: Some(LogLevel::Critical),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(filter_directive(&config, None), "warn,connector_core::service=error,connector_core::state=debug");
        assert!(filter_directive(&config, Some("DEBUG")).starts_with("debug,"));
        assert!(json_format(&config, None));
        assert!(!json_format(&config, Some("TEXT")));
    }

    /// Text log lines of what `emit` logs, through the text layer `init` builds.
    fn text_lines(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .with_writer(move || writer.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        let bytes = buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn an_id_cannot_forge_log_lines_or_send_terminal_escapes() {
        let id = "42\n2026-01-01T00:00:00Z  INFO forged: all good\r\n\u{1b}[2J\u{1b}[31m";
        let out = text_lines(|| {
            let span = tracing::info_span!("sync", connector_id = %id);
            let _entered = span.enter();
            tracing::warn!(memory_id = %id, debug = ?id, error = %format!("upstream said {id}"), "memory {id} failed");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.trim_end_matches('\n').chars().any(char::is_control), "{out:?}");
        assert!(out.contains("memory 42\\n2026-01-01T00:00:00Z  INFO forged"), "{out}");
        assert!(out.contains("memory_id=42\\n"), "{out}");
        assert!(out.contains("\\u{1b}[2J"), "{out}");
    }

    #[test]
    fn ordinary_fields_read_as_the_default_format_writes_them() {
        let out = text_lines(|| tracing::info!(memory_id = %"m-1", attempts = 3, reason = "busy", "delivery failed"));
        assert!(out.trim_end().ends_with("delivery failed memory_id=m-1 attempts=3 reason=\"busy\""), "{out}");
    }

    #[test]
    fn rotates_by_size_and_keeps_n_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/app.log");
        let mut file = RotatingFile::open(&path, 10, 2).unwrap();
        for i in 0..5 {
            file.write_all(format!("line-{i}-xx\n").as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line-4-xx\n");
        assert_eq!(std::fs::read_to_string(format!("{}.1", path.display())).unwrap(), "line-3-xx\n");
        assert_eq!(std::fs::read_to_string(format!("{}.2", path.display())).unwrap(), "line-2-xx\n");
        assert!(!Path::new(&format!("{}.3", path.display())).exists());
    }
}
