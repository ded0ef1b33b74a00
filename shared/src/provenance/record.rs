//! The provenance record a ledger entry keeps of its memory, built from the
//! same facts the document is rendered from (`transform::facts`), so what
//! a lookup shows is what LightRAG holds.

use crate::config::TransformationConfig;
use crate::enrich::Enrichment;
use crate::memory_api::model::Memory;
use crate::state::Provenance;
use crate::transform;

/// A headline keeps at most this many characters of the first line.
pub const HEADLINE_CHARS: usize = 100;
/// At most this many tags are kept (the document carries them all).
pub const MAX_TAGS: usize = 20;
/// A place name is cut to this many bytes.
pub const MAX_PLACE_BYTES: usize = 200;

/// The record of `memory` (of context `context_id`) as its document
/// describes it; the bounds above keep a ledger entry near 1 KB whatever the
/// memory holds (decision 0022).
pub fn record(
    context_id: &str,
    memory: &Memory,
    transformation: &TransformationConfig,
    enrichment: Option<&Enrichment>,
) -> Provenance {
    let facts = transform::facts(memory, transformation, enrichment);
    let first_text = facts.transcript.as_deref().or(facts.image_description);
    Provenance {
        context_id: context_id.to_owned(),
        kind: memory.kind.clone().filter(|k| !k.trim().is_empty()),
        created_at: memory.created_at,
        updated_at: memory.updated_at,
        location: memory.location,
        place: facts.place.map(|p| cut_bytes(p.trim(), MAX_PLACE_BYTES)),
        tags: facts.tags.into_iter().take(MAX_TAGS).collect(),
        audio: memory.audio,
        image: memory.image,
        headline: first_text.and_then(headline),
    }
}

/// The first line that has a letter or digit, without Markdown's leading
/// marks (`# `, `> `, `- `, `* `) and surrounding spaces (so a heading or
/// front matter's `---` does not stand for the text), at most
/// [`HEADLINE_CHARS`] characters (`…` marks a cut).
pub fn headline(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(|l| l.trim().trim_start_matches(['#', '>', '-', '*']).trim())
        .find(|l| l.chars().any(char::is_alphanumeric))?;
    let mut chars = line.char_indices();
    match chars.nth(HEADLINE_CHARS - 1).and_then(|_| chars.next()) {
        Some((cut, _)) => Some(format!("{}…", line[..cut].trim_end())),
        None => Some(line.to_owned()),
    }
}

fn cut_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemoryId;
    use crate::memory_api::GeoPoint;
    use chrono::TimeZone;

    fn memory(transcript: Option<&str>) -> Memory {
        Memory {
            id: MemoryId::new("42"),
            kind: Some("record".into()),
            audio: true,
            image: false,
            transcript: transcript.map(str::to_owned),
            location: Some(GeoPoint { lat: 52.52, lon: 13.405 }),
            created_at: Some(chrono::Utc.with_ymd_and_hms(2025, 12, 18, 14, 30, 0).single().unwrap_or_default()),
            updated_at: None,
            gcs_uri: None,
            gcs_uri_img: None,
        }
    }

    #[test]
    fn the_record_says_what_the_document_says() {
        let m = memory(Some("\n  \r\nMet Anna at the bakery #sourdough\nsecond line #later"));
        let enrichment = Enrichment { place: Some(" Berlin ".into()), ..Enrichment::default() };
        let record = record("CTX", &m, &TransformationConfig::default(), Some(&enrichment));
        assert_eq!(record.context_id, "CTX");
        assert_eq!(record.headline.as_deref(), Some("Met Anna at the bakery #sourdough"));
        assert_eq!(record.tags, vec!["sourdough", "later"]);
        assert_eq!(record.place.as_deref(), Some("Berlin"));
        assert_eq!((record.audio, record.image, record.created_at), (true, false, m.created_at));
        let no_tags = TransformationConfig { extract_tags: false, ..TransformationConfig::default() };
        assert!(super::record("CTX", &m, &no_tags, None).tags.is_empty(), "tags only when the document has them");
    }

    #[test]
    fn an_automatic_transcript_or_a_photo_description_makes_the_headline() {
        let automatic = Enrichment { transcript: Some("Spoken words".into()), ..Enrichment::default() };
        let record = record("C", &memory(None), &TransformationConfig::default(), Some(&automatic));
        assert_eq!(record.headline.as_deref(), Some("Spoken words"));
        let photo = Enrichment { image_description: Some("A red boat".into()), ..Enrichment::default() };
        let record = super::record("C", &memory(Some("  ")), &TransformationConfig::default(), Some(&photo));
        assert_eq!(record.headline.as_deref(), Some("A red boat"));
        assert_eq!(super::record("C", &memory(None), &TransformationConfig::default(), None).headline, None);
    }

    #[test]
    fn long_values_are_bounded() {
        let long = "é".repeat(500);
        let record = record(
            "C",
            &memory(Some(&format!("{long} {}", (0..50).map(|i| format!("#t{i}")).collect::<Vec<_>>().join(" ")))),
            &TransformationConfig::default(),
            Some(&Enrichment { place: Some("ü".repeat(300)), ..Enrichment::default() }),
        );
        let headline = record.headline.unwrap_or_default();
        assert_eq!(headline.chars().count(), HEADLINE_CHARS + 1, "{headline}");
        assert!(headline.ends_with('…'));
        assert_eq!(record.tags.len(), MAX_TAGS);
        let place = record.place.unwrap_or_default();
        assert!(place.len() <= MAX_PLACE_BYTES && place.ends_with('…'), "{}", place.len());
        assert_eq!(super::headline("exactly").as_deref(), Some("exactly"));
        assert_eq!(super::headline("---\ntitle: x\n---").as_deref(), Some("title: x"));
        assert_eq!(super::headline("# Met Anna\n\nbody").as_deref(), Some("Met Anna"));
        assert_eq!(super::headline("> 🎉 -- \n- [ ] buy milk").as_deref(), Some("[ ] buy milk"));
        assert_eq!(super::headline("🎉 ---"), None);
        assert_eq!(super::headline(&"x".repeat(HEADLINE_CHARS)).map(|h| h.len()), Some(HEADLINE_CHARS));
    }
}
