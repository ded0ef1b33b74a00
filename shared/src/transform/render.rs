//! The `standard` and `rich` document texts.

use super::{Document, Enrichment, extract_tags, file_source};
use crate::config::{Strategy, TransformationConfig};
use crate::memory_api::model::Memory;
use crate::text::escape_field;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::borrow::Cow;
use std::fmt::Write;

/// The outcome of turning one memory into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    Document(Document),
    /// No transcript yet and `skip_empty_transcripts` is on: wait for it.
    WaitingForTranscript,
}

/// Where the text of a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    MemoryApi,
    /// Automatic transcription of the audio (enrichment).
    Automatic,
}

/// What a document says besides the memory's own fields (header fields
/// already escaped).
struct Extras<'a> {
    transcript_source: Source,
    place: Option<&'a str>,
    image_description: Option<&'a str>,
}

/// Renders a memory of context `context_id` with the connector's settings
/// and, when there is one, its [`Enrichment`]. Without an enrichment (or an
/// empty one) the text is exactly what it was before enrichment existed.
pub fn render(
    context_id: &str,
    memory: &Memory,
    transformation: &TransformationConfig,
    skip_empty_transcripts: bool,
    enrichment: Option<&Enrichment>,
) -> Rendered {
    if waits_for_transcript(memory, skip_empty_transcripts, enrichment) {
        return Rendered::WaitingForTranscript;
    }
    let Facts { transcript, tags, place, automatic_transcript, image_description } =
        facts(memory, transformation, enrichment);
    let transcript_source = if automatic_transcript { Source::Automatic } else { Source::MemoryApi };
    // Header fields are one line each: an id, type or place cannot add one.
    let place = place.map(escape_field);
    // Cleaned like a transcript (the enricher already did; a cached value is not trusted).
    let image_description = image_description.map(clean_transcript).filter(|d| !d.is_empty());
    let extras = Extras { transcript_source, place: place.as_deref(), image_description: image_description.as_deref() };
    let context = escape_field(context_id);
    let text = match transformation.strategy {
        Strategy::Standard => standard(&context, memory, transcript.as_deref(), &tags, &extras),
        Strategy::Rich => rich(&context, memory, transcript.as_deref(), &tags, &extras),
    };
    Rendered::Document(Document::new(file_source(context_id, memory.id.as_str()), text))
}

/// What a memory's document says besides the memory's own fields: which
/// transcript (the Memory API's wins over an automatic one), its tags, the
/// place name and the photo description. [`render`] writes these; the
/// ledger's provenance record keeps some of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    /// Cleaned; `None` when there is none with visible characters.
    pub transcript: Option<Cow<'a, str>>,
    /// Empty unless `transformation.extract_tags` is on.
    pub tags: Vec<String>,
    pub place: Option<&'a str>,
    /// The transcript is an automatic transcription of the audio.
    pub automatic_transcript: bool,
    pub image_description: Option<&'a str>,
}

/// The [`Facts`] of a memory with its settings and enrichment.
pub fn facts<'a>(
    memory: &'a Memory,
    transformation: &TransformationConfig,
    enrichment: Option<&'a Enrichment>,
) -> Facts<'a> {
    let own = memory.transcript.as_deref().map(clean_transcript).filter(|t| !t.is_empty());
    // A transcript from the Memory API always wins over an automatic one.
    let automatic = enrichment.and_then(|e| e.transcript.as_deref()).map(clean_transcript).filter(|t| !t.is_empty());
    let (transcript, automatic_transcript) = match (own, automatic) {
        (Some(own), _) => (Some(own), false),
        (None, Some(automatic)) => (Some(automatic), true),
        (None, None) => (None, false),
    };
    let tags = match (&transcript, transformation.extract_tags) {
        (Some(text), true) => extract_tags(text),
        _ => Vec::new(),
    };
    Facts {
        transcript,
        tags,
        place: enrichment.and_then(|e| e.place.as_deref()).filter(|p| !p.trim().is_empty()),
        automatic_transcript,
        image_description: enrichment.and_then(|e| e.image_description.as_deref()).filter(|d| !d.trim().is_empty()),
    }
}

