//! Marks kept apart from the ledger (decision 28): what a store that does
//! not write a `sending` mark as an entry keeps of it, and the compact form
//! in which DynamoDB keeps a run's marks in one item (the cost model sizes
//! that item with the same encoding).
//!
//! A mark is rebuilt into the entry every reader sees with
//! [`LedgerEntry::marked`] over the stored entry, so it keeps only what the
//! mark changes, plus the stored entry's status (`before`), which the
//! status counts (kept without the marks) need.

use super::{EntryStatus, LedgerEntry};
use crate::ids::{ContentHash, MemoryId};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// One memory's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub memory_id: MemoryId,
    /// The status of the stored entry it was made over (`None`: no entry).
    pub before: Option<EntryStatus>,
    pub file_source: String,
    pub hash: ContentHash,
    pub at: DateTime<Utc>,
}

impl Mark {
    /// The mark of an entry marked with [`LedgerEntry::marked`] over a stored
    /// entry of status `before`.
    pub fn of(marked: &LedgerEntry, before: Option<EntryStatus>) -> Self {
        Self {
            memory_id: marked.memory_id.clone(),
            before,
            file_source: marked.file_source.clone(),
            hash: marked.pending_hash.clone().unwrap_or_else(|| ContentHash::new("")),
            at: marked.last_ingested.unwrap_or(marked.first_seen),
        }
    }

    /// The entry readers see: the mark over the stored entry.
    pub fn entry(&self, stored: Option<&LedgerEntry>) -> LedgerEntry {
        LedgerEntry::marked(stored, &self.memory_id, &self.file_source, &self.hash, self.at)
    }
}

/// Adds `mark` to `open` unless a later mark of its memory is there: when
/// two runs' items both hold one, the newer wins.
pub fn keep_latest(open: &mut BTreeMap<MemoryId, Mark>, mark: Mark) {
    if open.get(&mark.memory_id).is_none_or(|m| m.at <= mark.at) {
        open.insert(mark.memory_id.clone(), mark);
    }
}

/// A status as one byte (`0`: none), as stored in DynamoDB's batch and mark records.
pub fn status_code(status: Option<EntryStatus>) -> u8 {
    status.and_then(|s| EntryStatus::ALL.iter().position(|a| *a == s)).map_or(0, |i| i as u8 + 1)
}

/// The status of a [`status_code`].
pub fn status_of(code: u8) -> Result<Option<EntryStatus>, String> {
    match code {
        0 => Ok(None),
        n => EntryStatus::ALL.get(usize::from(n) - 1).copied().map(Some).ok_or_else(|| format!("status code {n}")),
    }
}

const VERSION: u8 = 1;
/// The name is the set's prefix, the memory id and `.txt`.
const NAME_FROM_ID: u8 = 1;
/// The hash is 64 lowercase hex digits, kept as 32 bytes.
const HASH_BINARY: u8 = 2;

/// The name prefix most marks share: the first name without its
/// `<memory id>.txt` tail.
fn prefix(marks: &[Mark]) -> &str {
    marks.first().and_then(|m| m.file_source.strip_suffix(".txt")?.strip_suffix(m.memory_id.as_str())).unwrap_or("")
}

