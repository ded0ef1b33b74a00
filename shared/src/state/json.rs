//! The JSON state store: the whole state in one human-readable file,
//! `{"version": 1, "connectors": {"<id>": {"state", "lease", "entries", "runs"}}}`.
//!
//! Durability: outside a run every change writes the complete file to
//! `<path>.tmp`, fsyncs it, renames it over `<path>` and fsyncs the
//! directory. While this store holds a connector's lease (a run), changes
//! are appended to `<path>.journal` instead, one checksummed record per
//! write, not fsynced (like SQLite's WAL at `synchronous=NORMAL`: a power
//! loss may lose the last records, never corrupts) ([`journal`]); the file is written whole again (compacted,
//! the journal deleted) when the last lease it holds is released, and
//! whenever the journal outgrows the file. So a run writes what changed,
//! not the whole ledger per checkpoint (decision 26), and after a crash at
//! any point (SIGKILL included) the state is the file plus the journal's
//! complete records: a write that was cut is not there, nothing is half
//! there. A corrupt file or journal is reported and never overwritten.
//!
//! Concurrency: writers (this process or another) exclude each other with an
//! exclusive lock on `<path>.lock`; under that lock a writer re-reads what
//! another writer changed since it was cached, so no update is lost and
//! lease acquisition is atomic across processes. Readers take no lock: the
//! file is only replaced (rename), the journal only grows, and a reader that
//! sees the file change while it reads the journal reads both again.
//!
//! Caching: the file and journal are parsed once and kept in memory; every
//! call checks with two `stat`s whether they are still the cached ones and
//! reads only what was appended to the journal. The check is exact because
//! the file is only ever replaced (new inode) and the cache keeps the files
//! it read open so their inode numbers cannot be reused. Editing the file in
//! place while a connector runs is detected through its length and mtime
//! only (best effort).

mod journal;
mod store;

