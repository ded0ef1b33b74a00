//! Text from outside (memory ids, types, place names, anything logged) made
//! inert where it is shown line by line: in a document's header an id must
//! not write a header line of its own, in a text log it must not write a log
//! line or send escape sequences to a terminal. Control characters are
//! written as Rust-style escapes (`\n`, `\r`, `\t`, `\u{1b}`), deterministically,
//! and text without any comes back borrowed and unchanged.
//!
//! Where a person reads it (the web console, the CLI's tables) the invisible
//! format characters that hide text or reorder it on screen (bidirectional
//! overrides and isolates, zero-width characters) are escaped as well
//! ([`escape_shown`]). Markup escaping is the renderer's job (the console's
//! templates escape every value).

use std::borrow::Cow;
use std::fmt::Write;

/// Characters shown escaped: Unicode `Cc` (C0, DEL, C1: NEL among them) and
/// the line and paragraph separators, which some readers break lines at.
fn is_hostile(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// [`is_hostile`], and the characters that are invisible or move other text
/// on screen: the Arabic letter mark, zero-width and directional marks,
/// embeddings, overrides and isolates, word joiners, the byte-order mark and
/// the interlinear annotation characters.
fn is_hidden(c: char) -> bool {
    is_hostile(c)
        || matches!(
            c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// A field of a document (memory id, type, place): control characters
/// escaped, and the backslash too, so the escaping is injective (`a\nb` as
/// typed and `a` newline `b` stay two different texts). Ordinary values
/// (no control character, no backslash) are returned unchanged.
pub fn escape_field(text: &str) -> Cow<'_, str> {
    escape(text, |c| is_hostile(c) || c == '\\')
}

/// Text for a log line or a terminal: control characters escaped, nothing
/// else touched (a backslash a `Debug` value already escaped stays single).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape(text, is_hostile)
}

/// Text a person reads on one line (a memory id in a table or a page):
/// control characters and the invisible or reordering ones escaped.
/// Letters of right-to-left scripts are text and stay.
pub fn escape_shown(text: &str) -> Cow<'_, str> {
    escape(text, is_hidden)
}

/// [`escape_shown`] over several lines: line breaks and tabs stay.
pub fn escape_shown_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| is_hidden(c) && c != '\n' && c != '\t')
}

/// At most `max_chars` characters of [`escape_shown`], then `…`.
pub fn shown_cut(text: &str, max_chars: usize) -> String {
    let shown = escape_shown(text);
    match shown.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &shown[..at]),
        None => shown.into_owned(),
    }
}

fn escape(text: &str, needs: impl Fn(char) -> bool) -> Cow<'_, str> {
    let Some(first) = text.find(&needs) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            c if !needs(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for text in ["1234567890", "mem_020b363f16de", "Voice recording", "Berlin, Mitte, Germany", "über 🎉", ""] {
            assert!(matches!(escape_field(text), Cow::Borrowed(t) if t == text));
            assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_field("a\nType: forged\r\n\u{1b}[31m"), "a\\nType: forged\\r\\n\\u{1b}[31m");
        assert_eq!(escape_field("\0\u{7f}\u{85}\u{2028}\t"), "\\u{0}\\u{7f}\\u{85}\\u{2028}\\t");
        assert_eq!(escape_field("C:\\new"), "C:\\\\new");
        assert_eq!(escape_controls("C:\\new\n"), "C:\\new\\n");
    }

    #[test]
    fn hidden_characters_become_visible_where_people_read() {
        assert!(matches!(escape_shown("plain id-42"), Cow::Borrowed("plain id-42")));
        assert_eq!(escape_shown("a\nb\tc\r\u{7}"), "a\\nb\\tc\\r\\u{7}");
        assert_eq!(escape_shown("evil\u{202E}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(
            escape_shown("x\u{200B}y\u{2066}z\u{FEFF}\u{85}\u{7f}"),
            "x\\u{200b}y\\u{2066}z\\u{feff}\\u{85}\\u{7f}"
        );
        assert_eq!(escape_shown_lines("line 1\nline 2\u{1b}[31m"), "line 1\nline 2\\u{1b}[31m");
        // Letters of right-to-left scripts are text, not tricks: kept.
        assert_eq!(escape_shown("שלום"), "שלום");
        assert_eq!(escape_shown("C:\\new"), "C:\\new");
    }

    #[test]
    fn cut_counts_characters_of_the_shown_form() {
        assert_eq!(shown_cut("abcdef", 3), "abc…");
        assert_eq!(shown_cut("ab", 3), "ab");
        assert_eq!(shown_cut("é\u{202E}é", 2), "é\\…");
    }

    /// The characters the properties draw from: every kind that matters.
    fn hostile_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('\\'),
                Just('\n'),
                Just('\r'),
                Just('\u{1b}'),
                Just('\u{85}'),
                Just('\u{2028}'),
                Just('n'),
                Just('u'),
                Just('{'),
                Just('}'),
                any::<char>(),
            ],
            0..24,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn escaped_text_has_no_control_character_and_is_deterministic(text in hostile_text()) {
            for escaped in [escape_field(&text), escape_controls(&text)] {
                prop_assert!(!escaped.chars().any(is_hostile), "{escaped:?}");
            }
            let shown = escape_shown(&text);
            prop_assert!(!shown.chars().any(is_hidden), "{shown:?}");
            prop_assert_eq!(escape_field(&text), escape_field(&text));
        }

        /// Injective: the escaped text decodes back to exactly the original.
        #[test]
        fn field_escaping_is_injective(text in hostile_text()) {
            prop_assert_eq!(unescape(&escape_field(&text)), Some(text));
        }

        #[test]
        fn different_fields_stay_different(a in hostile_text(), b in hostile_text()) {
            prop_assume!(a != b);
            prop_assert_ne!(escape_field(&a), escape_field(&b));
        }
    }

    /// The inverse of [`escape_field`]; `None` for text it cannot produce.
    fn unescape(text: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }
}