fn is_hex_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), String> {
    let len = u16::try_from(s.len()).map_err(|_| format!("{} bytes is too long for a mark", s.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The marks of one item: about 80 bytes a mark for names made from the id
/// and hex hashes (the connector's own), so a window of 10 fits in 1 KB.
pub fn encode(marks: &[Mark]) -> Result<Vec<u8>, String> {
    let prefix = prefix(marks);
    let mut out = vec![VERSION];
    put_str(&mut out, prefix)?;
    let count = u32::try_from(marks.len()).map_err(|_| "too many marks for one item".to_owned())?;
    out.extend_from_slice(&count.to_le_bytes());
    for mark in marks {
        put_str(&mut out, mark.memory_id.as_str())?;
        out.push(status_code(mark.before));
        let named = mark.file_source.len() == prefix.len() + mark.memory_id.as_str().len() + 4
            && mark.file_source.starts_with(prefix)
            && mark.file_source[prefix.len()..].strip_suffix(".txt") == Some(mark.memory_id.as_str());
        let binary = is_hex_hash(mark.hash.as_str());
        out.push(if named { NAME_FROM_ID } else { 0 } | if binary { HASH_BINARY } else { 0 });
        if !named {
            put_str(&mut out, &mark.file_source)?;
        }
        if binary {
            out.extend_from_slice(&hex::decode(mark.hash.as_str()).map_err(|e| e.to_string())?);
        } else {
            put_str(&mut out, mark.hash.as_str())?;
        }
        let nanos = mark.at.timestamp_nanos_opt().ok_or("a mark's time is out of range")?;
        out.extend_from_slice(&nanos.to_le_bytes());
    }
    Ok(out)
}

/// Reads what [`encode`] wrote; any other bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Vec<Mark>, String> {
    let mut reader = Reader(bytes);
    if reader.take(1)? != [VERSION] {
        return Err("marks of an unknown version".into());
    }
    let prefix = reader.string()?;
    let count = reader.take(4)?;
    let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let mut marks = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let memory_id = MemoryId::new(reader.string()?);
        let before = status_of(reader.take(1)?[0])?;
        let flags = reader.take(1)?[0];
        if flags & !(NAME_FROM_ID | HASH_BINARY) != 0 {
            return Err(format!("unknown mark flags {flags}"));
        }
        let file_source =
            if flags & NAME_FROM_ID != 0 { format!("{prefix}{}.txt", memory_id.as_str()) } else { reader.string()? };
        let hash = if flags & HASH_BINARY != 0 { hex::encode(reader.take(32)?) } else { reader.string()? };
        let mut nanos = [0u8; 8];
        nanos.copy_from_slice(reader.take(8)?);
        let at = DateTime::from_timestamp_nanos(i64::from_le_bytes(nanos));
        marks.push(Mark { memory_id, before, file_source, hash: ContentHash::new(hash), at });
    }
    if !reader.0.is_empty() {
        return Err("marks followed by stray bytes".into());
    }
    Ok(marks)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("marks cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("a mark holds text that is not UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: &str, file_source: &str, hash: &str, before: Option<EntryStatus>) -> Mark {
        Mark {
            memory_id: MemoryId::new(id),
            before,
            file_source: file_source.into(),
            hash: ContentHash::new(hash),
            at: DateTime::from_timestamp_nanos(1_764_567_890_123_456_789),
        }
    }

    #[test]
    fn marks_round_trip_whatever_their_names_and_hashes() {
        let hex = "ab".repeat(32);
        let marks = vec![
            mark("3f2a-1", "memory_ctx_3f2a-1.txt", &hex, None),
            mark("b", "memory_ctx_b.txt", "not hex", Some(EntryStatus::Processed)),
            mark("é/2", "memory_ctx_C3A92F2.txt", &hex.to_uppercase(), Some(EntryStatus::Failed)),
            mark("c", "notes/c.txt", &hex, Some(EntryStatus::Dead)),
        ];
        assert_eq!(decode(&encode(&marks).expect("encode")), Ok(marks));
        assert_eq!(decode(&encode(&[]).expect("encode")), Ok(Vec::new()));
    }

    #[test]
    fn a_window_of_the_connectors_own_marks_fits_in_one_write_unit() {
        let marks: Vec<Mark> = (0..10)
            .map(|i| {
                let id = format!("0b6f3c1e-5d2a-4f7b-9c8e-{i:012}");
                mark(&id, &format!("memory_personal-memories_{id}.txt"), &"0f".repeat(32), None)
            })
            .collect();
        let bytes = encode(&marks).expect("encode");
        assert!(bytes.len() < 900, "{} bytes", bytes.len());
    }

    #[test]
    fn damaged_marks_are_refused() {
        let bytes = encode(&[mark("a", "memory_x_a.txt", "h", None)]).expect("encode");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(decode(&bad).is_err());
    }
}
