//! `#hashtag` extraction.

use std::collections::HashSet;

/// The hashtags of a text, in order of first appearance, each once
/// (case-insensitively), without the `#`. A tag starts after a `#` that is at
/// the start or follows a character that is not part of a word (so `C#` and
/// `page#anchor` are not tags) and runs over letters, digits and `_`.
pub fn extract_tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    // Lower-cased tags seen so far: one lookup per tag keeps it linear
    // (a transcript is user text, and can hold 100,000 distinct tags).
    let mut seen: HashSet<String> = HashSet::new();
    // Only the `#`s matter: jump from one to the next.
    for (index, _) in text.match_indices('#') {
        let previous = text[..index].chars().next_back();
        if previous.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '#' || p == '&' || p == '/') {
            continue;
        }
        let start = index + 1;
        let end = text[start..]
            .char_indices()
            .find(|&(_, n)| !(n.is_alphanumeric() || n == '_'))
            .map_or(text.len(), |(i, _)| start + i);
        let tag = &text[start..end];
        // A tag needs a letter: `#1` is a number, not a topic.
        if tag.chars().any(char::is_alphabetic) && seen.insert(tag.to_lowercase()) {
            tags.push(tag.to_owned());
        }
    }
    tags
}

#[cfg(test)]
pub(crate) mod tests {
    use super::extract_tags;

    /// Every string up to `len` characters over `alphabet`.
    pub(crate) fn all_strings(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// The first, char-by-char implementation: the fast one must agree.
    fn reference(text: &str) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        let mut previous: Option<char> = None;
        let mut chars = text.char_indices().peekable();
        while let Some((index, c)) = chars.next() {
            let starts_tag = c == '#'
                && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '#' || p == '&' || p == '/');
            previous = Some(c);
            if !starts_tag {
                continue;
            }
            let (start, mut end) = (index + 1, index + 1);
            while let Some(&(i, n)) = chars.peek() {
                if !(n.is_alphanumeric() || n == '_') {
                    break;
                }
                end = i + n.len_utf8();
                previous = Some(n);
                chars.next();
            }
            let tag = &text[start..end];
            if tag.chars().any(char::is_alphabetic) && !tags.iter().any(|t| t.to_lowercase() == tag.to_lowercase()) {
                tags.push(tag.to_owned());
            }
        }
        tags
    }

    #[test]
    fn agrees_with_the_reference_on_every_short_string() {
        for text in all_strings(&['#', 'a', 'A', '1', '_', ' ', '&', '/', 'é'], 5) {
            assert_eq!(extract_tags(&text), reference(&text), "{text:?}");
        }
    }

    #[test]
    fn finds_tags() {
        assert_eq!(extract_tags("Met Anna, she recommended #sourdough and #Bread_2."), vec!["sourdough", "Bread_2"]);
        assert_eq!(extract_tags("#a #A #b"), vec!["a", "b"]);
        assert_eq!(extract_tags("#über #日本"), vec!["über", "日本"]);
    }

    #[test]
    fn ignores_non_tags() {
        assert!(extract_tags("C# and page#anchor and # alone and #1 and &#39;").is_empty());
        assert!(extract_tags("").is_empty());
    }
}
