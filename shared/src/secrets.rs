//! Secrets: a type that cannot leak by accident.
//!
//! `Secret` prints `***` through `Debug`, `Display` and `Serialize`; the only way
//! to the value is [`Secret::expose`], used at the one place a request header
//! is built. Redaction by type, not by hope.
//!
//! The resolver: `${VAR}` in the config resolves from the environment
//! ([`crate::config::Environment`]). In Lambda a variable `X_SECRET_ARN`
//! (an ARN or a secret name) names a Secrets Manager secret that supplies
//! `X`; when the secret's string is a JSON object, every key of it becomes a
//! variable (one secret for several keys). A fetched secret wins over a
//! plain `X` in the environment. Values are fetched once and kept for a TTL
//! (`advanced.performance.cache_ttl_seconds`); they are never logged.

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

mod scrub;
pub use scrub::{longest_form, scrub};

/// `text` with the credentials of every URL in it masked: `user:pass@`
/// becomes `user:***@`, and a user alone (often a token) `***@`. The one
/// place a URL is made fit to show: logs, errors, reports, `validate --show`.
/// Works on text that does not parse as a URL too. Text without credentials
/// comes back borrowed.
pub fn mask_url_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') || !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let ends_authority =
        |c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ',' | ')') || c.is_whitespace();
    let (mut out, mut rest, mut changed) = (String::with_capacity(text.len()), text, false);
    while let Some(scheme_end) = rest.find("://") {
        let start = scheme_end + 3;
        let after = &rest[start..];
        let authority = &after[..after.find(ends_authority).unwrap_or(after.len())];
        out.push_str(&rest[..start]);
        match authority.rfind('@') {
            Some(at) => {
                if let Some((user, _password)) = authority[..at].split_once(':') {
                    out.push_str(user);
                    out.push(':');
                }
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &after[authority.len()..];
    }
    if !changed {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Serializes a URL of the configuration with its credentials masked
/// (`validate --show`, `--json`): the loaded value keeps them for requests.
pub fn serialize_masked_url<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&mask_url_credentials(url))
}

/// Files holding secrets (the config, `.env`) that others can read: warns
/// once per file at service start (`chmod 600` fixes it; a file readable by
/// the service's own group is fine).
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

/// A variable ending in this names a secret that supplies the variable
/// without the suffix (`MEMORY_API_KEY_SECRET_ARN` -> `MEMORY_API_KEY`).
pub const SECRET_REFERENCE_SUFFIX: &str = "_SECRET_ARN";

/// The secrets `vars` names: (variable it supplies, secret id), sorted.
pub fn secret_references(vars: &std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = vars
        .iter()
        .filter_map(|(name, id)| {
            let variable = name.strip_suffix(SECRET_REFERENCE_SUFFIX)?;
            (!variable.is_empty() && !id.trim().is_empty()).then(|| (variable.to_owned(), id.trim().to_owned()))
        })
        .collect();
    refs.sort();
    refs
}

/// Puts a fetched secret into `vars`: every string (or number/bool) member
/// of a JSON object becomes a variable; any other text is the value of
/// `variable`.
pub fn merge_secret(vars: &mut std::collections::HashMap<String, String>, variable: &str, value: &Secret) {
    if let Ok(serde_json::Value::Object(members)) = serde_json::from_str::<serde_json::Value>(value.expose()) {
        for (key, member) in members {
            let text = match member {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            vars.insert(key, text);
        }
    } else {
        vars.insert(variable.to_owned(), value.expose().to_owned());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id} (for ${{{variable}}}): {detail}")]
    Fetch { variable: String, id: String, detail: String },
}

#[cfg(feature = "aws")]
pub use self::secrets_manager::SecretsManagerResolver;

#[cfg(feature = "aws")]
mod secrets_manager {
    use super::{Secret, SecretError, merge_secret, secret_references};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Fetches the secrets the environment names from Secrets Manager, with
    /// a TTL cache per secret id.
    #[derive(Debug)]
    pub struct SecretsManagerResolver {
        client: aws_sdk_secretsmanager::Client,
        ttl: Duration,
        cache: Mutex<HashMap<String, (Instant, Secret)>>,
    }

    impl SecretsManagerResolver {
        pub fn new(client: aws_sdk_secretsmanager::Client, ttl: Duration) -> Self {
            Self { client, ttl, cache: Mutex::new(HashMap::new()) }
        }

        /// Changes the TTL (the config that sets it is read with the secrets).
        pub fn set_ttl(&mut self, ttl: Duration) {
            self.ttl = ttl;
        }

        /// The secret `id`, from the cache while younger than the TTL.
        pub async fn fetch(&self, variable: &str, id: &str) -> Result<Secret, SecretError> {
            if let Some((at, value)) = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id)
                && at.elapsed() < self.ttl
            {
                return Ok(value.clone());
            }
            let fail = |detail: String| SecretError::Fetch { variable: variable.to_owned(), id: id.to_owned(), detail };
            let got = self
                .client
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| fail(format!("GetSecretValue: {}", crate::errors::error_chain(&e))))?;
            let value = Secret::new(
                got.secret_string
                    .ok_or_else(|| fail("the secret has no string value (binary secrets are not supported)".into()))?,
            );
            self.cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_owned(), (Instant::now(), value.clone()));
            Ok(value)
        }

        /// `vars` with every secret they name merged in.
        pub async fn resolve(&self, mut vars: HashMap<String, String>) -> Result<HashMap<String, String>, SecretError> {
            for (variable, id) in secret_references(&vars) {
                let value = self.fetch(&variable, &id).await?;
                merge_secret(&mut vars, &variable, &value);
            }
            Ok(vars)
        }

        /// Whether every cached secret is younger than the TTL.
        pub fn is_fresh(&self) -> bool {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.values().all(|(at, _)| at.elapsed() < self.ttl)
        }
    }
}

