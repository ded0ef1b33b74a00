//! `#hashtag` extraction.

/// The hashtags of a text, in order of first appearance, each once
/// (case-insensitively), without the `#`. A tag starts after a `#` that is at
/// the start or follows a character that is not part of a word (so `C#` and
/// `page#anchor` are not tags) and runs over letters, digits and `_`.
pub fn extract_tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let starts_tag = c == '#' && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '#' || p == '&' || p == '/');
        previous = Some(c);
        if !starts_tag {
            continue;
        }
        let start = index + 1;
        let mut end = start;
        while let Some(&(i, n)) = chars.peek() {
            if n.is_alphanumeric() || n == '_' {
                end = i + n.len_utf8();
                previous = Some(n);
                chars.next();
            } else {
                break;
            }
        }
        let tag = &text[start..end];
        // A tag needs a letter: `#1` is a number, not a topic.
        if tag.chars().any(char::is_alphabetic) && !tags.iter().any(|t| t.to_lowercase() == tag.to_lowercase()) {
            tags.push(tag.to_owned());
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::extract_tags;

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
