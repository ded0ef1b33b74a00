//! Where the functions read their config (decision 0025): the S3 object
//! `CONFIG_URI` names (`memory-connector deploy-config` writes it), read
//! through the same TTL cache as the secrets (`cache_ttl_seconds`) with a
//! conditional GET, so a config change reaches running functions without a
//! redeploy; or the file `CONFIG_PATH` (the Lambda layer), which is also the
//! fallback while nothing was uploaded yet.

use super::FunctionError;
use crate::aws::record::CallRecorder;
use crate::config_store::{ConfigObject, Fetched};
use crate::ttl_cache::TtlCache;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// `s3://bucket/key` of the deployed config; unset: the layer file.
pub const CONFIG_URI_ENV: &str = "CONFIG_URI";
/// A forced re-read (an event named a connector the config does not have)
/// happens at most this often, so a stream of bad events costs no S3 storm.
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);
/// The cache key of the one object.
const KEY: &str = "config";

/// The config text and which version it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigText {
    pub text: String,
    /// The S3 ETag, or `file` for the layer.
    pub version: String,
    /// Where it came from, for errors.
    pub name: String,
}

pub enum ConfigSource {
    File(PathBuf),
    S3 {
        object: ConfigObject,
        /// The layer file, read while the object does not exist.
        fallback: PathBuf,
        cache: TtlCache<ConfigText>,
        last_forced: Mutex<Option<Instant>>,
    },
}

impl ConfigSource {
    /// The S3 object when `CONFIG_URI` is set, else the file.
    pub fn new(
        path: PathBuf,
        vars: &std::collections::HashMap<String, String>,
        sdk: &aws_config::SdkConfig,
        recorder: Option<&CallRecorder>,
    ) -> Result<Self, FunctionError> {
        match vars.get(CONFIG_URI_ENV).map(|u| u.trim()).filter(|u| !u.is_empty()) {
            None => Ok(Self::File(path)),
            Some(uri) => Ok(Self::S3 {
                object: ConfigObject::new(crate::config_store::recorded_client(sdk, recorder), uri)
                    .map_err(|e| FunctionError::Config(format!("{CONFIG_URI_ENV}: {e}")))?,
                fallback: path,
                cache: TtlCache::new(Duration::MAX),
                last_forced: Mutex::new(None),
            }),
        }
    }

    /// The TTL of the cached object (the config that sets it is read through it).
    pub fn set_ttl(&mut self, ttl: Duration) {
        if let Self::S3 { cache, .. } = self {
            cache.set_ttl(ttl);
        }
    }

    /// Whether a read now would answer from the cache.
    pub fn is_fresh(&self) -> bool {
        match self {
            Self::File(_) => true,
            Self::S3 { cache, .. } => cache.fresh(KEY, Instant::now()).is_some(),
        }
    }

    /// Makes the next read ask S3, unless one was forced less than
    /// [`MIN_FORCED_REFRESH`] ago. `false`: nothing to re-read.
    pub fn expire(&self) -> bool {
        let Self::S3 { cache, last_forced, .. } = self else { return false };
        let mut last = last_forced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.saturating_duration_since(at) < MIN_FORCED_REFRESH) {
            return false;
        }
        *last = Some(now);
        cache.expire(KEY);
        true
    }

    /// The current config text.
    pub async fn read(&self) -> Result<ConfigText, FunctionError> {
        match self {
            Self::File(path) => read_file(path).await,
            Self::S3 { object, fallback, cache, .. } => {
                let now = Instant::now();
                if let Some(text) = cache.fresh(KEY, now) {
                    return Ok(text);
                }
                let known = cache.any_age(KEY);
                let fetched = object.fetch(known.as_ref().map(|k| k.version.as_str())).await?;
                let text = match (fetched, known) {
                    (Fetched::NotModified, Some(known)) => {
                        cache.renew(KEY, now);
                        return Ok(known);
                    }
                    (Fetched::Found { text, etag }, known) => {
                        if known.is_some() {
                            info!(uri = %object.uri(), etag = %etag, "the deployed config changed");
                        }
                        ConfigText { text, version: etag, name: object.uri() }
                    }
                    (Fetched::Missing, _) => {
                        warn!(uri = %object.uri(), fallback = %fallback.display(), "no config deployed yet: reading the layer's");
                        read_file(fallback).await?
                    }
                    // A 304 without a version asked about: cannot happen; read again plainly.
                    (Fetched::NotModified, None) => match object.fetch(None).await? {
                        Fetched::Found { text, etag } => ConfigText { text, version: etag, name: object.uri() },
                        _ => read_file(fallback).await?,
                    },
                };
                cache.put(KEY, text.clone(), now);
                Ok(text)
            }
        }
    }
}

async fn read_file(path: &std::path::Path) -> Result<ConfigText, FunctionError> {
    let name = path.display().to_string();
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| FunctionError::Config(crate::config::ConfigError::unreadable(&name, &e).to_string()))?;
    Ok(ConfigText { text, version: "file".into(), name })
}
