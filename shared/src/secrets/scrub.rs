//! Scrubbing: every way a secret can come back in a text a server sent.
//!
//! Servers echo requests back: a header in an error page, a login form
//! (`password=k%2D...`), a JSON body (`"k\u00e9y"`, `"a\/b"`), a `Basic`
//! credential or a token in base64. [`scrub`] replaces each of these forms:
//! - the secret as is;
//! - percent-encoded (any set of bytes encoded, either hex case, `+` for a
//!   space) and JSON-escaped (`\"`, `\\`, `\/`, `\n`..., `\uXXXX` in either
//!   case, surrogate pairs): found by searching a decoded copy of the text
//!   whose bytes remember where in the text they came from;
//! - base64, standard and URL-safe alphabets, with or without padding, at
//!   each of the three byte alignments the secret can have inside a longer
//!   encoded value: the characters that depend on the secret's bytes alone
//!   (at most one character at each end, under 6 bits of the secret, is
//!   left).
//!
//! All forms of all secrets are searched in one Aho-Corasick pass per copy
//! of the text, so the cost is linear in the text.

use super::{REDACTED, Secret};
use aho_corasick::AhoCorasick;
use base64::Engine as _;

/// Encoded forms shorter than this are not searched: a few base64
/// characters would match unrelated text, and say next to nothing.
const MIN_ENCODED_FORM: usize = 8;

/// Replaces every occurrence of each secret, in any of the forms above, by
/// [`REDACTED`]. Linear in the text (times the number of forms).
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let patterns = forms(secrets);
    if patterns.is_empty() {
        return text.to_owned();
    }
    let Ok(finder) = AhoCorasick::new(&patterns) else {
        // Only fails for automata beyond its size limits, which a handful
        // of short patterns cannot reach; redact everything rather than leak.
        return REDACTED.to_owned();
    };
    let mut spans: Vec<(usize, usize)> =
        finder.find_overlapping_iter(text.as_bytes()).map(|m| (m.start(), m.end())).collect();
    let with_spaces = secrets.iter().any(|s| s.expose().contains(' '));
    for escapes in [Escapes::Json, Escapes::Percent, Escapes::Form] {
        if escapes == Escapes::Form && !with_spaces {
            continue;
        }
        let decoded = Decoded::new(text, escapes);
        spans.extend(finder.find_overlapping_iter(&decoded.bytes).map(|m| decoded.origin(m.start(), m.end())));
    }
    replace(text, spans)
}

/// The longest a secret's encoded form can be in a text (`\uXXXX` for each
/// byte of it), for callers that scrub a window cut out of a longer text.
pub fn longest_form(secrets: &[&Secret]) -> usize {
    secrets.iter().map(|s| s.expose().len() * 6).max().unwrap_or(0)
}

