//! Tolerant reading of a `GET /memory/{ctx}` answer (`docs/memory-api.md`,
//! "The untidiness it accepts"): one untidy item never fails the page; it becomes a
//! [`RejectedMemory`] and the rest are read.
//!
//! Each item is read into a `serde_json::Value` (one at a time) and each
//! field is then taken leniently, because real deployments disagree on types (string or
//! numeric ids, booleans as 0/1, timestamps with or without a zone).

use super::model::{FetchedPage, GeoPoint, Memory, RejectedMemory};
use crate::ids::MemoryId;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;

/// Integers above this cannot be told apart once JSON gave them as floats.
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// Reads one list answer. `Err` only when the body is not JSON or has no
/// `memories` array; item-level problems become [`FetchedPage::rejected`].
/// `attempts` is 1: the client sets the real number of requests.
pub fn parse_page(body: &[u8], limit: u32) -> Result<FetchedPage, String> {
    parse_body(body, limit).map_err(|e| match e {
        BodyError::NotJson(reason) => format!("the body is not JSON ({reason})"),
        BodyError::Shape(reason) => reason,
    })
}

/// Why a body is not a page: the client retries the first (a proxy's page,
/// a cut answer), not the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    NotJson(String),
    Shape(String),
}

/// Reads a page from the body's bytes. The whole body is checked as JSON but
/// never held as one `Value` tree: each item stays a slice of the body until
/// it is read, so the peak memory is about the body plus the memories (a
/// 10,000-memory page as one tree cost ~20 MB more).
///
/// Bytes JSON does not allow (not UTF-8, or a raw control character inside
/// a string) fail only the items that hold them: the body is then read from
/// a copy with each replaced (U+FFFD), and an item that contains one is
/// rejected with its id and the byte's offset.
pub(crate) fn parse_body(body: &[u8], limit: u32) -> Result<FetchedPage, BodyError> {
    if let Ok(text) = std::str::from_utf8(body) {
        match parse_text(text, &Replacements::default(), limit) {
            Err(BodyError::NotJson(reason)) if reason.starts_with("control character") => {}
            read => return read,
        }
    }
    let (text, replacements) = Replacements::sanitize(body);
    parse_text(&text, &replacements, limit)
}

/// Where a sanitized copy of the body replaced bytes JSON does not allow.
#[derive(Debug, Default)]
struct Replacements {
    /// (offset in the copy, offset in the body, bytes replaced), in order.
    at: Vec<(usize, usize, usize)>,
}

impl Replacements {
    /// The body as text, each invalid UTF-8 sequence and each raw control
    /// character inside a string replaced by U+FFFD. One pass, linear.
    fn sanitize(body: &[u8]) -> (String, Self) {
        let mut text = String::with_capacity(body.len() + 16);
        let mut at = Vec::new();
        let mut replace = |text: &mut String, offset: usize, len: usize| {
            at.push((text.len(), offset, len));
            text.push(char::REPLACEMENT_CHARACTER);
        };
        let (mut offset, mut in_string, mut escaped) = (0, false, false);
        for chunk in body.utf8_chunks() {
            for c in chunk.valid().chars() {
                if in_string && u32::from(c) < 0x20 {
                    replace(&mut text, offset, 1);
                    offset += 1;
                    escaped = false;
                    continue;
                }
                if in_string {
                    (escaped, in_string) = (!escaped && c == '\\', escaped || c != '"');
                } else {
                    in_string = c == '"';
                }
                text.push(c);
                offset += c.len_utf8();
            }
            let invalid = chunk.invalid().len();
            if invalid > 0 {
                replace(&mut text, offset, invalid);
                offset += invalid;
                escaped = false;
            }
        }
        (text, Self { at })
    }

    /// The first replaced byte inside `range` of the copy, as an offset in the body.
    fn first_in(&self, range: std::ops::Range<usize>) -> Option<usize> {
        let first = self.at.partition_point(|&(copy, _, _)| copy < range.start);
        self.at.get(first).filter(|&&(copy, _, _)| copy < range.end).map(|&(_, body, _)| body)
    }

    /// The body offset of an offset in the copy.
    fn body_offset(&self, copy_offset: usize) -> usize {
        let before = self.at.partition_point(|&(copy, _, _)| copy < copy_offset);
        self.at[..before]
            .iter()
            .fold(copy_offset, |offset, &(_, _, replaced)| offset + replaced - char::REPLACEMENT_CHARACTER.len_utf8())
    }
}

