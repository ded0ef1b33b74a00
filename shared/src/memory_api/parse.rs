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
pub(crate) fn parse_body(body: &[u8], limit: u32) -> Result<FetchedPage, BodyError> {
    let top: &RawValue = serde_json::from_slice(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let kind = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).map_or("unreadable JSON", |v| json_kind(&v));
    let mut fields: BTreeMap<String, &RawValue> = serde_json::from_str(top.get())
        .map_err(|_| BodyError::Shape(format!("expected a JSON object with a `memories` array, got {}", kind(top))))?;
    let Some(memories) = fields.remove("memories") else {
        return Err(BodyError::Shape("the JSON object has no `memories` array".to_owned()));
    };
    let items: Vec<&RawValue> = serde_json::from_str(memories.get())
        .map_err(|_| BodyError::Shape(format!("`memories` is {}, not an array", kind(memories))))?;
    // Each slice is valid JSON (the body parsed), so reading it cannot fail.
    let values = items.iter().map(|raw| serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null));
    Ok(parse_items(values, limit))
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
    Ok(parse_items(items.into_iter(), limit))
}

fn parse_items(items: impl ExactSizeIterator<Item = Value>, limit: u32) -> FetchedPage {
    let possibly_truncated = items.len() >= limit as usize;
    let mut page = FetchedPage { possibly_truncated, attempts: 1, ..FetchedPage::default() };
    page.memories.reserve(items.len());
    // id -> index of the item that was kept for it.
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match parse_item(item) {
            Ok(memory) => match seen.get(memory.id.as_str()) {
                Some(first) => page.rejected.push(RejectedMemory {
                    index,
                    id: Some(memory.id.to_string()),
                    reason: format!(
                        "duplicate id: item #{first} of the same answer has it too (the first one was kept)"
                    ),
                }),
                None => {
                    seen.insert(memory.id.to_string(), index);
                    page.memories.push(memory);
                }
            },
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
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn page(items: Value) -> FetchedPage {
        let body = serde_json::to_vec(&json!({ "memories": items })).unwrap();
        parse_page(&body, 100).unwrap()
    }

    fn one(item: Value) -> Memory {
        let page = page(json!([item]));
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        page.memories.into_iter().next().unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn body_errors_tell_not_json_from_wrong_shape() {
        assert!(matches!(parse_body(b"<html>502</html>", 10), Err(BodyError::NotJson(_))));
        assert!(matches!(parse_body(br#"{"memories": [1, "#, 10), Err(BodyError::NotJson(_))));
        assert_eq!(
            parse_body(b"[1, 2]", 10).unwrap_err(),
            BodyError::Shape("expected a JSON object with a `memories` array, got an array".into())
        );
        assert_eq!(
            parse_body(br#"{"memories": {"a": 1}}"#, 10).unwrap_err(),
            BodyError::Shape("`memories` is an object, not an array".into())
        );
        assert!(matches!(parse_body(br#"{"items": []}"#, 10), Err(BodyError::Shape(_))));
    }

    #[test]
    fn body_is_read_item_by_item_like_a_value_tree() {
        // An escaped key and a repeated key read as serde_json reads them (last one wins).
        let body = br#"{"memo\u0072ies": [{"id": "a", "transcript": "x"}, 7], "memories": [{"id": 12, "transcript": "t\u00e9"}, "bad"]}"#;
        let page = parse_body(body, 10).unwrap();
        let value: Value = serde_json::from_slice(body).unwrap();
        let tree = parse_value(value, 10).unwrap();
        assert_eq!(page.memories, tree.memories);
        assert_eq!(page.rejected.len(), tree.rejected.len());
        assert_eq!(page.memories[0].id.as_str(), "12");
        assert_eq!(page.memories[0].transcript.as_deref(), Some("t\u{e9}"));
    }

    #[test]
    fn the_documented_example_reads_fully() {
        let body = br#"{"memories":[{"id":"1234567890","type":"record","audio":true,"image":false,
            "transcript":"Met Anna at the bakery, she recommended #sourdough",
            "location_lat":52.52,"location_lon":13.405,
            "created_at":"2025-12-18T14:30:00Z","updated_at":"2025-12-18T14:35:10Z",
            "gcs_uri":"gs://bucket/audio/1234567890.webm","gcs_uri_img":null}],"count":1}"#;
        let page = parse_page(body, 10).unwrap();
        assert_eq!(page.rejected, vec![]);
        assert!(!page.possibly_truncated);
        assert_eq!(page.attempts, 1);
        assert_eq!(
            page.memories,
            vec![Memory {
                id: MemoryId::new("1234567890"),
                kind: Some("record".into()),
                audio: true,
                image: false,
                transcript: Some("Met Anna at the bakery, she recommended #sourdough".into()),
                location: Some(GeoPoint { lat: 52.52, lon: 13.405 }),
                created_at: Some(utc(2025, 12, 18, 14, 30, 0)),
                updated_at: Some(utc(2025, 12, 18, 14, 35, 10)),
                gcs_uri: Some("gs://bucket/audio/1234567890.webm".into()),
                gcs_uri_img: None,
            }]
        );
    }

    #[test]
    fn count_may_be_missing_and_unknown_fields_are_ignored() {
        let body = br#"{"memories":[{"id":"a","mood":"happy","device":{"os":"android"},"tags":[1,2]}],
            "next":null,"server":"v2"}"#;
        let page = parse_page(body, 10).unwrap();
        assert_eq!(page.memories.len(), 1);
        assert_eq!(page.memories[0].id.as_str(), "a");
        assert!(page.rejected.is_empty());
    }

    #[test]
    fn a_minimal_item_has_nothing_but_its_id() {
        let m = one(json!({"id": "x"}));
        assert_eq!(m.kind, None);
        assert!(!m.audio && !m.image);
        assert_eq!((m.transcript, m.location, m.created_at, m.updated_at), (None, None, None, None));
        assert_eq!((m.gcs_uri, m.gcs_uri_img), (None, None));
    }

    #[test]
    fn empty_transcripts_are_none_and_real_ones_are_kept_verbatim() {
        for blank in [json!(""), json!("   \n\t "), Value::Null, json!(42), json!(["a"])] {
            assert_eq!(one(json!({"id": "1", "transcript": blank})).transcript, None, "{blank}");
        }
        assert_eq!(one(json!({"id": "1"})).transcript, None);
        let text = "  ---\ntitle: not yaml\n---\n<b>Grüße</b> 🎉 **bold** #tag\n";
        assert_eq!(one(json!({"id": "1", "transcript": text})).transcript.as_deref(), Some(text));
    }

    #[test]
    fn locations_that_mean_unknown_are_none() {
        let cases = [
            json!({"id": "1", "location_lat": null, "location_lon": null}),
            json!({"id": "1"}),
            json!({"id": "1", "location_lat": 52.5}),
            json!({"id": "1", "location_lat": 0.0, "location_lon": 0.0}),
            json!({"id": "1", "location_lat": 0, "location_lon": 0}),
            json!({"id": "1", "location_lat": 91.0, "location_lon": 13.0}),
            json!({"id": "1", "location_lat": 52.0, "location_lon": -180.5}),
            json!({"id": "1", "location_lat": "north", "location_lon": 13.0}),
            json!({"id": "1", "location_lat": "NaN", "location_lon": "inf"}),
            json!({"id": "1", "location_lat": true, "location_lon": 13.0}),
        ];
        for item in cases {
            assert_eq!(one(item.clone()).location, None, "{item}");
        }
    }

    #[test]
    fn real_locations_are_kept_including_zero_on_one_axis_and_numeric_strings() {
        assert_eq!(
            one(json!({"id": "1", "location_lat": 0.0, "location_lon": 13.4})).location,
            Some(GeoPoint { lat: 0.0, lon: 13.4 })
        );
        assert_eq!(
            one(json!({"id": "1", "location_lat": -33.87, "location_lon": 151.21})).location,
            Some(GeoPoint { lat: -33.87, lon: 151.21 })
        );
        assert_eq!(
            one(json!({"id": "1", "location_lat": "48.85", "location_lon": " 2.35 "})).location,
            Some(GeoPoint { lat: 48.85, lon: 2.35 })
        );
    }

    #[test]
    fn timestamps_in_every_form_deployments_send() {
        let at = utc(2025, 12, 18, 14, 30, 0);
        for raw in [
            "2025-12-18T14:30:00Z",
            "2025-12-18T14:30:00+00:00",
            "2025-12-18T15:30:00+01:00",
            "2025-12-18T14:30:00",
            "2025-12-18 14:30:00",
            "2025-12-18 14:30:00Z",
            "2025-12-18 15:30:00+01:00",
            " 2025-12-18T14:30:00Z ",
            "2025-12-18T14:30",
        ] {
            assert_eq!(one(json!({"id": "1", "created_at": raw})).created_at, Some(at), "{raw}");
        }
        let fractional = one(json!({"id": "1", "created_at": "2025-12-18T14:30:00.123456Z",
            "updated_at": "2025-12-18T14:30:00.5"}));
        assert_eq!(fractional.created_at, Some(at + chrono::Duration::microseconds(123_456)));
        assert_eq!(fractional.updated_at, Some(at + chrono::Duration::milliseconds(500)));
        // Epoch seconds and milliseconds.
        assert_eq!(one(json!({"id": "1", "created_at": at.timestamp()})).created_at, Some(at));
        assert_eq!(one(json!({"id": "1", "created_at": at.timestamp_millis()})).created_at, Some(at));
    }

    #[test]
    fn unreadable_timestamps_are_none_not_a_rejection() {
        for raw in [json!("yesterday"), json!(""), json!("2025-13-45T99:00:00Z"), Value::Null, json!(true)] {
            let m = one(json!({"id": "1", "created_at": raw, "updated_at": raw}));
            assert_eq!((m.created_at, m.updated_at), (None, None), "{raw}");
        }
    }

    #[test]
    fn numeric_ids_become_their_decimal_string() {
        let page = page(json!([{"id": 1234567890}, {"id": 12.0}, {"id": -7}, {"id": 1.5}, {"id": "0042"}]));
        let ids: Vec<&str> = page.memories.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["1234567890", "12", "-7", "1.5", "0042"]);
        assert!(page.rejected.is_empty());
    }

    #[test]
    fn unusable_items_are_rejected_with_index_and_reason_not_failing_the_page() {
        let page = page(json!([
            {"id": "ok-1", "transcript": "fine"},
            {"transcript": "no id"},
            {"id": ""},
            {"id": "   "},
            {"id": null},
            "a string",
            42,
            [1, 2],
            null,
            {"id": true},
            {"id": {"nested": 1}},
            {"id": 1e20},
            {"id": "ok-2"},
        ]));
        assert_eq!(page.memories.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["ok-1", "ok-2"]);
        let indexes: Vec<usize> = page.rejected.iter().map(|r| r.index).collect();
        assert_eq!(indexes, (1..=11).collect::<Vec<_>>());
        assert!(page.rejected.iter().all(|r| !r.reason.is_empty()));
        assert_eq!(page.rejected[0].reason, "the item has no id");
        assert_eq!(page.rejected[4].reason, "the item is a string, not an object");
        assert_eq!(page.rejected[7].reason, "the item is null, not an object");
        assert_eq!(page.rejected[8].reason, "the item's id is a boolean, not a string or a number");
        assert_eq!(page.rejected[10].id.as_deref(), Some("1e+20"));
    }

    #[test]
    fn duplicate_ids_keep_the_first_and_reject_the_rest() {
        let page = page(json!([
            {"id": "7", "transcript": "first"},
            {"id": 7, "transcript": "second"},
            {"id": "8"},
            {"id": "7", "transcript": "third"},
        ]));
        assert_eq!(page.memories.len(), 2);
        assert_eq!(page.memories[0].transcript.as_deref(), Some("first"));
        assert_eq!(page.rejected.len(), 2);
        assert_eq!((page.rejected[0].index, page.rejected[0].id.as_deref()), (1, Some("7")));
        assert_eq!(page.rejected[1].index, 3);
        assert!(page.rejected[0].reason.contains("item #0"), "{}", page.rejected[0].reason);
    }

    #[test]
    fn flags_accept_booleans_numbers_and_strings() {
        let m = one(json!({"id": "1", "audio": 1, "image": 0}));
        assert!(m.audio && !m.image);
        let m = one(json!({"id": "1", "audio": null, "image": "true"}));
        assert!(!m.audio && m.image);
        let m = one(json!({"id": "1", "audio": "0", "image": true}));
        assert!(!m.audio && m.image);
    }

    #[test]
    fn type_is_free_text_and_uris_are_optional() {
        let m = one(json!({"id": "1", "type": " Voice Memo ", "gcs_uri": "", "gcs_uri_img": "gs://b/i.jpg"}));
        assert_eq!(m.kind.as_deref(), Some("Voice Memo"));
        assert_eq!(m.gcs_uri, None);
        assert_eq!(m.gcs_uri_img.as_deref(), Some("gs://b/i.jpg"));
        assert_eq!(one(json!({"id": "1", "type": ""})).kind, None);
        assert_eq!(one(json!({"id": "1", "type": 3})).kind, None);
    }

    #[test]
    fn a_full_page_is_possibly_truncated() {
        let body = serde_json::to_vec(&json!({"memories": [{"id": "1"}, {"id": "2"}, {"id": "3"}]})).unwrap();
        assert!(parse_page(&body, 3).unwrap().possibly_truncated);
        assert!(parse_page(&body, 2).unwrap().possibly_truncated);
        assert!(!parse_page(&body, 4).unwrap().possibly_truncated);
        // Rejected items count too: the server returned `limit` items.
        let body = serde_json::to_vec(&json!({"memories": [{"id": "1"}, 5, {"id": "1"}]})).unwrap();
        let page = parse_page(&body, 3).unwrap();
        assert!(page.possibly_truncated);
        assert_eq!(page.memories.len(), 1);
    }

    #[test]
    fn an_empty_list_is_fine() {
        let page = parse_page(br#"{"memories": [], "count": 0}"#, 10).unwrap();
        assert_eq!(page, FetchedPage { attempts: 1, ..FetchedPage::default() });
    }

    #[test]
    fn bodies_without_a_memories_array_are_errors() {
        for (body, expected) in [
            (&b"<html>502 Bad Gateway</html>"[..], "not JSON"),
            (b"", "not JSON"),
            (b"[]", "got an array"),
            (b"null", "got null"),
            (br#"{"items": []}"#, "no `memories` array"),
            (br#"{"memories": null}"#, "`memories` is null"),
            (br#"{"memories": {"id": "1"}}"#, "`memories` is an object"),
        ] {
            let err = parse_page(body, 10).unwrap_err();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }

    #[test]
    fn unicode_and_long_transcripts_survive() {
        let long = "Läuft 🎙️ — ".repeat(3000);
        let m = one(json!({"id": "ü-1", "transcript": long}));
        assert_eq!(m.transcript.as_deref(), Some(long.as_str()));
        assert_eq!(m.id.as_str(), "ü-1");
    }
}
