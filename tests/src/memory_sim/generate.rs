//! Deterministic, untidy memories: every case of `docs/memory-api.md`'s "The
//! untidiness it accepts", derived only from `(seed, ctx, index, now)`.
//!
//! The generator uses its own SplitMix64 so the data set never changes with
//! a dependency's version: the same seed gives the same bytes everywhere.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// Memories are spread over this many days before `now`, so `range` matters.
const SPREAD_DAYS: i64 = 25;

/// A small, stable PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one purpose, independent of the others.
    pub(crate) fn derive(parts: &[u64]) -> Self {
        let mut state = 0x6a09_e667_f3bc_c908_u64;
        for part in parts {
            state = mix(state ^ part);
        }
        Self(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub(crate) fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low).max(1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a: a stable hash of a context id or memory id.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The first items take each variant in turn, so a small data set (40
/// items) still holds every case; the rest are drawn by weight.
fn variant<T: Copy>(index: usize, rng: &mut Rng, table: &[(T, u64)]) -> T {
    if index < table.len() {
        return table[index].0;
    }
    let total: u64 = table.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    for (value, weight) in table {
        if roll < *weight {
            return *value;
        }
        roll -= weight;
    }
    table[0].0
}

#[derive(Clone, Copy)]
enum IdForm {
    DigitString,
    Number,
    Prefixed,
}

#[derive(Clone, Copy, PartialEq)]
enum TranscriptForm {
    Plain,
    Unicode,
    Empty,
    Markdown,
    Html,
    Missing,
    FrontMatter,
    Null,
    CrLf,
    Whitespace,
    Long,
}

#[derive(Clone, Copy)]
enum TimeForm {
    Zulu,
    FractionalZulu,
    Naive,
    Offset,
    SpaceNaive,
    FractionalNaive,
}

#[derive(Clone, Copy)]
enum PlaceForm {
    Real,
    Null,
    Missing,
    Zero,
}

#[derive(Clone, Copy)]
enum FlagForm {
    Bool,
    Int,
    Null,
    Missing,
}

const ID_FORMS: &[(IdForm, u64)] = &[(IdForm::DigitString, 60), (IdForm::Number, 25), (IdForm::Prefixed, 15)];

// ~15% without a transcript (empty, missing, null, blank); ~1% long.
const TRANSCRIPT_FORMS: &[(TranscriptForm, u64)] = &[
    (TranscriptForm::Plain, 40),
    (TranscriptForm::Unicode, 15),
    (TranscriptForm::Empty, 5),
    (TranscriptForm::Markdown, 8),
    (TranscriptForm::Html, 7),
    (TranscriptForm::Missing, 4),
    (TranscriptForm::FrontMatter, 6),
    (TranscriptForm::Null, 3),
    (TranscriptForm::CrLf, 8),
    (TranscriptForm::Whitespace, 3),
    (TranscriptForm::Long, 1),
];

const TIME_FORMS: &[(TimeForm, u64)] = &[
    (TimeForm::Zulu, 45),
    (TimeForm::FractionalZulu, 15),
    (TimeForm::Naive, 15),
    (TimeForm::Offset, 10),
    (TimeForm::SpaceNaive, 10),
    (TimeForm::FractionalNaive, 5),
];

const PLACE_FORMS: &[(PlaceForm, u64)] =
    &[(PlaceForm::Real, 70), (PlaceForm::Null, 10), (PlaceForm::Missing, 10), (PlaceForm::Zero, 10)];

const FLAG_FORMS: &[(FlagForm, u64)] =
    &[(FlagForm::Bool, 80), (FlagForm::Int, 12), (FlagForm::Null, 4), (FlagForm::Missing, 4)];

const KINDS: &[(&str, u64)] = &[
    ("record", 50),
    ("note", 20),
    ("photo", 15),
    ("voice-memo", 4),
    ("Journal entry", 4),
    ("RECORD", 4),
    ("idea 💡", 3),
];

const CITIES: &[(f64, f64)] = &[
    (52.5200, 13.4050),   // Berlin
    (48.8566, 2.3522),    // Paris
    (35.6762, 139.6503),  // Tokyo
    (40.7128, -74.0060),  // New York
    (-23.5505, -46.6333), // São Paulo
    (-33.8688, 151.2093), // Sydney
    (64.1466, -21.9426),  // Reykjavík
];

const OPENINGS: &[&str] = &[
    "Met Anna at the bakery",
    "Called Mom after lunch",
    "Walked the dog along the canal",
    "Had coffee with Jonas",
    "Finished the quarterly report",
    "Bought fresh bread and tulips",
    "Rode the bike to the lake",
    "Sat in the waiting room for an hour",
    "Listened to a podcast about bees",
    "Cooked lentil soup for the neighbours",
    "Reviewed the pull request with Priya",
    "Watched the sunset from the roof",
];

const MIDDLES: &[&str] = &[
    "she recommended the sourdough",
    "it started raining again",
    "we talked about the trip to Lisbon",
    "the train was twenty minutes late",
    "I finally fixed the squeaky door",
    "the kids built a fort out of cushions",
    "we agreed to meet again next Tuesday",
    "the new espresso machine is loud but good",
    "someone played the piano in the station",
    "I should call the dentist tomorrow",
];

const HASHTAGS: &[&str] =
    &["#sourdough", "#family", "#work", "#Berlin", "#café", "#ideas", "#2025", "#run", "#groceries", "#travel"];

const UNICODE_TEXTS: &[&str] = &[
    "Grüße aus München! Das Frühstück war großartig 🥐☕ #frühstück",
    "東京で友達と会った。ラーメンが美味しかった 🍜 #東京",
    "Ça va ? Très bien — on se voit à 18 h au café 🎉",
    "Привет! Встреча перенесена на завтра, в 10:00.",
    "مرحبا، الاجتماع غدا في الساعة العاشرة",
    "👨‍👩‍👧‍👦 family day at the beach 🏖️🌊 #family",
    "Cafe\u{301} con leche, señor — ¿cuánto cuesta? ½ € 🤷",
    "Zero\u{200b}width and tab\there, then a 𝄞 clef and 🇩🇪🇯🇵 flags",
];

/// `count` memories of `ctx`, created over the [`SPREAD_DAYS`] days before
/// `now`. Ids are unique within the context; every item has a usable id.
pub fn generate(seed: u64, ctx: &str, count: usize, now: DateTime<Utc>) -> Vec<Value> {
    let ctx_hash = stable_hash(ctx);
    // Ids look like millisecond timestamps and differ between contexts.
    let id_base = 1_700_000_000_000 + (ctx_hash % 1_000_000) * 1_000_000;
    (0..count)
        .map(|index| {
            let mut rng = Rng::derive(&[seed, ctx_hash, index as u64]);
            let numeric_id = id_base + index as u64 * 7 + 3;
            memory(&mut rng, index, ctx, numeric_id, now)
        })
        .collect()
}

fn memory(rng: &mut Rng, index: usize, ctx: &str, numeric_id: u64, now: DateTime<Utc>) -> Value {
    let mut item = Map::new();
    let id_text = match variant(index, rng, ID_FORMS) {
        IdForm::DigitString => {
            item.insert("id".into(), json!(numeric_id.to_string()));
            numeric_id.to_string()
        }
        IdForm::Number => {
            item.insert("id".into(), json!(numeric_id));
            numeric_id.to_string()
        }
        IdForm::Prefixed => {
            let id = format!("mem_{numeric_id:012x}");
            item.insert("id".into(), json!(id));
            id
        }
    };

    let kind = variant(index, rng, KINDS);
    item.insert("type".into(), json!(kind));
    let is_photo = kind == "photo";
    let is_record = kind.eq_ignore_ascii_case("record") || kind == "voice-memo";
    let audio = is_record || (!is_photo && rng.chance(20));
    let image = is_photo || rng.chance(8);
    put_flag(&mut item, "audio", audio, variant(index, rng, FLAG_FORMS));
    put_flag(&mut item, "image", image, variant(index, rng, FLAG_FORMS));

    match variant(index, rng, TRANSCRIPT_FORMS) {
        TranscriptForm::Missing => {}
        TranscriptForm::Null => {
            item.insert("transcript".into(), Value::Null);
        }
        TranscriptForm::Empty => {
            item.insert("transcript".into(), json!(""));
        }
        TranscriptForm::Whitespace => {
            item.insert("transcript".into(), json!(" \n\t "));
        }
        form => {
            item.insert("transcript".into(), json!(transcript(rng, form)));
        }
    }

    match variant(index, rng, PLACE_FORMS) {
        PlaceForm::Real => {
            let (lat, lon) = *rng.pick(CITIES);
            // Five to seven decimals, as phones send them.
            let jitter = |rng: &mut Rng| (rng.unit() - 0.5) * 0.1;
            item.insert("location_lat".into(), json!(round(lat + jitter(rng), 5 + rng.below(3) as i32)));
            item.insert("location_lon".into(), json!(round(lon + jitter(rng), 5 + rng.below(3) as i32)));
        }
        PlaceForm::Null => {
            item.insert("location_lat".into(), Value::Null);
            item.insert("location_lon".into(), Value::Null);
        }
        PlaceForm::Missing => {}
        PlaceForm::Zero => {
            item.insert("location_lat".into(), json!(0.0));
            item.insert("location_lon".into(), json!(0.0));
        }
    }

    let created = now - Duration::seconds(rng.range(60, SPREAD_DAYS * 86_400));
    let created = created + Duration::microseconds(rng.range(0, 1_000_000));
    let time_form = variant(index, rng, TIME_FORMS);
    item.insert("created_at".into(), json!(format_time(created, time_form)));
    match rng.below(20) {
        0 => {}
        1 => {
            item.insert("updated_at".into(), Value::Null);
        }
        _ => {
            let updated = created + Duration::seconds(rng.range(0, 900));
            item.insert("updated_at".into(), json!(format_time(updated, time_form)));
        }
    }

    let bucket = format!("gs://memories-{}", ctx.to_ascii_lowercase());
    if audio {
        let ext = rng.pick(&["webm", "ogg", "mp3"]);
        item.insert("gcs_uri".into(), json!(format!("{bucket}/audio/{id_text}.{ext}")));
    } else if rng.chance(50) {
        item.insert("gcs_uri".into(), Value::Null);
    }
    if image {
        item.insert("gcs_uri_img".into(), json!(format!("{bucket}/images/{id_text}.jpg")));
    } else if rng.chance(50) {
        item.insert("gcs_uri_img".into(), Value::Null);
    }

    // Fields the connector does not know: it must ignore them.
    if rng.chance(40) {
        item.insert("mood".into(), json!(rng.pick(&["calm", "happy", "tired", "curious"])));
    }
    if rng.chance(25) {
        item.insert("device".into(), json!({"os": rng.pick(&["android", "ios"]), "app_version": "3.2.1"}));
    }
    if rng.chance(20) {
        item.insert("duration_ms".into(), json!(rng.range(1_500, 300_000)));
    }
    if rng.chance(10) {
        item.insert("labels".into(), json!(["inbox", rng.pick(&["todo", "later"])]));
    }
    Value::Object(item)
}

fn put_flag(item: &mut Map<String, Value>, key: &str, value: bool, form: FlagForm) {
    match form {
        FlagForm::Bool => {
            item.insert(key.into(), json!(value));
        }
        FlagForm::Int => {
            item.insert(key.into(), json!(u8::from(value)));
        }
        // Null and missing read as false: only used when that is the truth.
        FlagForm::Null if !value => {
            item.insert(key.into(), Value::Null);
        }
        FlagForm::Missing if !value => {}
        _ => {
            item.insert(key.into(), json!(value));
        }
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

fn format_time(at: DateTime<Utc>, form: TimeForm) -> String {
    match form {
        TimeForm::Zulu => at.to_rfc3339_opts(SecondsFormat::Secs, true),
        TimeForm::FractionalZulu => at.to_rfc3339_opts(SecondsFormat::Micros, true),
        TimeForm::Naive => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        TimeForm::Offset => {
            // A deployment in Berlin (UTC+1 in winter).
            let zone = FixedOffset::east_opt(3600).expect("one hour is a valid offset");
            at.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Secs, false)
        }
        TimeForm::SpaceNaive => at.format("%Y-%m-%d %H:%M:%S").to_string(),
        TimeForm::FractionalNaive => at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
    }
}

/// A sentence of everyday speech, sometimes with hashtags.
pub(crate) fn sentence(rng: &mut Rng) -> String {
    let mut text = format!("{}, {}.", rng.pick(OPENINGS), rng.pick(MIDDLES));
    for _ in 0..rng.below(3) {
        text.push(' ');
        text.push_str(rng.pick::<&str>(HASHTAGS));
    }
    text
}

fn transcript(rng: &mut Rng, form: TranscriptForm) -> String {
    match form {
        TranscriptForm::Unicode => {
            format!("{} {} {}", rng.pick(UNICODE_TEXTS), sentence(rng), rng.pick(&["😊", "🚲", "☕️", "🎶", "🙈"]))
        }
        TranscriptForm::Markdown => format!(
            "# {}\n\n- [ ] milk\n- [x] **bread**\n- _{}_\n\n> {}\n\n```\nnot code, just speech\n```\n",
            rng.pick(OPENINGS),
            rng.pick(MIDDLES),
            sentence(rng)
        ),
        TranscriptForm::Html => format!(
            "<p>{} <b>{}</b></p><script>alert('hi')</script> 5 < 6 & 7 > 3 <br/>&amp; <!-- note -->",
            rng.pick(OPENINGS),
            rng.pick(MIDDLES)
        ),
        TranscriptForm::FrontMatter => format!(
            "---\ntitle: {}\ntags: [memory, {}]\ndraft: true\n---\n{}\n",
            rng.pick(OPENINGS),
            rng.pick(&["travel", "work", "home"]),
            sentence(rng)
        ),
        TranscriptForm::CrLf => format!("{}\r\n\r\n\t{}\r\nEnd of note.  ", sentence(rng), sentence(rng)),
        TranscriptForm::Long => {
            let target = rng.range(20_000, 40_000) as usize;
            let mut text = String::with_capacity(target + 200);
            let mut paragraph = 0;
            while text.len() < target {
                paragraph += 1;
                text.push_str(&format!("Part {paragraph}. "));
                for _ in 0..5 {
                    text.push_str(&sentence(rng));
                    text.push(' ');
                }
                text.push_str("\n\n");
            }
            text
        }
        TranscriptForm::Plain
        | TranscriptForm::Empty
        | TranscriptForm::Missing
        | TranscriptForm::Null
        | TranscriptForm::Whitespace => {
            let mut text = sentence(rng);
            if rng.chance(30) {
                text.push(' ');
                text.push_str(&sentence(rng));
            }
            text
        }
    }
}

/// Items a careless deployment might send: no id, an empty or null id, an
/// id of the wrong type, not an object at all. Created within the last two
/// days, so every `range` returns them.
pub fn generate_malformed(seed: u64, ctx: &str, count: usize, now: DateTime<Utc>) -> Vec<Value> {
    let ctx_hash = stable_hash(ctx);
    (0..count)
        .map(|index| {
            let mut rng = Rng::derive(&[seed, ctx_hash, 0x6d61_6c66, index as u64]);
            let created =
                (now - Duration::seconds(rng.range(60, 2 * 86_400))).to_rfc3339_opts(SecondsFormat::Secs, true);
            match index % 7 {
                0 => json!({"type": "note", "transcript": "An item without any id", "created_at": created}),
                1 => json!({"id": "", "type": "note", "transcript": "An item with an empty id", "created_at": created}),
                2 => {
                    json!({"id": null, "type": "record", "transcript": "An item with a null id", "created_at": created})
                }
                3 => json!(format!("not an object #{index}")),
                4 => json!(index),
                5 => json!({"id": true, "transcript": "An item whose id is a boolean", "created_at": created}),
                _ => json!(["an", "array", index]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_is_stable() {
        // Pinned: changing the generator would silently change every data set.
        let mut rng = Rng(42);
        assert_eq!(rng.next_u64(), 0xbdd7_3226_2feb_6e95);
        assert_eq!(stable_hash("CTX123"), stable_hash("CTX123"));
        assert_ne!(stable_hash("CTX123"), stable_hash("CTX124"));
    }

    #[test]
    fn variants_cover_every_case_first() {
        let mut rng = Rng(1);
        let firsts: Vec<u64> = (0..3).map(|i| variant(i, &mut rng, &[(0, 1), (1, 1), (2, 98)])).collect();
        assert_eq!(firsts, [0, 1, 2]);
    }
}