use super::{CacheValue, ConnectorState, Lease, LedgerEntry, RunRecord, StateError};
use crate::ids::{ConnectorId, MemoryId, RunId};
use journal::{Change, StoredDigest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
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
/// A journal larger than this and than the file is folded into the file.
const COMPACT_AT_LEAST: u64 = 1 << 20;
/// Rounds of re-reading when the file was replaced while a reader read the journal.
const READ_ROUNDS: usize = 5;

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
    /// The ledger generation (see [`super::digest`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<StoredDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unconfirmed: Option<Vec<MemoryId>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ConnectorRecord {
    fn is_empty(&self) -> bool {
        self.state.is_none()
            && self.lease.is_none()
            && self.entries.is_empty()
            && self.runs.is_empty()
            && self.digest.is_none()
            && self.unconfirmed.is_none()
            && self.generation == 0
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

/// Identity of a file version on disk (see the module doc).
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

    /// The same file (it may have grown).
    fn same_file(&self, other: &Stamp) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// How far the cache has read the journal.
struct JournalRead {
    stamp: Stamp,
    /// Bytes of complete records (an unfinished record after them is not read).
    valid: u64,
    /// Kept open so its inode number stays taken (and appended to by writers).
    file: File,
}

/// The parsed file (and journal) and which versions of them those are.
struct Loaded {
    doc: Document,
    /// `None`: there was no file.
    stamp: Option<Stamp>,
    /// The file `doc` came from, kept open so its inode number stays taken.
    _pinned: Option<File>,
    journal: Option<JournalRead>,
    /// Something on disk is not encrypted although a cipher is configured.
    plain_on_disk: bool,
}

impl Loaded {
    fn journal_len(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.valid)
    }
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
    journal_path: PathBuf,
    lock_timeout: Duration,
    /// Encrypts the file at rest when set (`advanced.security.encrypt_secrets`).
    cipher: Option<super::cipher::StateCipher>,
    /// `None` until loaded, and again after a failed write (forces a re-read).
    cache: Mutex<Option<Loaded>>,
    /// Connectors whose lease this store holds: while any is held, writes
    /// go to the journal.
    held: Mutex<HashSet<ConnectorId>>,
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

/// The journal's path beside a state file (backup and restore need it too).
pub fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What a write does once it holds the lock and has looked at the document.
enum Outcome<T> {
    /// Nothing to write.
    Unchanged(T),
    Changed(T, Change),
}

impl Inner {
    fn new(path: &Path, lock_timeout: Duration) -> Self {
        Self {
            path: path.to_path_buf(),
            lock_path: with_suffix(path, ".lock"),
            temp_path: with_suffix(path, ".tmp"),
            journal_path: journal_path(path),
            lock_timeout,
            cipher: None,
            cache: Mutex::new(None),
            held: Mutex::new(HashSet::new()),
        }
    }

    fn io(&self, path: &Path, source: io::Error) -> StateError {
        StateError::Io { path: path.to_path_buf(), source }
    }

    fn corrupt(&self, path: &Path, detail: String) -> StateError {
        StateError::Corrupt { path: path.to_path_buf(), detail }
    }

    /// Reads from the cached document after making sure it is current.
    fn read<T>(&self, view: impl FnOnce(&Document) -> T) -> Result<T, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let loaded = self.refresh(&mut cache)?;
        Ok(view(&loaded.doc))
    }

    /// Decides under the file lock, on the current document, what to change,
    /// and makes it durable: appended to the journal while a lease is held
    /// here, else the whole file. `decide` must not mutate anything.
    fn write<T>(&self, decide: impl FnOnce(&Document) -> Result<Outcome<T>, StateError>) -> Result<T, StateError> {
        self.write_as(false, decide)
    }

    /// [`Inner::write`]; `starts_run`: the write takes a lease (the run it
    /// starts journals from its first write on).
    fn write_as<T>(
        &self,
        starts_run: bool,
        decide: impl FnOnce(&Document) -> Result<Outcome<T>, StateError>,
    ) -> Result<T, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = self.lock_file()?;
        let loaded = self.refresh(&mut cache)?;
        let (value, change) = match decide(&loaded.doc)? {
            Outcome::Unchanged(value) => (value, None),
            Outcome::Changed(value, change) => (value, Some(change)),
        };
        if let Some(change) = change {
            let journaled = (starts_run || self.journaling()) && loaded.stamp.is_some() && !loaded.plain_on_disk;
            let record = if journaled { Some(self.encode(&change)?) } else { None };
            change.apply(&mut loaded.doc);
            let written = match record {
                Some(record) => self.append(loaded, &record).and_then(|()| {
                    if loaded.journal_len() > COMPACT_AT_LEAST.max(loaded.stamp.as_ref().map_or(0, |s| s.len)) {
                        self.compact(loaded)
                    } else {
                        Ok(())
                    }
                }),
                None => self.compact(loaded),
            };
            if let Err(error) = written {
                // The cache may now hold a change the disk does not: forget it.
                *cache = None;
                return Err(error);
            }
        }
        drop(lock);
        Ok(value)
    }

    fn journaling(&self) -> bool {
        !self.held.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    fn encode(&self, change: &Change) -> Result<Vec<u8>, StateError> {
        journal::encode(change, self.cipher.as_ref())
            .map_err(|e| self.io(&self.journal_path, io::Error::other(format!("encode a journal record: {e}"))))
    }

    /// Folds the journal into the file (under the lock), if it has records.
    fn compact_now(&self) -> Result<(), StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = self.lock_file()?;
        let loaded = self.refresh(&mut cache)?;
        if (loaded.journal.is_some() || loaded.plain_on_disk)
            && let Err(error) = self.compact(loaded)
        {
            *cache = None;
            return Err(error);
        }
        drop(lock);
        Ok(())
    }

    /// Makes the cache match the disk: re-reads the file if it was replaced,
    /// and reads what was appended to the journal.
    fn refresh<'c>(&self, cache: &'c mut Option<Loaded>) -> Result<&'c mut Loaded, StateError> {
        for _ in 0..READ_ROUNDS {
            let on_disk = self.stat(&self.path)?;
            let loaded = match cache.take() {
                Some(loaded) if loaded.stamp == on_disk => loaded,
                _ => self.load()?,
            };
            let loaded = cache.insert(loaded);
            self.follow_journal(loaded)?;
            // Replaced while the journal was read: the journal may belong to the new file.
            if self.stat(&self.path)? == loaded.stamp {
                return match cache.as_mut() {
                    Some(loaded) => Ok(loaded),
                    None => unreachable!("inserted above"),
                };
            }
            *cache = None;
        }
        Err(self.io(&self.path, io::Error::other("the state file kept being replaced while it was read")))
    }

    fn stat(&self, path: &Path) -> Result<Option<Stamp>, StateError> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(Stamp::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(path, e)),
        }
    }

    fn load(&self) -> Result<Loaded, StateError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    doc: Document::empty(),
                    stamp: None,
                    _pinned: None,
                    journal: None,
                    plain_on_disk: false,
                });
            }
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let meta = file.metadata().map_err(|e| self.io(&self.path, e))?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(|e| self.io(&self.path, e))?;
        let plain_on_disk = self.cipher.is_some() && !super::cipher::is_encrypted(&bytes);
        let doc = decode(&self.path, &bytes, self.cipher.as_ref())?;
        Ok(Loaded { doc, stamp: Some(Stamp::of(&meta)), _pinned: Some(file), journal: None, plain_on_disk })
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

    /// Writes the whole document atomically (temp file, fsync, rename, fsync
    /// dir), then deletes the journal it now holds.
    fn compact(&self, loaded: &mut Loaded) -> Result<(), StateError> {
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
        loaded.plain_on_disk = false;
        let dir = parent_dir(&self.path);
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| self.io(&dir, e))?;
        if loaded.journal.take().is_some() || self.journal_path.exists() {
            match fs::remove_file(&self.journal_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&self.journal_path, e)),
            }
            File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| self.io(&dir, e))?;
        }
        Ok(())
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

#[cfg(test)]
mod tests;
