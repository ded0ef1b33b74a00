//! The JSON store's journal: the changes made since the state file was last
//! written whole, one record per write, appended to `<path>.journal`; how a
//! reader follows it and a writer appends to it.
//!
//! A record is one line: 16 hex digits of the SHA-256 of the payload, a
//! space, the payload, `\n`. The payload is the [`Change`] as JSON, or (with
//! encryption at rest) base64 of the sealed JSON. A record without its
//! newline or with a wrong checksum at the end of the file is a write that
//! never finished (a crash): readers stop before it and the next writer cuts
//! it off. Anywhere else it is corruption.
//!
//! A change is the *result* of a write (the entries as written, the lease as
//! granted), never the conditional operation, so applying a journal again to
//! a state file that already holds it changes nothing: a crash between
//! writing the compacted file and deleting the journal is harmless.

use super::{ConnectorRecord, Document, Inner, JournalRead, Loaded, Stamp};
use crate::ids::ConnectorId;
use crate::state::StateError;
use crate::state::cipher::StateCipher;
use crate::state::digest::{DigestRoot, DigestWrite, ShardBytes};
use crate::state::{CacheValue, ConnectorState, Lease, LedgerEntry, RunRecord};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// One write's effect on the document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Change {
    Lease {
        connector: ConnectorId,
        lease: Option<Lease>,
    },
    Checkpoint {
        connector: ConnectorId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        entries: Vec<LedgerEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<Box<ConnectorState>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<Box<RunRecord>>,
        /// The ledger generation after this write, when it moved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<Box<StoredDigestWrite>>,
    },
    Reset {
        connector: ConnectorId,
    },
    CachePut {
        key: String,
        value: CacheValue,
        /// Values expired at this instant were dropped by the write.
        now: DateTime<Utc>,
    },
    PruneRuns {
        connector: ConnectorId,
        before: DateTime<Utc>,
    },
}

/// A connector's digest as the document keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredDigest {
    pub root: DigestRoot,
    /// Shard number -> records (16 bytes each).
    #[serde(default)]
    pub shards: BTreeMap<u16, ShardBytes>,
}

/// [`DigestWrite`] as a journal record holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredDigestWrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<StoredDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<Vec<crate::ids::MemoryId>>,
}

impl From<DigestWrite> for StoredDigestWrite {
    fn from(write: DigestWrite) -> Self {
        let digest = write.digest.map(|(root, shards)| StoredDigest {
            root,
            shards: shards.into_iter().map(|s| (s.shard, ShardBytes(s.to_bytes()))).collect(),
        });
        Self { digest, unconfirmed: write.unconfirmed }
    }
}

impl Change {
    /// Applies the change (the same code for a live write and a replay).
    pub fn apply(self, doc: &mut Document) {
        match self {
            Change::Lease { connector, lease } => doc.connectors.entry(connector).or_default().lease = lease,
            Change::Checkpoint { connector, entries, state, run, generation, digest } => {
                let record = doc.connectors.entry(connector).or_default();
                for entry in entries {
                    record.entries.insert(entry.memory_id.clone(), entry);
                }
                if let Some(state) = state {
                    record.state = Some(*state);
                }
                if let Some(run) = run {
                    record.upsert_run(*run);
                }
                if let Some(generation) = generation {
                    record.generation = generation;
                }
                if let Some(write) = digest {
                    apply_digest(record, *write);
                }
            }
            Change::Reset { connector } => {
                if let Some(record) = doc.connectors.get_mut(&connector) {
                    record.state = None;
                    record.lease = None;
                    record.entries.clear();
                    record.generation = 0;
                    record.digest = None;
                    record.unconfirmed = None;
                }
            }
            Change::CachePut { key, value, now } => {
                doc.cache.retain(|_, c| c.is_live_at(now));
                doc.cache.insert(key, value);
            }
            Change::PruneRuns { connector, before } => {
                if let Some(record) = doc.connectors.get_mut(&connector) {
                    record.runs.retain(|run| run.started_at >= before);
                }
            }
        }
        doc.connectors.retain(|_, record| !record.is_empty());
    }
}

