//! Memory -> document: the text LightRAG receives, its content hash, and the
//! `file_source` that names it.
//!
//! Everything here is a pure function of the memory and the transformation
//! settings: no clock, no run id, no map iteration order. The same memory
//! always yields byte-identical text, so its hash can drive change detection.

mod render;
mod tags;

pub use render::{Facts, Rendered, facts, render, waits_for_transcript};
pub use tags::extract_tags;

use crate::ids::ContentHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What enrichment added to one memory (made by `enrich`, read by the
/// renderer); every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrichment {
    /// Automatic transcription of the audio (used only while the Memory API has no transcript).
    pub transcript: Option<String>,
    /// A description of the photo.
    pub image_description: Option<String>,
    /// A place name for the coordinates.
    pub place: Option<String>,
}

impl Enrichment {
    pub fn is_empty(&self) -> bool {
        self.transcript.is_none() && self.image_description.is_none() && self.place.is_none()
    }
}

/// A document ready for the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The stable name of the memory in LightRAG (see [`file_source`]).
    pub file_source: String,
    pub text: String,
    pub hash: ContentHash,
}

impl Document {
    pub fn new(file_source: String, text: String) -> Self {
        let hash = content_hash(&text);
        Self { file_source, text, hash }
    }
}

/// Hex SHA-256 of a document's text.
pub fn content_hash(text: &str) -> ContentHash {
    ContentHash::new(hex::encode(Sha256::digest(text.as_bytes())))
}

/// The longest escaped id kept verbatim in a file name; longer ids are cut
/// and suffixed with the SHA-256 of the whole id, so names stay unique and
/// below the 255-byte file-name limit of common file systems (at most
/// 7 + 96 + 1 + 96 + 4 = 204 bytes).
const MAX_ESCAPED_PART: usize = 96;

/// The `file_source` of a memory: `memory_<ctx>_<id>.txt`, with both parts
/// escaped so that the basename is unique per (context, memory id), has no
/// path separator or control character, and is bounded in length.
///
/// Escaping keeps `[A-Za-z0-9-]` and writes every other byte as `%XX`, so `_`
/// can only be the separator and `.` only the extension's. LightRAG keeps the
/// basename as the document's identity (`doc-` + md5(basename)).
///
/// This is the name of a memory the ledger has not seen; a memory in the
/// ledger keeps the name stored there (decision 0001).
pub fn file_source(context_id: &str, memory_id: &str) -> String {
    format!("{}{}.txt", name_prefix(context_id), escape_part(memory_id))
}

/// How every document name of context `context_id` starts (no other
/// context's names start so: an escaped part holds no `_`).
pub fn name_prefix(context_id: &str) -> String {
    format!("memory_{}_", escape_part(context_id))
}

fn escape_part(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.len() <= MAX_ESCAPED_PART {
        return out;
    }
    // `~` never appears in an escaped part, so a cut name cannot equal a whole
    // one. The whole digest: ids are chosen by whoever writes the Memory API,
    // and 64 bits of it fell to a birthday search in minutes (decision 0001).
    let digest = hex::encode(Sha256::digest(raw.as_bytes()));
    let mut cut = MAX_ESCAPED_PART - 1 - digest.len();
    while !out.is_char_boundary(cut) || out[..cut].ends_with('%') || out[..cut.saturating_sub(1)].ends_with('%') {
        cut -= 1;
    }
    format!("{}~{digest}", &out[..cut])
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_cannot_collide() {
        assert_ne!(file_source("a_b", "c"), file_source("a", "b_c"));
        assert_ne!(file_source("a", "b.txt"), file_source("a", "b%2Etxt"));
    }

    #[test]
    fn long_ids_are_bounded_and_unique() {
        let a = "x".repeat(5000);
        let b = format!("{}y", "x".repeat(4999));
        let (fa, fb) = (file_source("c", &a), file_source("c", &b));
        assert!(fa.len() < 200, "{}", fa.len());
        assert_ne!(fa, fb);
        let emoji = "🎉".repeat(100);
        assert!(file_source("c", &emoji).len() < 200);
    }

    #[test]
    fn ids_that_collided_under_a_64_bit_suffix_get_different_names() {
        // Found by a birthday search (1.5e9 SHA-256 evaluations, minutes on
        // two cores): both ids hashed to the suffix 12c9131022e0e8a5.
        let a = format!("{}6a34ccf462cf0da7", "a".repeat(81));
        let b = format!("{}7c0b9c90a57b9bf2", "a".repeat(81));
        assert_eq!(hex::encode(&Sha256::digest(a.as_bytes())[..8]), hex::encode(&Sha256::digest(b.as_bytes())[..8]));
        assert_ne!(file_source("CTX", &a), file_source("CTX", &b));
        assert!(file_source("CTX", &a).ends_with(&format!("~{}.txt", hex::encode(Sha256::digest(a.as_bytes())))));
    }

    #[test]
    fn names_fit_a_file_system_name_whatever_the_ids() {
        for ctx in ["C", &"c".repeat(96), &"é".repeat(400)] {
            for id in ["1", &"x".repeat(96), &"x".repeat(97), &"%".repeat(40), &"🎉".repeat(300)] {
                let name = file_source(ctx, id);
                assert!(name.len() <= 204, "{} bytes", name.len());
            }
        }
    }

    #[test]
    fn hash_is_of_the_text() {
        assert_eq!(content_hash("a"), content_hash("a"));
        assert_ne!(content_hash("a"), content_hash("b"));
        assert_eq!(content_hash("").as_str().len(), 64);
    }
}