/// Whether [`render`] answers [`Rendered::WaitingForTranscript`], without
/// rendering: no transcript with any visible character (neither the Memory
/// API's nor an automatic one), no photo description, and
/// `skip_empty_transcripts` on. A described photo is content enough: a photo
/// memory need not wait for words.
pub fn waits_for_transcript(memory: &Memory, skip_empty_transcripts: bool, enrichment: Option<&Enrichment>) -> bool {
    // What `clean_transcript` keeps, trimmed, is empty exactly when no
    // character is both visible and not white space.
    let has_text = |t: &str| t.chars().any(|c| !c.is_control() && !c.is_whitespace());
    let own = memory.transcript.as_deref().is_some_and(has_text);
    let automatic = enrichment.and_then(|e| e.transcript.as_deref()).is_some_and(has_text);
    let described = enrichment.and_then(|e| e.image_description.as_deref()).is_some_and(has_text);
    skip_empty_transcripts && !own && !automatic && !described
}

/// Line endings made `\n`; control characters other than newline and tab
/// removed (LightRAG and the file system gain nothing from them); trailing
/// white space trimmed.
/// Borrowed when there is nothing to clean (the usual case).
fn clean_transcript(raw: &str) -> Cow<'_, str> {
    let kept = |c: char| !c.is_control() || c == '\n' || c == '\t';
    let trimmed = raw.trim();
    if trimmed.chars().all(kept) {
        return Cow::Borrowed(trimmed);
    }
    let unified = raw.replace("\r\n", "\n").replace('\r', "\n");
    let kept: String = unified.chars().filter(|&c| kept(c)).collect();
    Cow::Owned(kept.trim().to_owned())
}

fn standard(context_id: &str, memory: &Memory, transcript: Option<&str>, tags: &[String], extras: &Extras) -> String {
    let mut out = String::with_capacity(256 + transcript.map_or(0, str::len));
    let _ = writeln!(out, "Memory {}", escape_field(memory.id.as_str()));
    let _ = writeln!(out, "Type: {}", escape_field(memory.kind.as_deref().unwrap_or("memory")));
    match memory.created_at {
        Some(at) => {
            let _ = writeln!(
                out,
                "Recorded: {}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                Year(at.year()),
                at.month(),
                at.day(),
                at.hour(),
                at.minute(),
                // chrono's `%S`: a leap second (nanoseconds >= 1e9) is 60.
                at.second() + at.nanosecond() / 1_000_000_000
            );
        }
        None => out.push_str("Recorded: unknown\n"),
    }
    if let Some(place) = memory.location {
        let _ = writeln!(out, "Location: {:.5}, {:.5}", place.lat, place.lon);
    }
    if let Some(name) = extras.place {
        let _ = writeln!(out, "Place: {name}");
    }
    if !tags.is_empty() {
        let _ = writeln!(out, "Tags: {}", hashtags(tags));
    }
    if transcript.is_some() && extras.transcript_source == Source::Automatic {
        out.push_str("Transcript source: automatic transcription of the audio recording\n");
    }
    let _ = writeln!(out, "Context: {context_id}");
    out.push('\n');
    out.push_str(transcript.unwrap_or("(no transcript)"));
    out.push('\n');
    push_image_description(&mut out, extras);
    out
}

fn push_image_description(out: &mut String, extras: &Extras) {
    if let Some(description) = extras.image_description {
        out.push_str("\n## Photo description (automatic)\n\n");
        out.push_str(description);
        out.push('\n');
    }
}