fn apply_digest(record: &mut ConnectorRecord, write: StoredDigestWrite) {
    record.unconfirmed = write.unconfirmed;
    match write.digest {
        None => record.digest = None,
        Some(new) => match &mut record.digest {
            Some(kept) => {
                kept.root = new.root;
                kept.shards.extend(new.shards);
            }
            None => record.digest = Some(new),
        },
    }
}

fn checksum(payload: &[u8]) -> String {
    hex::encode(&Sha256::digest(payload)[..8])
}

/// One record line (with its newline).
pub(super) fn encode(change: &Change, cipher: Option<&StateCipher>) -> Result<Vec<u8>, String> {
    let json = serde_json::to_vec(change).map_err(|e| e.to_string())?;
    let payload = match cipher {
        Some(cipher) => STANDARD.encode(cipher.encrypt(&json).map_err(|e| e.to_string())?).into_bytes(),
        None => json,
    };
    let mut line = Vec::with_capacity(payload.len() + 18);
    line.extend_from_slice(checksum(&payload).as_bytes());
    line.push(b' ');
    line.extend_from_slice(&payload);
    line.push(b'\n');
    Ok(line)
}

/// The records of `bytes` that are complete, and how many bytes they take.
/// A bad record at the very end is an unfinished write and ends the list;
/// elsewhere it is an error naming the record.
pub(super) fn decode(bytes: &[u8], cipher: Option<&StateCipher>) -> Result<(Vec<Change>, usize), String> {
    let mut changes = Vec::new();
    let mut used = 0;
    let mut rest = bytes;
    let mut number = 0usize;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        number += 1;
        let line = &rest[..end];
        let is_last = end + 1 == rest.len();
        match decode_line(line, cipher) {
            Ok(change) => changes.push(change),
            // A checksum that does not match on the last line: the write was cut.
            Err(LineError::Torn) if is_last => return Ok((changes, used)),
            Err(LineError::Torn) => return Err(format!("journal record {number} is damaged (checksum)")),
            Err(LineError::Bad(why)) => return Err(format!("journal record {number}: {why}")),
        }
        used += end + 1;
        rest = &rest[end + 1..];
    }
    Ok((changes, used))
}

enum LineError {
    Torn,
    Bad(String),
}

fn decode_line(line: &[u8], cipher: Option<&StateCipher>) -> Result<Change, LineError> {
    if line.len() < 17 || line[16] != b' ' {
        return Err(LineError::Torn);
    }
    let (sum, payload) = (&line[..16], &line[17..]);
    if sum != checksum(payload).as_bytes() {
        return Err(LineError::Torn);
    }
    let json = match payload.first() {
        Some(b'{') => payload.to_vec(),
        _ => {
            let sealed = STANDARD.decode(payload).map_err(|e| LineError::Bad(format!("not base64: {e}")))?;
            let plain = crate::state::cipher::open_bytes(cipher, &sealed).map_err(|e| LineError::Bad(e.to_string()))?;
            plain.ok_or_else(|| LineError::Bad("neither JSON nor an encrypted record".into()))?
        }
    };
    serde_json::from_slice(&json).map_err(|e| LineError::Bad(e.to_string()))
}

/// Whether `bytes` hold a record that is not encrypted (a cipher was
/// configured after it was written: the next write compacts, encrypting it).
pub(super) fn has_plain_records(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == b'\n').any(|line| line.get(17) == Some(&b'{'))
}