/// Readable by anyone but the owner and the members of this process's own
/// group: other-readable, or group-readable by some other group. The Debian
/// package's 0640 root:connector is fine for the service running as
/// connector; so is 0600.
#[cfg(unix)]
fn readable_by_others(path: &std::path::Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::metadata(path).is_ok_and(|m| {
        let mode = m.permissions().mode();
        let foreign_group = mode & 0o040 != 0 && effective_gid() != Some(m.gid());
        m.is_file() && (mode & 0o004 != 0 || foreign_group)
    })
}

/// The process's effective group id, from `/proc/self/status` (Linux);
/// `None` elsewhere, where any group-readable file counts as readable by others.
#[cfg(unix)]
fn effective_gid() -> Option<u32> {
    parse_effective_gid(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The second field of the `Gid:` line (real, effective, saved, filesystem).
#[cfg(unix)]
fn parse_effective_gid(status: &str) -> Option<u32> {
    status.lines().find_map(|line| line.strip_prefix("Gid:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(not(unix))]
fn readable_by_others(_path: &std::path::Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_merging() {
        let vars: std::collections::HashMap<String, String> = [
            ("MEMORY_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:mem"),
            ("BUNDLE_SECRET_ARN", "bundle"),
            ("_SECRET_ARN", "nameless"),
            ("EMPTY_SECRET_ARN", " "),
            ("OTHER", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            secret_references(&vars),
            [
                ("BUNDLE".to_owned(), "bundle".to_owned()),
                ("MEMORY_API_KEY".to_owned(), "arn:aws:secretsmanager:us-east-1:1:secret:mem".to_owned())
            ]
        );
        let mut out = vars.clone();
        merge_secret(&mut out, "MEMORY_API_KEY", &Secret::new("plain-key"));
        merge_secret(&mut out, "BUNDLE", &Secret::new(r#"{"LIGHTRAG_API_KEY": "lk", "PORT": 9621, "nested": {}}"#));
        assert_eq!(out["MEMORY_API_KEY"], "plain-key");
        assert_eq!(out["LIGHTRAG_API_KEY"], "lk");
        assert_eq!(out["PORT"], "9621");
        assert!(!out.contains_key("BUNDLE") && !out.contains_key("nested"), "a JSON secret supplies its keys only");
    }

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_only_by_the_services_own_group_is_not_readable_by_others() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "x").expect("write");
        let mode = |m: u32| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).expect("chmod");
        // A new file gets this process's effective group: the Debian package's
        // 0640 root:connector as seen by the service running as connector.
        let group = std::fs::metadata(&file).expect("stat").gid();
        assert_eq!(effective_gid(), Some(group));
        mode(0o640);
        assert!(!readable_by_others(&file));
        mode(0o600);
        assert!(!readable_by_others(&file));
        mode(0o644);
        assert!(readable_by_others(&file), "others may read it");
        assert_eq!(parse_effective_gid("Uid:\t0\t0\t0\t0\nGid:\t10\t20\t30\t40\n"), Some(20));
        assert_eq!(parse_effective_gid("Name:\tx\n"), None);
    }

    #[test]
    fn url_credentials_are_masked_in_urls_and_in_text() {
        for (text, shown) in [
            ("http://user:hunter2@host:9621/x?y=1", "http://user:***@host:9621/x?y=1"),
            ("https://ghp_token@github.com/a", "https://***@github.com/a"),
            ("http://u:p@h x", "http://u:***@h x"),
            (
                "GET http://a:b@one/x failed; see https://c:d@two",
                "GET http://a:***@one/x failed; see https://c:***@two",
            ),
            ("http://host/path@v1", "http://host/path@v1"),
            ("mail me: a@b.c", "mail me: a@b.c"),
            ("no url", "no url"),
            ("http://u:p:q@h", "http://u:***@h"),
        ] {
            assert_eq!(mask_url_credentials(text), shown, "{text}");
        }
        assert!(matches!(mask_url_credentials("http://host/x"), std::borrow::Cow::Borrowed(_)));
    }
}

#[cfg(all(test, feature = "aws"))]
mod aws_tests;
