//! Untrusted text (memory ids, upstream errors, descriptions) as a person
//! is shown it, in the console and the CLI's tables: control characters and
//! the invisible format characters that can hide text or reorder it on
//! screen (bidirectional overrides and isolates, zero-width characters)
//! become visible escapes such as `\n` and `\u{202e}`. Markup escaping is
//! the renderer's job (the console's templates escape every value).

use std::borrow::Cow;

/// On one line: every control character is escaped, line breaks included.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escaped(text, |_| false)
}

/// Over several lines: line breaks and tabs stay, everything else hidden is
/// escaped.
pub fn multi_line(text: &str) -> Cow<'_, str> {
    escaped(text, |c| c == '\n' || c == '\t')
}

/// At most `max_chars` characters of [`one_line`], then `…`.
pub fn one_line_cut(text: &str, max_chars: usize) -> String {
    let shown = one_line(text);
    match shown.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &shown[..at]),
        None => shown.into_owned(),
    }
}

/// Characters that are invisible or move other text: C0/C1 controls, DEL,
/// the Arabic letter mark, zero-width and directional marks, embeddings,
/// overrides and isolates, word joiners, the byte-order mark and the
/// interlinear annotation characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

fn escaped(text: &str, kept: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_hidden(c) && !kept(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !is_hidden(c) || kept(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_visible() {
        assert_eq!(one_line("plain id-42"), "plain id-42");
        assert!(matches!(one_line("plain"), Cow::Borrowed(_)));
        assert_eq!(one_line("a\nb\tc\r\u{7}"), "a\\nb\\tc\\r\\u{7}");
        assert_eq!(one_line("evil\u{202E}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(one_line("x\u{200B}y\u{2066}z\u{FEFF}\u{85}\u{7f}"), "x\\u{200b}y\\u{2066}z\\u{feff}\\u{85}\\u{7f}");
        assert_eq!(multi_line("line 1\nline 2\u{1b}[31m"), "line 1\nline 2\\u{1b}[31m");
        // Letters of right-to-left scripts are text, not tricks: kept.
        assert_eq!(one_line("שלום"), "שלום");
    }

    #[test]
    fn cut_counts_characters_of_the_visible_form() {
        assert_eq!(one_line_cut("abcdef", 3), "abc…");
        assert_eq!(one_line_cut("ab", 3), "ab");
        assert_eq!(one_line_cut("é\u{202E}é", 2), "é\\…");
    }
}
