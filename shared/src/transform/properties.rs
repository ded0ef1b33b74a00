//! Properties of the renderer and of document names over hostile memories:
//! any text in any field (control characters, separators, escapes, huge tag
//! lists), any time, any place. Never a panic, always the same bytes, one
//! header line per field whatever the field holds, names fit to be files.

use super::*;
use crate::config::{Strategy as Layout, TransformationConfig};
use crate::ids::MemoryId;
use crate::memory_api::model::{GeoPoint, Memory};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// Text drawn mostly from what breaks things.
fn hostile_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('\n'),
            Just('\r'),
            Just('\t'),
            Just('\u{0}'),
            Just('\u{1b}'),
            Just('\u{85}'),
            Just('\u{2028}'),
            Just('#'),
            Just('\\'),
            Just('/'),
            Just('%'),
            Just('_'),
            Just('.'),
            Just(' '),
            proptest::char::range('a', 'e'),
            any::<char>(),
        ],
        0..40,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn memory() -> impl Strategy<Value = Memory> {
    (
        hostile_text(),
        proptest::option::of(hostile_text()),
        proptest::option::of(hostile_text()),
        any::<bool>(),
        proptest::option::of((-90.0f64..=90.0, -180.0f64..=180.0)),
        proptest::option::of(-8_000_000_000_000i64..8_000_000_000_000),
    )
        .prop_map(|(id, kind, transcript, audio, place, millis)| Memory {
            id: MemoryId::new(if id.is_empty() { "x".to_owned() } else { id }),
            kind,
            audio,
            image: !audio,
            transcript,
            location: place.map(|(lat, lon)| GeoPoint { lat, lon }),
            created_at: millis.and_then(DateTime::<Utc>::from_timestamp_millis),
            updated_at: None,
            gcs_uri: None,
            gcs_uri_img: None,
        })
}

fn enrichment() -> impl Strategy<Value = Option<Enrichment>> {
    proptest::option::of(
        (
            proptest::option::of(hostile_text()),
            proptest::option::of(hostile_text()),
            proptest::option::of(hostile_text()),
        )
            .prop_map(|(transcript, image_description, place)| Enrichment {
                transcript,
                image_description,
                place,
            }),
    )
}

fn text(rendered: &Rendered) -> Option<&str> {
    match rendered {
        Rendered::Document(document) => Some(&document.text),
        Rendered::WaitingForTranscript => None,
    }
}

/// The header: everything before the first blank line.
fn header(text: &str) -> Vec<&str> {
    text.split("\n\n").next().unwrap_or_default().lines().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rendering_is_total_deterministic_and_one_line_per_header_field(
        m in memory(),
        e in enrichment(),
        ctx in hostile_text(),
        rich in any::<bool>(),
        skip in any::<bool>(),
    ) {
        let strategy = if rich { Layout::Rich } else { Layout::Standard };
        let cfg = TransformationConfig { strategy, ..TransformationConfig::default() };
        let first = render(&ctx, &m, &cfg, skip, e.as_ref());
        prop_assert_eq!(&first, &render(&ctx, &m, &cfg, skip, e.as_ref()));
        let Some(hostile) = text(&first) else { return Ok(()) };
        prop_assert!(!hostile.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{:?}", hostile);
        // The same memory with tame header fields has as many header lines.
        let tame_memory = Memory { id: MemoryId::new("m"), kind: m.kind.as_ref().map(|_| "k".to_owned()), ..m.clone() };
        let tame_enrichment = e.clone().map(|e| Enrichment { place: e.place.map(|p| if p.trim().is_empty() { p } else { "p".to_owned() }), ..e });
        let tame = render("c", &tame_memory, &cfg, skip, tame_enrichment.as_ref());
        let tame = text(&tame).unwrap_or_default().to_owned();
        prop_assert_eq!(header(hostile).len(), header(&tame).len(), "{:?}\nvs\n{:?}", hostile, tame);
        prop_assert!(header(hostile).iter().all(|line| !line.contains('\t')), "{:?}", hostile);
    }

    #[test]
    fn names_are_plain_bounded_file_names(ctx in hostile_text(), id in hostile_text()) {
        let name = file_source(&ctx, &id);
        prop_assert!(name.is_ascii() && name.len() <= 204, "{}", name);
        prop_assert!(!name.chars().any(|c| c.is_control() || c == '/' || c == '\\'), "{}", name);
        // Its own basename (LightRAG keeps only that): no separator of any kind.
        prop_assert!(!name.contains('/') && !name.contains('\\'), "{}", name);
        prop_assert_eq!(file_source(&ctx, &id), name);
    }

    #[test]
    fn different_memories_get_different_names(a in hostile_text(), b in hostile_text(), long in any::<bool>()) {
        prop_assume!(a != b);
        // Long ids go through the digest; short ones through escaping alone.
        let pad = if long { "x".repeat(120) } else { String::new() };
        let (a, b) = (format!("{pad}{a}"), format!("{pad}{b}"));
        prop_assert_ne!(file_source("CTX", &a), file_source("CTX", &b));
    }
}