fn rich(context_id: &str, memory: &Memory, transcript: Option<&str>, tags: &[String], extras: &Extras) -> String {
    let kind = escape_field(&humanize_kind(memory.kind.as_deref())).into_owned();
    let mut out = String::with_capacity(384 + transcript.map_or(0, str::len));
    let in_place = extras.place.map(|p| format!(" in {p}")).unwrap_or_default();
    match memory.created_at {
        Some(at) => {
            let (day, month, year) = (at.day(), month_name(at), Year(at.year()));
            let _ = writeln!(out, "# {kind}{in_place} on {} {}, {day} {month} {year}", weekday(at), part_of_day(at));
            out.push('\n');
            let _ = writeln!(
                out,
                "When: {}, {day} {month} {year}, {:02}:{:02} UTC ({})",
                weekday(at),
                at.hour(),
                at.minute(),
                part_of_day(at)
            );
        }
        None => {
            let _ = writeln!(out, "# {kind}{in_place}");
            out.push('\n');
            out.push_str("When: unknown\n");
        }
    }
    match (extras.place, memory.location) {
        (Some(name), Some(point)) => {
            let _ = writeln!(out, "Where: {name} ({:.5}, {:.5})", point.lat, point.lon);
        }
        (None, Some(point)) => {
            let _ = writeln!(out, "Where: {:.5}, {:.5}", point.lat, point.lon);
        }
        (Some(name), None) => {
            let _ = writeln!(out, "Where: {name}");
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "Kind: {kind}");
    let media: Vec<&str> = [(memory.audio, "audio recording"), (memory.image, "photo")]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
    if !media.is_empty() {
        let _ = writeln!(out, "Media: {}", media.join(", "));
    }
    if !tags.is_empty() {
        let _ = writeln!(out, "Tags: {}", hashtags(tags));
    }
    let _ = writeln!(out, "Memory: {} (context {context_id})", escape_field(memory.id.as_str()));
    if transcript.is_some() && extras.transcript_source == Source::Automatic {
        out.push_str("\n## Transcript (automatic transcription of the audio recording)\n\n");
    } else {
        out.push_str("\n## Transcript\n\n");
    }
    out.push_str(transcript.unwrap_or("(no transcript)"));
    out.push('\n');
    push_image_description(&mut out, extras);
    out
}

fn hashtags(tags: &[String]) -> String {
    tags.iter().map(|t| format!("#{t}")).collect::<Vec<_>>().join(", ")
}

fn humanize_kind(kind: Option<&str>) -> String {
    match kind.map(str::trim).filter(|k| !k.is_empty()) {
        None => "Memory".into(),
        Some(k) if k.eq_ignore_ascii_case("record") => "Voice recording".into(),
        Some(k) if k.eq_ignore_ascii_case("note") => "Note".into(),
        Some(k) if k.eq_ignore_ascii_case("photo") => "Photo".into(),
        Some(other) => {
            let words = other.replace(['_', '-'], " ");
            let mut chars = words.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => "Memory".into(),
            }
        }
    }
}

fn weekday(at: DateTime<Utc>) -> &'static str {
    match at.weekday() {
        chrono::Weekday::Mon => "Monday",
        chrono::Weekday::Tue => "Tuesday",
        chrono::Weekday::Wed => "Wednesday",
        chrono::Weekday::Thu => "Thursday",
        chrono::Weekday::Fri => "Friday",
        chrono::Weekday::Sat => "Saturday",
        chrono::Weekday::Sun => "Sunday",
    }
}

/// A year as chrono's `%Y` writes it: four digits, with a sign outside 0..=9999.
struct Year(i32);

impl std::fmt::Display for Year {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if (0..=9999).contains(&self.0) { write!(f, "{:04}", self.0) } else { write!(f, "{:+05}", self.0) }
    }
}

fn month_name(at: DateTime<Utc>) -> &'static str {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    MONTHS[at.month0() as usize % 12]
}

