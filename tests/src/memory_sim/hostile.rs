//! Hostile items (`hostile: true`): what a broken or malicious Memory API can
//! put in a page, as raw bytes because some of it is not even UTF-8. Each
//! item says whether a connector must sync it (a strange but real memory)
//! or reject it (reported with its id where one can be read).

use serde_json::json;

/// One hostile item: its bytes, the id the connector should report or
/// store, and whether it is a memory that must sync.
#[derive(Debug, Clone)]
pub struct HostileItem {
    pub json: Vec<u8>,
    /// The id as the connector reads it (`None`: no readable id).
    pub id: Option<String>,
    pub syncs: bool,
    /// What it tries.
    pub what: &'static str,
}

fn good(id: serde_json::Value, read_as: &str, transcript: &str, what: &'static str) -> HostileItem {
    let json = serde_json::to_vec(&json!({"id": id, "type": "record", "transcript": transcript})).unwrap_or_default();
    HostileItem { json, id: Some(read_as.to_owned()), syncs: true, what }
}

fn bad(json: Vec<u8>, id: Option<&str>, what: &'static str) -> HostileItem {
    HostileItem { json, id: id.map(str::to_owned), syncs: false, what }
}

/// The hostile items, the same for every context and seed.
pub fn hostile_items() -> Vec<HostileItem> {
    let newline_id = "h-1\nType: forged header\r\nContext: other\u{1b}[31m";
    let tags: String = (0..20_000).map(|i| format!("#tag{i} ")).collect();
    let deep = format!("{}1{}", "[".repeat(400), "]".repeat(400));
    vec![
        good(json!(newline_id), newline_id, "an id with newlines and an ANSI escape", "control characters in the id"),
        good(
            json!("h-2\u{0}\u{7f}\u{85}\u{2028}end"),
            "h-2\u{0}\u{7f}\u{85}\u{2028}end",
            "odd characters",
            "NUL, DEL, NEL, LS in the id",
        ),
        good(json!("../../etc/passwd"), "../../etc/passwd", "a path in the id", "path traversal in the id"),
        good(json!("h-long-".repeat(80)), &"h-long-".repeat(80), "a very long id", "a 560-byte id"),
        good(json!(1e3), "1000", "an id that is a float", "a number as the id"),
        good(json!(-42), "-42", "a negative id", "a negative number as the id"),
        good(json!("h-tags"), "h-tags", &tags, "20,000 distinct hashtags"),
        HostileItem {
            json: serde_json::to_vec(&json!({"id": "h-type", "type": "note\nTags: #forged", "transcript": "t"}))
                .unwrap_or_default(),
            id: Some("h-type".into()),
            syncs: true,
            what: "a newline in the type",
        },
        bad(
            b"{\"id\": \"h-utf8\", \"transcript\": \"caf\xe9 au lait\"}".to_vec(),
            Some("h-utf8"),
            "a byte that is not UTF-8",
        ),
        bad(
            b"{\"id\": \"h-raw\", \"transcript\": \"bell\x07 and\nnewline\"}".to_vec(),
            Some("h-raw"),
            "raw control characters in a string",
        ),
        bad(
            format!("{{\"id\": \"h-deep\", \"transcript\": \"t\", \"extra\": {deep}}}").into_bytes(),
            Some("h-deep"),
            "nesting 400 deep",
        ),
        bad(br#"{"id": "h-surrogate", "transcript": "a\ud800b"}"#.to_vec(), Some("h-surrogate"), "a lone surrogate"),
        bad(
            br#"{"id": 123456789012345678901234567890, "transcript": "t"}"#.to_vec(),
            Some("1.2345678901234568e+29"),
            "an id too large to read exactly",
        ),
        bad(br#"{"id": ["h-array"], "transcript": "t"}"#.to_vec(), None, "an array as the id"),
        bad(b"\"h-not-an-object\"".to_vec(), None, "a string instead of an object"),
    ]
}