impl Inner {
    /// Applies the journal's records the cache has not seen yet.
    pub(super) fn follow_journal(&self, loaded: &mut Loaded) -> Result<(), StateError> {
        let on_disk = self.stat(&self.journal_path)?;
        let from = match (&loaded.journal, &on_disk) {
            (None, None) => return Ok(()),
            (Some(read), Some(now)) if read.stamp.same_file(now) && now.len >= read.valid => read.valid,
            (Some(_), _) => {
                // Deleted or replaced (a compaction by another writer, which
                // also replaced the file): read both again.
                *loaded = self.load()?;
                if on_disk.is_none() {
                    return Ok(());
                }
                0
            }
            (None, Some(_)) => 0,
        };
        let mut file = match &mut loaded.journal {
            Some(read) if from > 0 => read.file.try_clone().map_err(|e| self.io(&self.journal_path, e))?,
            _ => match OpenOptions::new().read(true).append(true).open(&self.journal_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(self.io(&self.journal_path, e)),
            },
        };
        let meta = file.metadata().map_err(|e| self.io(&self.journal_path, e))?;
        if meta.len() == from && loaded.journal.is_some() {
            return Ok(());
        }
        file.seek(SeekFrom::Start(from)).map_err(|e| self.io(&self.journal_path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| self.io(&self.journal_path, e))?;
        let (changes, used) =
            decode(&bytes, self.cipher.as_ref()).map_err(|detail| self.corrupt(&self.journal_path, detail))?;
        if self.cipher.is_some() && has_plain_records(&bytes[..used]) {
            loaded.plain_on_disk = true;
        }
        for change in changes {
            change.apply(&mut loaded.doc);
        }
        let valid = from + used as u64;
        loaded.journal = Some(JournalRead { stamp: Stamp::of(&meta), valid, file });
        Ok(())
    }

    /// Appends one record to the journal (creating it), cutting off an
    /// unfinished record a crash left first. Not synced to disk (as SQLite's
    /// WAL at `synchronous=NORMAL`): a process crash loses nothing written, a
    /// power loss may lose the last records but never leaves a damaged one
    /// that is read; the fold into the file syncs.
    pub(super) fn append(&self, loaded: &mut Loaded, record: &[u8]) -> Result<(), StateError> {
        let err = |e: io::Error| self.io(&self.journal_path, e);
        let read = match loaded.journal.take() {
            Some(read) => read,
            None => {
                let file = crate::state::files::options()
                    .read(true)
                    .append(true)
                    .create(true)
                    .truncate(false)
                    .open(&self.journal_path)
                    .map_err(err)?;
                if let Ok(meta) = fs::metadata(&self.path) {
                    file.set_permissions(meta.permissions()).map_err(err)?;
                }
                let meta = file.metadata().map_err(err)?;
                JournalRead { stamp: Stamp::of(&meta), valid: 0, file }
            }
        };
        let JournalRead { valid, file, .. } = read;
        if file.metadata().map_err(err)?.len() != valid {
            file.set_len(valid).map_err(err)?;
        }
        let mut writer = &file;
        writer.write_all(record).map_err(err)?;
        let mut stamp = Stamp::of(&file.metadata().map_err(err)?);
        stamp.len = valid + record.len() as u64;
        loaded.journal = Some(JournalRead { stamp, valid: valid + record.len() as u64, file });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u64) -> Change {
        Change::PruneRuns {
            connector: ConnectorId::new("c"),
            before: DateTime::from_timestamp(n as i64, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn records_round_trip_and_a_cut_tail_is_not_a_record() {
        let cipher = StateCipher::from_key("a-32-character-key-for-the-tests!");
        for c in [None, Some(&cipher)] {
            let mut bytes = encode(&change(1), c).expect("encode");
            bytes.extend(encode(&change(2), c).expect("encode"));
            let whole = bytes.len();
            let (changes, used) = decode(&bytes, c).expect("decode");
            assert_eq!((changes.len(), used), (2, whole));
            // Cut inside the last record, with and without its newline.
            for cut in [whole - 1, whole - 5] {
                let (changes, used) = decode(&bytes[..cut], c).expect("a cut tail is no error");
                assert_eq!(changes.len(), 1);
                assert!(used < cut);
            }
            let mut torn = bytes.clone();
            torn[whole - 3] ^= 1;
            assert_eq!(decode(&torn, c).expect("torn last record").0.len(), 1);
            let mut damaged = bytes.clone();
            damaged[20] ^= 1;
            assert!(decode(&damaged, c).is_err(), "a damaged record before the last one is corruption");
        }
        let sealed = encode(&change(3), Some(&cipher)).expect("encode");
        assert!(!has_plain_records(&sealed) && has_plain_records(&encode(&change(3), None).expect("encode")));
        assert!(decode(&sealed, None).is_err(), "an encrypted journal needs the key");
    }
}
