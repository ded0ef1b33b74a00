//! The JSON state store: the whole state in one human-readable file,
//! `{"version": 1, "connectors": {"<id>": {"state", "lease", "entries", "runs"}}}`.
//!
//! Durability: every change writes the complete file to `<path>.tmp`, fsyncs
//! it, renames it over `<path>` and fsyncs the directory, so after a crash at
//! any point (SIGKILL included) the file is either the old or the new
//! complete version. A corrupt file is reported and never overwritten.
//!
//! Concurrency: writers (this process or another) exclude each other with an
//! exclusive lock on `<path>.lock`; under that lock a writer re-reads the file
//! if another writer replaced it since it was cached, so no update is lost and
//! lease acquisition is atomic across processes. Readers take no lock (a
//! rename is atomic, they always see one complete version).
//!
//! Caching: the file is parsed once and kept in memory; every call checks
//! with one `stat` whether the file on disk is still the cached one. The
//! check is exact because files are only ever replaced (new inode), and the
//! cache keeps the file it parsed open so its inode number cannot be reused
//! by a later version. Editing the file in place while a connector runs is
//! detected through its length and mtime only (best effort).

use super::{
    CacheValue, Checkpoint, ConnectorState, EntryStatus, Lease, LeaseOutcome, LedgerEntry, RunRecord, StateError,
    StateStore,
};
use crate::ids::{ConnectorId, MemoryId, RunId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, Metadata, TryLockError};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// The file format this build reads and writes.
const FORMAT_VERSION: u32 = 1;
/// How long a write waits for another process to release the file lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(10);

/// The file, as serde sees it. `BTreeMap`s keep it stable and diffable.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Document {
    version: u32,
    #[serde(default)]
    connectors: BTreeMap<ConnectorId, ConnectorRecord>,
    /// The key-value cache (enrichments), shared by all connectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    cache: BTreeMap<String, CacheValue>,
}

impl Document {
    fn empty() -> Self {
        Self { version: FORMAT_VERSION, connectors: BTreeMap::new(), cache: BTreeMap::new() }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ConnectorRecord {
    #[serde(default)]
    state: Option<ConnectorState>,
    #[serde(default)]
    lease: Option<Lease>,
    #[serde(default)]
    entries: BTreeMap<MemoryId, LedgerEntry>,
    /// Oldest first (by start time, then run id); `runs()` reads it backwards.
    #[serde(default)]
    runs: Vec<RunRecord>,
}

impl ConnectorRecord {
    fn is_empty(&self) -> bool {
        self.state.is_none() && self.lease.is_none() && self.entries.is_empty() && self.runs.is_empty()
    }

    fn holds_lease(&self, owner: &RunId) -> bool {
        self.lease.as_ref().is_some_and(|lease| &lease.owner == owner)
    }

    fn upsert_run(&mut self, run: RunRecord) {
        match self.runs.iter_mut().find(|r| r.run_id == run.run_id) {
            Some(existing) => *existing = run,
            None => self.runs.push(run),
        }
        // Nearly always already sorted (runs start in order); a stable sort keeps it cheap.
        self.runs.sort_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)));
    }
}

/// Identity of the file version on disk (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        Self { dev, ino, len: meta.len(), modified: meta.modified().ok() }
    }
}

/// The parsed file and which version of it that is.
struct Loaded {
    doc: Document,
    /// `None`: there was no file.
    stamp: Option<Stamp>,
    /// The file `doc` came from, kept open so its inode number stays taken.
    _pinned: Option<File>,
}

/// The JSON-file [`StateStore`]. Cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct JsonStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for JsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the cached ledger: it can hold a million entries.
        f.debug_struct("JsonStore").field("path", &self.inner.path).finish()
    }
}

struct Inner {
    path: PathBuf,
    lock_path: PathBuf,
    temp_path: PathBuf,
    lock_timeout: Duration,
    /// Encrypts the file at rest when set (`advanced.security.encrypt_secrets`).
    cipher: Option<super::cipher::StateCipher>,
    /// `None` until loaded, and again after a failed write (forces a re-read).
    cache: Mutex<Option<Loaded>>,
}