fn parse_text(text: &str, replacements: &Replacements, limit: u32) -> Result<FetchedPage, BodyError> {
    let top: &RawValue = serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let kind = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).map_or("unreadable JSON", |v| json_kind(&v));
    let mut fields: BTreeMap<String, &RawValue> = serde_json::from_str(top.get())
        .map_err(|_| BodyError::Shape(format!("expected a JSON object with a `memories` array, got {}", kind(top))))?;
    let Some(memories) = fields.remove("memories") else {
        return Err(BodyError::Shape("the JSON object has no `memories` array".to_owned()));
    };
    let items: Vec<&RawValue> = serde_json::from_str(memories.get())
        .map_err(|_| BodyError::Shape(format!("`memories` is {}, not an array", kind(memories))))?;
    let values = items.iter().map(|raw| read_raw_item(text, raw, replacements));
    Ok(parse_items(values, limit))
}

/// One item of the body as a `Value`, or why it cannot be one: bytes that
/// are not UTF-8, nesting past serde_json's limit, a lone surrogate escape.
fn read_raw_item(text: &str, raw: &RawValue, replacements: &Replacements) -> Result<Value, (Option<String>, String)> {
    // The item is a slice of `text` (borrowed by the deserializer).
    let start = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let at = replacements.body_offset(start);
    if let Some(bad) = replacements.first_in(start..start + raw.get().len()) {
        return Err((
            shallow_id(raw),
            format!(
                "the item (at byte {at} of the body) holds bytes JSON does not allow (not UTF-8, or a raw control \
                 character in a string), the first at byte {bad}"
            ),
        ));
    }
    serde_json::from_str::<Value>(raw.get()).map_err(|e| {
        let message = e.to_string();
        let reason = message.split(" at line ").next().unwrap_or(&message);
        // serde_json names a lone surrogate by what it expected next.
        let hint = if reason.contains("surrogate") || reason.contains("hex escape") {
            " (a \\u escape that is half of a UTF-16 surrogate pair, which no text can hold)"
        } else {
            ""
        };
        (shallow_id(raw), format!("the item (at byte {at} of the body) is not readable JSON: {reason}{hint}"))
    })
}

/// The id of an item that cannot be read whole, read from its top level
/// alone (its other fields stay unread).
fn shallow_id(raw: &RawValue) -> Option<String> {
    let fields: HashMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    let id = serde_json::from_str::<Value>(fields.get("id")?.get()).ok()?;
    read_id(Some(&id)).ok()
}

/// [`parse_page`] for a body already read as JSON.
#[allow(dead_code)] // kept for callers that hold a `Value`
pub(crate) fn parse_value(value: Value, limit: u32) -> Result<FetchedPage, String> {
    let Value::Object(mut top) = value else {
        return Err(format!("expected a JSON object with a `memories` array, got {}", json_kind(&value)));
    };
    let items = match top.remove("memories") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("`memories` is {}, not an array", json_kind(&other))),
        None => return Err("the JSON object has no `memories` array".to_owned()),
    };
    Ok(parse_items(items.into_iter().map(Ok), limit))
}

/// An item as JSON, or (its id if readable, why it is not readable).
type RawItem = Result<Value, (Option<String>, String)>;

fn parse_items(items: impl ExactSizeIterator<Item = RawItem>, limit: u32) -> FetchedPage {
    let possibly_truncated = items.len() >= limit as usize;
    let mut page = FetchedPage { possibly_truncated, attempts: 1, ..FetchedPage::default() };
    page.memories.reserve(items.len());
    // The memories kept so far, found through their ids: (position in
    // `page.memories`, index of the item). 16 bytes a memory and no copy of
    // its id, at the peak of a run (the body and the memories both held).
    let ids = std::hash::RandomState::new();
    let mut seen: hashbrown::HashTable<(usize, usize)> = hashbrown::HashTable::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(parse_item) {
            Ok(memory) => {
                let hash = ids.hash_one(memory.id.as_str());
                let kept = &page.memories;
                match seen.find(hash, |&(at, _)| kept[at].id == memory.id) {
                    Some(&(_, first)) => page.rejected.push(RejectedMemory {
                        index,
                        id: Some(memory.id.to_string()),
                        reason: format!(
                            "duplicate id: item #{first} of the same answer has it too (the first one was kept)"
                        ),
                    }),
                    None => {
                        seen.insert_unique(hash, (kept.len(), index), |&(at, _)| ids.hash_one(kept[at].id.as_str()));
                        page.memories.push(memory);
                    }
                }
            }
            Err((id, reason)) => page.rejected.push(RejectedMemory { index, id, reason }),
        }
    }
    page
}