/// The byte strings to search: each secret, and its base64 cores.
fn forms(secrets: &[&Secret]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for secret in secrets.iter().map(|s| s.expose().as_bytes()).filter(|s| !s.is_empty()) {
        out.push(secret.to_vec());
        for core in base64_cores(secret) {
            if core.len() >= MIN_ENCODED_FORM {
                out.push(core.clone().into_bytes());
                out.push(core.replace('+', "-").replace('/', "_").into_bytes());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The base64 characters fully determined by `secret` when it starts at
/// byte offset 0, 1 or 2 (mod 3) of the encoded data.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    (0..3usize)
        .map(|align| {
            let mut data = vec![0u8; align];
            data.extend_from_slice(secret);
            let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&data);
            // Character i carries bits [6i, 6i + 6); the secret's are [8 align, 8 len).
            let first = (8 * align).div_ceil(6);
            let end = (8 * data.len()) / 6;
            encoded.get(first..end).unwrap_or_default().to_owned()
        })
        .collect()
}

/// Which escapes a decoded copy of a text undoes. One family per copy: a
/// `%` in a JSON string, or a `\\` in a form, is the character itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escapes {
    Json,
    Percent,
    /// Percent escapes, and `+` for a space (`application/x-www-form-urlencoded`).
    Form,
}

/// A copy of the text with percent or JSON escapes decoded; each byte
/// remembers the span of the text it came from (a whole escape, or a whole
/// character), so a match maps back to character boundaries.
struct Decoded {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Decoded {
    fn new(text: &str, escapes: Escapes) -> Self {
        let raw = text.as_bytes();
        let mut out = Self { bytes: Vec::with_capacity(raw.len()), spans: Vec::with_capacity(raw.len()) };
        let mut i = 0;
        while i < raw.len() {
            let escape = match (raw[i], escapes) {
                (b'%', Escapes::Percent | Escapes::Form) => hex_byte(raw, i + 1).map(|byte| (Token::Byte(byte), 3)),
                (b'+', Escapes::Form) => Some((Token::Byte(b' '), 1)),
                (b'\\', Escapes::Json) => json_escape(raw, i),
                _ => None,
            };
            let (decoded, len) = match escape {
                Some(escape) => escape,
                None => {
                    // A whole character, so a span never splits one.
                    let len = text[i..].chars().next().map_or(1, char::len_utf8);
                    (Token::Bytes(i, len), len)
                }
            };
            let span = (i, i + len);
            match decoded {
                Token::Byte(byte) => out.push(byte, span),
                Token::Char(c) => {
                    let mut buf = [0u8; 4];
                    for &byte in c.encode_utf8(&mut buf).as_bytes() {
                        out.push(byte, span);
                    }
                }
                Token::Bytes(start, len) => {
                    for &byte in &raw[start..start + len] {
                        out.push(byte, span);
                    }
                }
            }
            i += len;
        }
        out
    }

    fn push(&mut self, byte: u8, span: (usize, usize)) {
        self.bytes.push(byte);
        self.spans.push(span);
    }

    /// The span of the text that decoded bytes `start..end` came from.
    fn origin(&self, start: usize, end: usize) -> (usize, usize) {
        (self.spans[start].0, self.spans[end - 1].1)
    }
}

enum Token {
    Byte(u8),
    Char(char),
    /// Literal bytes of the text: start and length.
    Bytes(usize, usize),
}

fn hex_byte(raw: &[u8], at: usize) -> Option<u8> {
    let digits = raw.get(at..at + 2)?;
    let text = std::str::from_utf8(digits).ok()?;
    u8::from_str_radix(text, 16).ok().filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
}

fn hex_unit(raw: &[u8], at: usize) -> Option<u32> {
    let digits = raw.get(at..at + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A JSON escape at `raw[i]` (a backslash): what it stands for and its length.
fn json_escape(raw: &[u8], i: usize) -> Option<(Token, usize)> {
    let simple = |byte| Some((Token::Byte(byte), 2));
    match *raw.get(i + 1)? {
        b'"' => simple(b'"'),
        b'\\' => simple(b'\\'),
        b'/' => simple(b'/'),
        b'n' => simple(b'\n'),
        b't' => simple(b'\t'),
        b'r' => simple(b'\r'),
        b'b' => simple(0x08),
        b'f' => simple(0x0c),
        b'u' => {
            let unit = hex_unit(raw, i + 2)?;
            if (0xD800..0xDC00).contains(&unit) {
                // A surrogate pair: `\uD83D\uDE00`.
                if raw.get(i + 6..i + 8)? != b"\\u" {
                    return None;
                }
                let low = hex_unit(raw, i + 8).filter(|low| (0xDC00..0xE000).contains(low))?;
                let c = char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?;
                Some((Token::Char(c), 12))
            } else {
                Some((Token::Char(char::from_u32(unit)?), 6))
            }
        }
        _ => None,
    }
}

/// The text with every span (overlapping ones merged) replaced by [`REDACTED`].
fn replace(text: &str, mut spans: Vec<(usize, usize)>) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut written = 0;
    let mut current: Option<(usize, usize)> = None;
    for (start, end) in spans {
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            _ => {
                if let Some((s, e)) = current {
                    out.push_str(&text[written..s]);
                    out.push_str(REDACTED);
                    written = e;
                }
                current = Some((start, end));
            }
        }
    }
    if let Some((s, e)) = current {
        out.push_str(&text[written..s]);
        out.push_str(REDACTED);
        written = e;
    }
    out.push_str(&text[written..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(text: &str, secret: &str) -> String {
        scrub(text, &[&Secret::new(secret)])
    }

    #[test]
    fn plain_percent_and_form_encoded() {
        assert_eq!(scrubbed("bad key k-123 given", "k-123"), "bad key *** given");
        assert_eq!(scrubbed("username=a&password=k%2D0123456789", "k-0123456789"), "username=a&password=***");
        assert_eq!(scrubbed("p=k%2d01%32345", "k-012345"), "p=***", "lower-case hex, any bytes encoded");
        assert_eq!(scrubbed("p=two+words%21", "two words!"), "p=***");
        assert_eq!(scrubbed("p=caf%C3%A9-1234", "café-1234"), "p=***");
    }

    #[test]
    fn json_escaped() {
        assert_eq!(scrubbed(r#"{"echo":"a\"b\\c\/d-1234"}"#, r#"a"b\c/d-1234"#), r#"{"echo":"***"}"#);
        assert_eq!(scrubbed(r#"{"k":"caf\u00E9-12345"}"#, "café-12345"), r#"{"k":"***"}"#);
        assert_eq!(scrubbed(r#"{"k":"\ud83d\ude00-secret"}"#, "😀-secret"), r#"{"k":"***"}"#);
        assert_eq!(scrubbed(r#"x \u12 y \ud83d z"#, "nothing-here"), r#"x \u12 y \ud83d z"#, "broken escapes stay");
    }

    #[test]
    fn base64_at_each_alignment_and_alphabet() {
        let secret = "s3cr3t-k3y/with+symbols?";
        for prefix in ["", "u", "us", "user:"] {
            let data = format!("{prefix}{secret}");
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                let encoded = engine.encode(data.as_bytes());
                let header = "Authorization: Basic ";
                let out = scrubbed(&format!("{header}{encoded}"), secret);
                assert!(out.contains(REDACTED), "{prefix:?}: {out}");
                // The prefix's characters, one shared at each end, and padding.
                let left = out.len() - header.len() - REDACTED.len();
                assert!(left <= prefix.len().div_ceil(3) * 4 + 1 + 3, "at most the prefix and edges left: {out}");
            }
        }
    }

    #[test]
    fn nothing_to_scrub_leaves_the_text() {
        assert_eq!(scrubbed("plain text, 100% fine \\ ok", "k-123"), "plain text, 100% fine \\ ok");
        assert_eq!(scrub("text", &[]), "text");
        assert_eq!(scrub("text", &[&Secret::new("")]), "text");
        assert_eq!(scrubbed("aaaa", "aa"), "***", "overlapping matches merge");
    }
}
