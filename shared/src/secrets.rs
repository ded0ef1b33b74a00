//! Secrets: a type that cannot leak by accident.
//!
//! `Secret` prints `***` through `Debug`, `Display` and `Serialize`; the only way
//! to the value is [`Secret::expose`], used at the one place a request header
//! is built. Redaction by type, not by hope.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Shown wherever a secret would be.
pub const REDACTED: &str = "***";

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: only for the request header or signature that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts a string, or a number/bool (a key made only of digits after `${VAR}`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            U(u64),
            F(f64),
            B(bool),
        }
        Ok(Secret(match Raw::deserialize(deserializer)? {
            Raw::S(s) => s,
            Raw::I(v) => v.to_string(),
            Raw::U(v) => v.to_string(),
            Raw::F(v) => v.to_string(),
            Raw::B(v) => v.to_string(),
        }))
    }
}

/// Removes every occurrence of each secret from a text (for error bodies that
/// echo a request back).
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.expose(), REDACTED);
        }
    }
    out
}

/// Files holding secrets (the config, `.env`) that others can read: warns
/// once per file at service start (`chmod 600` fixes it).
pub fn warn_if_readable_by_others(config_path: &std::path::Path) {
    let mut files = vec![config_path.to_path_buf()];
    if let Some(dir) = config_path.parent() {
        files.push(dir.join(".env"));
    }
    files.push(std::path::PathBuf::from(".env"));
    files.dedup();
    for file in files {
        if readable_by_others(&file) {
            tracing::warn!(
                file = %file.display(),
                "this file may hold secrets and is readable by other users; run `chmod 600` on it"
            );
        }
    }
}

#[cfg(unix)]
fn readable_by_others(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &std::path::Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn scrub_removes_echoed_values() {
        let s = Secret::new("k-123");
        assert_eq!(scrub("bad key k-123 given", &[&s]), "bad key *** given");
    }
}