/// One item, or the id (when readable) and the reason it was rejected.
fn parse_item(item: Value) -> Result<Memory, (Option<String>, String)> {
    let Value::Object(fields) = item else {
        return Err((None, format!("the item is {}, not an object", json_kind(&item))));
    };
    let id = read_id(fields.get("id"))?;
    Ok(Memory {
        id: MemoryId::new(id),
        kind: text(&fields, "type").map(|k| k.trim().to_owned()),
        audio: flag(fields.get("audio")),
        image: flag(fields.get("image")),
        transcript: text(&fields, "transcript").map(str::to_owned),
        location: location(&fields),
        created_at: fields.get("created_at").and_then(timestamp),
        updated_at: fields.get("updated_at").and_then(timestamp),
        gcs_uri: text(&fields, "gcs_uri").map(str::to_owned),
        gcs_uri_img: text(&fields, "gcs_uri_img").map(str::to_owned),
    })
}

/// A string id as it is, a number as its decimal string (`12.0` -> `"12"`).
fn read_id(value: Option<&Value>) -> Result<String, (Option<String>, String)> {
    match value {
        None | Some(Value::Null) => Err((None, "the item has no id".to_owned())),
        Some(Value::String(s)) if s.trim().is_empty() => Err((None, "the item's id is empty".to_owned())),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(v.to_string());
            }
            if let Some(v) = n.as_i64() {
                return Ok(v.to_string());
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < MAX_EXACT_FLOAT_INTEGER => Ok(format!("{f:.0}")),
                Some(f) if f.fract() == 0.0 => Err((
                    Some(n.to_string()),
                    "the numeric id is too large to be read exactly; send it as a string".to_owned(),
                )),
                // A fractional id is odd but unambiguous: keep JSON's own spelling.
                _ => Ok(n.to_string()),
            }
        }
        Some(other) => Err((None, format!("the item's id is {}, not a string or a number", json_kind(other)))),
    }
}

/// A non-blank string field; `""`, whitespace, null, missing or another type
/// all mean "nothing".
fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match fields.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    }
}

/// `true`/`false`, `1`/`0` (numbers or strings); anything else is `false`.
fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

/// A place only when both coordinates are real, in range, and not `0,0`
/// ("unknown", not the Gulf of Guinea).
fn location(fields: &Map<String, Value>) -> Option<GeoPoint> {
    let lat = coordinate(fields.get("location_lat"))?;
    let lon = coordinate(fields.get("location_lon"))?;
    let in_range = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
    (in_range && !(lat == 0.0 && lon == 0.0)).then_some(GeoPoint { lat, lon })
}

fn coordinate(value: Option<&Value>) -> Option<f64> {
    let number = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

/// RFC 3339 (any offset, fractional seconds), or a naive date-time read as
/// UTC (`T` or space between date and time), or epoch seconds/milliseconds.
/// Anything else is `None`: a memory without a readable time is still a memory.
fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => parse_timestamp(s),
        Value::Number(n) => {
            let secs = n.as_f64()?;
            // Past 1e11 seconds (year 5138) it can only be milliseconds.
            let millis = if secs.abs() >= 1e11 { secs } else { secs * 1000.0 };
            if !millis.is_finite() || millis.abs() > i64::MAX as f64 {
                return None;
            }
            DateTime::from_timestamp_millis(millis as i64)
        }
        _ => None,
    }
}

/// The string forms a memory's `created_at`/`updated_at` come in (see
/// [`parse_page`]); `None` when it is none of them. Public so that the Memory
/// API simulator reads the times it serves exactly as the client does.
pub fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Some(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return Some(naive.and_utc());
        }
    }
    // "2025-12-18 14:30:00+01:00" / "...Z": RFC 3339 with a space.
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.fZ"] {
        if let Ok(at) = DateTime::parse_from_str(s, format) {
            return Some(at.with_timezone(&Utc));
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests;