impl JsonStore {
    /// Opens the state file at `path`. A missing file is an empty state (the
    /// file and its directories are created on the first write); a file that
    /// does not parse is [`StateError::Corrupt`] and is left untouched.
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        Self::open_with_lock_timeout(path, DEFAULT_LOCK_TIMEOUT).await
    }

    /// Like [`JsonStore::open`], with how long a write waits for another
    /// process's lock before failing with [`StateError::Locked`].
    pub async fn open_with_lock_timeout(path: &Path, lock_timeout: Duration) -> Result<Self, StateError> {
        let store = Self { inner: Arc::new(Inner::new(path, lock_timeout)) };
        store.blocking(|inner| inner.read(|_| ())).await?;
        Ok(store)
    }

    /// Like [`JsonStore::open`], with the file encrypted at rest under
    /// `cipher` (a plain file is read and encrypted at the next write).
    pub async fn open_encrypted(path: &Path, cipher: super::cipher::StateCipher) -> Result<Self, StateError> {
        let mut inner = Inner::new(path, DEFAULT_LOCK_TIMEOUT);
        inner.cipher = Some(cipher);
        let store = Self { inner: Arc::new(inner) };
        store.blocking(|inner| inner.read(|_| ())).await?;
        Ok(store)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` on the blocking pool: all file I/O stays off the runtime.
    async fn blocking<T, F>(&self, op: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StateError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || op(&inner)).await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(StateError::Io { path: self.inner.path.clone(), source: io::Error::other(join) }),
        }
    }
}

impl Inner {
    fn new(path: &Path, lock_timeout: Duration) -> Self {
        let with_suffix = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Self {
            path: path.to_path_buf(),
            lock_path: with_suffix(".lock"),
            temp_path: with_suffix(".tmp"),
            lock_timeout,
            cipher: None,
            cache: Mutex::new(None),
        }
    }

    fn io(&self, path: &Path, source: io::Error) -> StateError {
        StateError::Io { path: path.to_path_buf(), source }
    }

    /// Reads from the cached document after making sure it is current.
    fn read<T>(&self, view: impl FnOnce(&Document) -> T) -> Result<T, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let loaded = self.refresh(&mut cache)?;
        Ok(view(&loaded.doc))
    }

    /// Applies `change` under the file lock to the current document and
    /// persists it when `change` reports that it changed something.
    /// `change` must check before it mutates: an error means "nothing changed".
    fn write<T>(&self, change: impl FnOnce(&mut Document) -> Result<(T, bool), StateError>) -> Result<T, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = self.lock_file()?;
        let loaded = self.refresh(&mut cache)?;
        let (value, changed) = change(&mut loaded.doc)?;
        if changed && let Err(error) = self.persist(loaded) {
            // The cache may now hold a change the file does not: forget it.
            *cache = None;
            return Err(error);
        }
        drop(lock);
        Ok(value)
    }

    /// Makes the cache match the file on disk, re-reading it if it changed.
    fn refresh<'c>(&self, cache: &'c mut Option<Loaded>) -> Result<&'c mut Loaded, StateError> {
        let on_disk = match fs::metadata(&self.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let loaded = match cache.take() {
            Some(loaded) if loaded.stamp == on_disk => loaded,
            _ => self.load()?,
        };
        Ok(cache.insert(loaded))
    }

    fn load(&self) -> Result<Loaded, StateError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Loaded { doc: Document::empty(), stamp: None, _pinned: None });
            }
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let meta = file.metadata().map_err(|e| self.io(&self.path, e))?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(|e| self.io(&self.path, e))?;
        let doc = decode(&self.path, &bytes, self.cipher.as_ref())?;
        Ok(Loaded { doc, stamp: Some(Stamp::of(&meta)), _pinned: Some(file) })
    }

    /// Takes the exclusive lock on `<path>.lock`, waiting at most
    /// `lock_timeout`. The lock is released when the returned file is dropped.
    fn lock_file(&self) -> Result<File, StateError> {
        let dir = parent_dir(&self.path);
        super::files::create_dir_all(&dir).map_err(|e| self.io(&dir, e))?;
        let file = super::files::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(|e| self.io(&self.lock_path, e))?;
        let deadline = Instant::now() + self.lock_timeout;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::Error(e)) => return Err(self.io(&self.lock_path, e)),
                Err(TryLockError::WouldBlock) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(StateError::Locked {
                            path: self.path.clone(),
                            detail: format!(
                                "{} stayed locked for {:?} (another memory-connector writing this state?)",
                                self.lock_path.display(),
                                self.lock_timeout
                            ),
                        });
                    }
                    std::thread::sleep(LOCK_POLL.min(deadline - now));
                }
            }
        }
    }

    /// Writes the whole document atomically (temp file, fsync, rename, fsync dir).
    fn persist(&self, loaded: &mut Loaded) -> Result<(), StateError> {
        loaded.doc.connectors.retain(|_, record| !record.is_empty());
        let result = self.write_temp(&loaded.doc).and_then(|(file, meta)| {
            fs::rename(&self.temp_path, &self.path).map_err(|e| self.io(&self.path, e))?;
            Ok((file, meta))
        });
        let (file, meta) = match result {
            Ok(written) => written,
            Err(error) => {
                let _ = fs::remove_file(&self.temp_path);
                return Err(error);
            }
        };
        loaded.stamp = Some(Stamp::of(&meta));
        loaded._pinned = Some(file);
        let dir = parent_dir(&self.path);
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| self.io(&dir, e))
    }

    fn write_temp(&self, doc: &Document) -> Result<(File, Metadata), StateError> {
        let temp = &self.temp_path;
        let err = |e: io::Error| self.io(temp, e);
        let file = super::files::options().write(true).create(true).truncate(true).open(temp).map_err(err)?;
        // Keep whatever permissions someone gave the state file.
        if let Ok(meta) = fs::metadata(&self.path) {
            file.set_permissions(meta.permissions()).map_err(err)?;
        }
        let mut out = BufWriter::with_capacity(1 << 20, file);
        if let Some(cipher) = &self.cipher {
            let mut plain = serde_json::to_vec(doc).map_err(|e| err(io::Error::from(e)))?;
            plain.push(b'\n');
            let sealed = cipher.encrypt(&plain).map_err(|e| err(io::Error::other(e.to_string())))?;
            out.write_all(&sealed).map_err(err)?;
        } else {
            serde_json::to_writer_pretty(&mut out, doc).map_err(|e| err(io::Error::from(e)))?;
            out.write_all(b"\n").map_err(err)?;
        }
        let file = out.into_inner().map_err(|e| err(e.into_error()))?;
        file.sync_all().map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        Ok((file, meta))
    }
}

/// The document in a state file's bytes (decrypted under `cipher` when they
/// are encrypted), every record of it read and the format version checked.
pub(super) fn decode(
    path: &Path,
    bytes: &[u8],
    cipher: Option<&super::cipher::StateCipher>,
) -> Result<Document, StateError> {
    let corrupt = |detail: String| StateError::Corrupt { path: path.to_path_buf(), detail };
    let plain = super::cipher::open_bytes(cipher, bytes).map_err(|e| corrupt(e.to_string()))?;
    let bytes = plain.as_deref().unwrap_or(bytes);
    let doc: Document = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        // Parse again, slower, only to say where in the file it went wrong.
        Err(plain) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            return Err(match serde_path_to_error::deserialize::<_, Document>(&mut de) {
                Err(e) if e.path().iter().next().is_some() => corrupt(format!("at {}: {}", e.path(), e.inner())),
                _ => corrupt(plain.to_string()),
            });
        }
    };
    if doc.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not supported (this build reads version {FORMAT_VERSION})",
            doc.version
        )));
    }
    Ok(doc)
}

impl Document {
    /// Connectors, ledger entries and run records it holds.
    pub(super) fn counts(&self) -> (usize, u64, u64) {
        let entries = self.connectors.values().map(|r| r.entries.len() as u64).sum();
        let runs = self.connectors.values().map(|r| r.runs.len() as u64).sum();
        (self.connectors.len(), entries, runs)
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[async_trait]
impl StateStore for JsonStore {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        let (connector, owner) = (connector.clone(), owner.clone());
        self.blocking(move |inner| {
            inner.write(|doc| {
                let record = doc.connectors.entry(connector).or_default();
                if let Some(held) = record.lease.as_ref().filter(|l| !l.can_be_taken_by(&owner, now)) {
                    return Ok((LeaseOutcome::Held(held.clone()), false));
                }
                let lease = Lease::new(owner, now, ttl);
                record.lease = Some(lease.clone());
                Ok((LeaseOutcome::Acquired(lease), true))
            })
        })
        .await
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        let (connector, owner) = (connector.clone(), owner.clone());
        self.blocking(move |inner| {
            inner.write(|doc| match doc.connectors.get_mut(&connector) {
                Some(record) if record.holds_lease(&owner) => {
                    record.lease = None;
                    Ok(((), true))
                }
                _ => Ok(((), false)),
            })
        })
        .await
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| inner.read(|doc| doc.connectors.get(&connector).and_then(|r| r.lease.clone()))).await
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| inner.read(|doc| doc.connectors.get(&connector).and_then(|r| r.state.clone()))).await
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.blocking(|inner| {
            inner.read(|doc| {
                doc.connectors.iter().filter(|(_, record)| !record.is_empty()).map(|(id, _)| id.clone()).collect()
            })
        })
        .await
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let (connector, ids) = (connector.clone(), ids.to_vec());
        self.blocking(move |inner| {
            inner.read(|doc| {
                let Some(record) = doc.connectors.get(&connector) else {
                    return HashMap::new();
                };
                ids.into_iter().filter_map(|id| record.entries.get(&id).map(|entry| (id, entry.clone()))).collect()
            })
        })
        .await
    }

    async fn entries_with_status(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let (connector, statuses) = (connector.clone(), statuses.to_vec());
        self.blocking(move |inner| {
            inner.read(|doc| {
                doc.connectors
                    .get(&connector)
                    .map(|record| {
                        record
                            .entries
                            .values()
                            .filter(|entry| statuses.contains(&entry.status))
                            .take(limit)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default()
            })
        })
        .await
    }

    /// One pass over the ledgers held in memory (the file has no index).
    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let names: std::collections::HashSet<String> = names.iter().cloned().collect();
        self.blocking(move |inner| {
            inner.read(|doc| {
                let all = doc.connectors.iter().flat_map(|(id, record)| record.entries.values().map(move |e| (id, e)));
                all.filter(|(_, e)| names.contains(&e.file_source)).map(|(id, e)| (id.clone(), e.clone())).collect()
            })
        })
        .await
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.read(|doc| {
                let mut counts = BTreeMap::new();
                if let Some(record) = doc.connectors.get(&connector) {
                    for entry in record.entries.values() {
                        *counts.entry(entry.status).or_insert(0) += 1;
                    }
                }
                counts
            })
        })
        .await
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.write(|doc| {
                let Checkpoint { entries, connector: state, run, lease_owner } = checkpoint;
                if let Some(owner) = lease_owner
                    && !doc.connectors.get(&connector).is_some_and(|r| r.holds_lease(&owner))
                {
                    return Err(StateError::LeaseLost { connector, owner });
                }
                if entries.is_empty() && state.is_none() && run.is_none() {
                    return Ok(((), false));
                }
                let record = doc.connectors.entry(connector).or_default();
                for entry in entries {
                    record.entries.insert(entry.memory_id.clone(), entry);
                }
                if let Some(state) = state {
                    record.state = Some(state);
                }
                if let Some(run) = run {
                    record.upsert_run(run);
                }
                Ok(((), true))
            })
        })
        .await
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.read(|doc| {
                doc.connectors
                    .get(&connector)
                    .map(|record| record.runs.iter().rev().take(limit).cloned().collect())
                    .unwrap_or_default()
            })
        })
        .await
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.write(|doc| {
                let Some(record) = doc.connectors.get_mut(&connector) else {
                    return Ok(((), false));
                };
                if let Some(lease) = record.lease.as_ref().filter(|l| !l.is_expired_at(now)) {
                    return Err(StateError::Busy {
                        connector,
                        owner: lease.owner.clone(),
                        expires_at: lease.expires_at,
                    });
                }
                let changed = record.state.is_some() || record.lease.is_some() || !record.entries.is_empty();
                record.state = None;
                record.lease = None;
                record.entries.clear();
                Ok(((), changed))
            })
        })
        .await
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.read(|doc| doc.cache.get(&key).filter(|c| c.is_live_at(now)).map(|c| c.value.clone()))
        })
        .await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.blocking(move |inner| {
            inner.write(|doc| {
                // Expired values are dropped here so the file does not grow forever.
                let now = Utc::now();
                doc.cache.retain(|_, c| c.is_live_at(now));
                doc.cache.insert(key, CacheValue { value, expires_at });
                Ok(((), true))
            })
        })
        .await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.write(|doc| {
                let mut removed = 0;
                if let Some(record) = doc.connectors.get_mut(&connector) {
                    let kept_before = record.runs.len();
                    record.runs.retain(|run| run.started_at >= before);
                    removed = (kept_before - record.runs.len()) as u64;
                }
                Ok((removed, removed > 0))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;
