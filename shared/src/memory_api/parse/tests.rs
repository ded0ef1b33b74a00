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
fn one_non_utf8_byte_skips_only_its_item_with_id_and_position() {
    let mut body = br#"{"memories": [{"id": "a", "transcript": "fine"}, {"id": "b", "transcript": "caf"#.to_vec();
    let bad_at = body.len();
    body.extend_from_slice(b"\xe9 au lait\"}, {\"id\": \"c\", \"transcript\": \"\xc3\xa9t\xc3\xa9\"}]}");
    let page = parse_page(&body, 10).expect("the page is read");
    let ids: Vec<&str> = page.memories.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(page.memories[1].transcript.as_deref(), Some("été"));
    assert_eq!(page.rejected.len(), 1, "{:?}", page.rejected);
    let rejected = &page.rejected[0];
    assert_eq!((rejected.index, rejected.id.as_deref()), (1, Some("b")));
    assert!(rejected.reason.contains("not UTF-8"), "{}", rejected.reason);
    assert!(rejected.reason.contains(&format!("byte {bad_at}")), "{}", rejected.reason);
}

#[test]
fn a_bad_byte_in_the_id_still_gives_the_position() {
    let body = b"{\"memories\": [{\"id\": \"x\xff\"}, {\"id\": \"ok\"}]}";
    let page = parse_page(body, 10).expect("the page is read");
    assert_eq!(page.memories.len(), 1);
    assert_eq!(page.rejected[0].index, 0);
    assert!(page.rejected[0].reason.contains("not UTF-8"), "{}", page.rejected[0].reason);
}

#[test]
fn deep_nesting_and_lone_surrogates_are_reported_with_id_and_a_true_reason() {
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let body = format!(
        r#"{{"memories": [{{"id": "deep", "mood": {deep}}}, {{"id": "sur", "transcript": "x\ud800y"}}, {{"id": "ok"}}]}}"#
    );
    let page = parse_page(body.as_bytes(), 10).expect("the page is read");
    assert_eq!(page.memories.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["ok"]);
    assert_eq!(page.rejected.len(), 2, "{:?}", page.rejected);
    for (rejected, (index, id, reason)) in
        page.rejected.iter().zip([(0, "deep", "recursion limit"), (1, "sur", "surrogate")])
    {
        assert_eq!((rejected.index, rejected.id.as_deref()), (index, Some(id)), "{rejected:?}");
        assert!(rejected.reason.contains(reason), "{}", rejected.reason);
        assert!(!rejected.reason.contains("null"), "{}", rejected.reason);
    }
}

#[test]
fn unicode_and_long_transcripts_survive() {
    let long = "Läuft 🎙️ — ".repeat(3000);
    let m = one(json!({"id": "ü-1", "transcript": long}));
    assert_eq!(m.transcript.as_deref(), Some(long.as_str()));
    assert_eq!(m.id.as_str(), "ü-1");
}

/// Properties over hostile bodies: arbitrary bytes, and pages whose items
/// are mangled at random (bytes that are not UTF-8, control characters,
/// deep nesting, odd ids).
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A page of up to 12 items, each a real memory or something hostile.
    fn hostile_page() -> impl Strategy<Value = (Vec<u8>, usize)> {
        let item = prop_oneof![
            "[a-z0-9]{1,12}".prop_map(|id| format!(r#"{{"id": "{id}", "transcript": "fine"}}"#).into_bytes()),
            any::<u64>().prop_map(|id| format!(r#"{{"id": {id}}}"#).into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| {
                let mut item = br#"{"id": "raw", "transcript": ""#.to_vec();
                item.extend(bytes.into_iter().filter(|b| *b != b'"' && *b != b'\\'));
                item.extend_from_slice(br#""}"#);
                item
            }),
            (1usize..300).prop_map(|depth| format!(
                r#"{{"id": "deep", "x": {}0{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes()),
            "[\\x00-\\x1f\\u{7f}\\u{85}\\u{2028}a-z\\n]{1,10}"
                .prop_map(|id| serde_json::to_vec(&json!({"id": id})).unwrap()),
            Just(br#"{"id": "s", "transcript": "\ud800"}"#.to_vec()),
            Just(b"null".to_vec()),
            Just(br#"{"id": 1e400}"#.to_vec()),
        ];
        proptest::collection::vec(item, 0..12).prop_map(|items| {
            let count = items.len();
            let mut body = b"{\"memories\": [".to_vec();
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend(item);
            }
            body.extend_from_slice(b"]}");
            (body, count)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: an answer or an error, never a panic, and the same every time.
        #[test]
        fn arbitrary_bytes_never_panic_and_read_the_same_twice(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_eq!(parse_body(&body, 10), parse_body(&body, 10));
        }

        /// A page is always read, and every item is accounted for exactly
        /// once: a memory or a rejection with its position.
        #[test]
        fn every_item_of_a_hostile_page_is_kept_or_reported((body, count) in hostile_page()) {
            // 1e400 overflows: serde_json refuses the whole body, which is fair (it is not JSON).
            prop_assume!(!body.windows(5).any(|w| w == b"1e400"));
            let page = parse_body(&body, 100).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(page.memories.len() + page.rejected.len(), count);
            let mut positions: Vec<usize> = page.rejected.iter().map(|r| r.index).collect();
            positions.dedup();
            prop_assert_eq!(positions.len(), page.rejected.len());
            prop_assert!(page.rejected.iter().all(|r| r.index < count && !r.reason.is_empty()));
            prop_assert_eq!(parse_body(&body, 100), Ok(page));
        }
    }
}

#[test]
fn a_raw_control_character_in_a_string_skips_only_its_item() {
    let body = b"{\"memories\": [{\"id\": \"a\", \"transcript\": \"line\nbreak\"}, {\"id\": \"b\\\\\", \"transcript\": \"t\\\"\x01\"}, {\"id\": \"c\"}]}";
    let page = parse_page(body, 10).expect("the page is read");
    assert_eq!(page.memories.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["c"]);
    assert_eq!(
        page.rejected.iter().map(|r| (r.index, r.id.as_deref())).collect::<Vec<_>>(),
        [(0, Some("a")), (1, Some("b\\"))]
    );
    assert!(page.rejected[0].reason.contains("control character"), "{}", page.rejected[0].reason);
}