fn part_of_day(at: DateTime<Utc>) -> &'static str {
    match at.hour() {
        5..=11 => "morning",
        12..=16 => "afternoon",
        17..=21 => "evening",
        _ => "night",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemoryId;
    use crate::memory_api::model::GeoPoint;
    use chrono::TimeZone;

    fn memory() -> Memory {
        Memory {
            id: MemoryId::new("1234567890"),
            kind: Some("record".into()),
            audio: true,
            image: false,
            transcript: Some("Met Anna at the bakery, she recommended #sourdough\r\n".into()),
            location: Some(GeoPoint { lat: 52.52, lon: 13.405 }),
            created_at: Some(Utc.with_ymd_and_hms(2025, 12, 18, 14, 30, 0).unwrap()),
            updated_at: None,
            gcs_uri: None,
            gcs_uri_img: None,
        }
    }

    fn text(rendered: Rendered) -> String {
        match rendered {
            Rendered::Document(d) => d.text,
            Rendered::WaitingForTranscript => panic!("expected a document"),
        }
    }

    #[test]
    fn dates_are_written_as_chrono_formats_them() {
        let mut instants: Vec<DateTime<Utc>> = (0..2_000)
            .map(|i| Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(i * 797))
            .collect();
        for year in [-1, 0, 7, 999, 9999, 10000, 262_000] {
            instants.push(Utc.with_ymd_and_hms(year, 3, 4, 5, 6, 7).unwrap());
        }
        let rich = TransformationConfig { strategy: Strategy::Rich, ..TransformationConfig::default() };
        for at in instants {
            let m = Memory { created_at: Some(at), ..memory() };
            let standard = text(render("C", &m, &TransformationConfig::default(), true, None));
            let expected = format!("Recorded: {}\n", at.format("%Y-%m-%d %H:%M:%S UTC"));
            assert!(standard.contains(&expected), "{at}: {standard}");
            let rich = text(render("C", &m, &rich, true, None));
            let header = format!("on {} {}, {}\n", weekday(at), part_of_day(at), at.format("%-d %B %Y"));
            let when = format!("When: {}, {} UTC ({})\n", weekday(at), at.format("%-d %B %Y, %H:%M"), part_of_day(at));
            assert!(rich.lines().next().is_some_and(|l| format!("{l}\n").ends_with(&header)), "{at}: {rich}");
            assert!(rich.contains(&when), "{at}: {rich}");
        }
    }

    #[test]
    fn a_leap_second_is_written_as_chrono_formats_it() {
        // RFC 3339 allows `:60`, and the Memory API parser accepts it
        // (chrono keeps it as second 59 with nanoseconds >= 1e9): `%S`
        // writes 60, so the document (and its hash) must say 60 too.
        let at = crate::memory_api::parse_timestamp("2016-12-31T23:59:60Z").expect("a leap second parses");
        let m = Memory { created_at: Some(at), ..memory() };
        let standard = text(render("C", &m, &TransformationConfig::default(), true, None));
        let expected = format!("Recorded: {}\n", at.format("%Y-%m-%d %H:%M:%S UTC"));
        assert_eq!(expected, "Recorded: 2016-12-31 23:59:60 UTC\n");
        assert!(standard.contains(&expected), "{standard}");
    }

    #[test]
    fn cleaning_agrees_with_the_plain_definition_on_every_short_string() {
        let plain = |raw: &str| {
            let unified = raw.replace("\r\n", "\n").replace('\r', "\n");
            let kept: String = unified.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
            kept.trim().to_owned()
        };
        let alphabet = ['a', ' ', '\r', '\n', '\t', '\u{0}', '\u{b}', '\u{a0}', '\u{85}'];
        for raw in crate::transform::tags::tests::all_strings(&alphabet, 5) {
            assert_eq!(clean_transcript(&raw), plain(&raw), "{raw:?}");
        }
    }

    #[test]
    fn the_wait_decision_is_the_one_render_makes() {
        let odd = [
            None,
            Some(""),
            Some("  "),
            Some("\r\n\t"),
            Some("\u{0}\u{7}\u{b}"),
            Some("\u{a0}\u{3000}"),
            Some("\u{200b}"),
            Some("x"),
            Some(" \tx\n"),
        ];
        for own in odd {
            for automatic in odd {
                for description in [None, Some(" "), Some("a photo")] {
                    let m = Memory { transcript: own.map(str::to_owned), ..memory() };
                    let e = Enrichment {
                        transcript: automatic.map(str::to_owned),
                        image_description: description.map(str::to_owned),
                        ..Enrichment::default()
                    };
                    for skip in [true, false] {
                        let rendered = render("C", &m, &TransformationConfig::default(), skip, Some(&e));
                        assert_eq!(
                            waits_for_transcript(&m, skip, Some(&e)),
                            rendered == Rendered::WaitingForTranscript,
                            "own {own:?}, automatic {automatic:?}, description {description:?}, skip {skip}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn standard_text() {
        let t = text(render("CTX123", &memory(), &TransformationConfig::default(), true, None));
        assert_eq!(
            t,
            "Memory 1234567890\nType: record\nRecorded: 2025-12-18 14:30:00 UTC\nLocation: 52.52000, 13.40500\nTags: #sourdough\nContext: CTX123\n\nMet Anna at the bakery, she recommended #sourdough\n"
        );
    }

    #[test]
    fn rich_text() {
        let cfg = TransformationConfig { strategy: Strategy::Rich, ..Default::default() };
        let t = text(render("CTX123", &memory(), &cfg, true, None));
        assert!(t.starts_with("# Voice recording on Thursday afternoon, 18 December 2025\n"), "{t}");
        assert!(t.contains("Media: audio recording\n"));
        assert!(t.contains("## Transcript\n\nMet Anna"));
    }

    #[test]
    fn a_megabyte_of_distinct_tags_renders_in_linear_time() {
        // ~112,000 distinct tags: the quadratic de-duplication compared each
        // with every earlier one (6e9 comparisons, minutes); a linear one
        // takes well under a second. The bound is generous: it only tells
        // linear from quadratic, it is not a speed target (see `make bench`).
        let transcript: String = (0..112_000).map(|i| format!("#t{i:06} ")).collect();
        assert!(transcript.len() >= 1_000_000);
        let m = Memory { transcript: Some(transcript), ..memory() };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(text(render("C", &m, &TransformationConfig::default(), true, None)));
        });
        let t = finished.recv_timeout(std::time::Duration::from_secs(10)).expect("quadratic: not done in 10 s");
        let tags = t.lines().find(|l| l.starts_with("Tags: ")).expect("a tags line");
        assert_eq!(tags.matches('#').count(), 112_000);
    }

    #[test]
    fn control_characters_in_ids_and_fields_cannot_write_header_lines() {
        let plain = text(render("CTX", &memory(), &TransformationConfig::default(), true, Some(&enrichment())));
        let m = Memory {
            id: MemoryId::new("1\nType: forged\r\nContext: other\u{1b}[31m"),
            kind: Some("note\nTags: #forged".into()),
            ..memory()
        };
        let e = Enrichment { place: Some("Berlin\u{2028}Where: nowhere".into()), ..enrichment() };
        for strategy in [Strategy::Standard, Strategy::Rich] {
            let cfg = TransformationConfig { strategy, ..Default::default() };
            let reference = text(render("CTX", &memory(), &cfg, true, Some(&enrichment())));
            let hostile = text(render("CTX\nContext: x", &m, &cfg, true, Some(&e)));
            assert_eq!(hostile.lines().count(), reference.lines().count(), "{hostile}");
            assert!(!hostile.chars().any(|c| c.is_control() && c != '\n'), "{hostile:?}");
            assert!(!hostile.contains('\u{2028}'), "{hostile:?}");
            assert!(hostile.contains("1\\nType: forged\\r\\nContext: other\\u{1b}[31m"), "{hostile}");
            assert!(!hostile.lines().any(|l| l == "Tags: #forged" || l.starts_with("Context: other")), "{hostile}");
        }
        assert_eq!(plain, text(render("CTX", &memory(), &TransformationConfig::default(), true, Some(&enrichment()))));
    }

    #[test]
    fn deterministic() {
        let cfg = TransformationConfig { strategy: Strategy::Rich, ..Default::default() };
        assert_eq!(render("C", &memory(), &cfg, true, None), render("C", &memory(), &cfg, true, None));
    }

    #[test]
    fn empty_transcript_waits_or_renders() {
        let mut m = memory();
        m.transcript = Some("  \n ".into());
        assert_eq!(render("C", &m, &TransformationConfig::default(), true, None), Rendered::WaitingForTranscript);
        let t = text(render("C", &m, &TransformationConfig::default(), false, None));
        assert!(t.ends_with("(no transcript)\n"));
    }

    #[test]
    fn control_characters_removed() {
        let mut m = memory();
        m.transcript = Some("a\u{0}b\u{7}c\td".into());
        let t = text(render("C", &m, &TransformationConfig::default(), true, None));
        assert!(t.ends_with("abc\td\n"));
    }

    fn enrichment() -> Enrichment {
        Enrichment {
            transcript: Some("Automatic words\r\n".into()),
            image_description: Some("A loaf of bread on a wooden table.".into()),
            place: Some("Berlin, Mitte, Germany".into()),
        }
    }

    #[test]
    fn standard_with_enrichment() {
        let mut m = memory();
        m.transcript = None;
        m.image = true;
        let t = text(render("CTX123", &m, &TransformationConfig::default(), true, Some(&enrichment())));
        assert_eq!(
            t,
            "Memory 1234567890\nType: record\nRecorded: 2025-12-18 14:30:00 UTC\nLocation: 52.52000, 13.40500\nPlace: Berlin, Mitte, Germany\nTranscript source: automatic transcription of the audio recording\nContext: CTX123\n\nAutomatic words\n\n## Photo description (automatic)\n\nA loaf of bread on a wooden table.\n"
        );
    }

    #[test]
    fn rich_with_enrichment() {
        let cfg = TransformationConfig { strategy: Strategy::Rich, ..Default::default() };
        let mut m = memory();
        m.transcript = None;
        m.image = true;
        let t = text(render("CTX123", &m, &cfg, true, Some(&enrichment())));
        assert!(
            t.starts_with("# Voice recording in Berlin, Mitte, Germany on Thursday afternoon, 18 December 2025\n"),
            "{t}"
        );
        assert!(t.contains("Where: Berlin, Mitte, Germany (52.52000, 13.40500)\n"), "{t}");
        assert!(t.contains("Media: audio recording, photo\n"), "{t}");
        assert!(
            t.contains("## Transcript (automatic transcription of the audio recording)\n\nAutomatic words\n"),
            "{t}"
        );
        assert!(t.ends_with("## Photo description (automatic)\n\nA loaf of bread on a wooden table.\n"), "{t}");
    }

    #[test]
    fn own_transcript_wins_and_empty_enrichment_changes_nothing() {
        let cfg = TransformationConfig { strategy: Strategy::Rich, ..Default::default() };
        let with = text(render(
            "C",
            &memory(),
            &cfg,
            true,
            Some(&Enrichment { transcript: Some("auto".into()), ..Default::default() }),
        ));
        assert!(with.contains("## Transcript\n\nMet Anna"), "{with}");
        assert!(!with.contains("auto"));
        for cfg in [cfg, TransformationConfig::default()] {
            assert_eq!(
                render("C", &memory(), &cfg, true, Some(&Enrichment::default())),
                render("C", &memory(), &cfg, true, None)
            );
        }
    }

    #[test]
    fn an_automatic_transcript_ends_the_wait() {
        let mut m = memory();
        m.transcript = None;
        assert_eq!(render("C", &m, &TransformationConfig::default(), true, None), Rendered::WaitingForTranscript);
        let e = Enrichment { transcript: Some("spoken".into()), ..Default::default() };
        assert!(text(render("C", &m, &TransformationConfig::default(), true, Some(&e))).ends_with("\n\nspoken\n"));
        let photo = Enrichment { image_description: Some("A cat.".into()), ..Default::default() };
        let t = text(render("C", &m, &TransformationConfig::default(), true, Some(&photo)));
        assert!(t.ends_with("(no transcript)\n\n## Photo description (automatic)\n\nA cat.\n"), "{t}");
        let place_only = Enrichment { place: Some("Berlin".into()), ..Default::default() };
        assert_eq!(
            render("C", &m, &TransformationConfig::default(), true, Some(&place_only)),
            Rendered::WaitingForTranscript
        );
    }
}
