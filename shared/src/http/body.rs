//! Reading bodies with a limit, and the excerpt of one that goes into an
//! error message.

use crate::secrets::{self, Secret};

/// How many bytes of a body an error message quotes.
pub const EXCERPT_BYTES: usize = 200;

/// How much of an error answer's body is read (only its excerpt is used).
pub const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body (announced or received) is larger than `limit` bytes.
    #[error("the answer is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Transport(reqwest::Error),
}

/// The whole body, streamed so that neither a lying `Content-Length` nor an
/// endless body can make the process hold more than `limit` bytes.
pub async fn read_body(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(limit).min(1 << 20) as usize);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first [`ERROR_BODY_BYTES`] of an error answer's body, for its
/// excerpt; the rest is not read. A body that fails midway gives what came.
pub async fn read_error_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_BYTES - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// A body as an error message quotes it: lossy UTF-8, every form of each
/// secret scrubbed (see [`secrets::scrub`]) *before* it is cut, white space
/// collapsed, at most [`EXCERPT_BYTES`] bytes (then `…`), `(empty body)`
/// when blank.
pub fn excerpt(body: &[u8], secrets: &[&Secret]) -> String {
    let window = &body[..body.len().min(ERROR_BODY_BYTES)];
    let mut text = secrets::scrub(&String::from_utf8_lossy(window), secrets);
    if window.len() < body.len() {
        // A secret cut by the window's end was not recognised: its first
        // part may end the text. Drop what could be one.
        let keep = text.len().saturating_sub(secrets::longest_form(secrets) + 3);
        cut(&mut text, keep);
    }
    // Collapsing white space can join a secret that held some: scrub again.
    let collapsed = secrets::scrub(&text.split_whitespace().collect::<Vec<_>>().join(" "), secrets);
    if collapsed.is_empty() {
        return if window.len() < body.len() { "…" } else { "(empty body)" }.to_owned();
    }
    let mut out = collapsed;
    if out.len() > EXCERPT_BYTES || window.len() < body.len() {
        cut(&mut out, EXCERPT_BYTES);
        out.push('…');
    }
    out
}

/// Truncates at the last character boundary at or before `at`.
fn cut(text: &mut String, at: usize) {
    if at >= text.len() {
        return;
    }
    let mut end = at;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    #[test]
    fn excerpts_are_short_collapsed_lossy_and_marked_when_cut() {
        assert_eq!(excerpt(b"", &[]), "(empty body)");
        assert_eq!(excerpt(b"  \n ", &[]), "(empty body)");
        assert_eq!(excerpt(b"<html>\n  <h1>Bad\tGateway</h1>\n</html>", &[]), "<html> <h1>Bad Gateway</h1> </html>");
        assert_eq!(excerpt(&[b'a', 0xff, b'b'], &[]), "a\u{fffd}b");
        let long = excerpt("é".repeat(300).as_bytes(), &[]);
        assert!(long.ends_with('…') && long.len() <= EXCERPT_BYTES + '…'.len_utf8(), "{long}");
    }

    /// Issue 15, item 9: the key was cut at 200 bytes before it was
    /// scrubbed, so its first part stayed in the message.
    #[test]
    fn a_key_across_the_cut_leaks_no_part() {
        let key = Secret::new("k-0123456789abcdefghij");
        for offset in 180..200 {
            let body = format!("{}{}", "x".repeat(offset), key.expose());
            let out = excerpt(body.as_bytes(), &[&key]);
            assert!(!out.contains("k-0123"), "offset {offset}: {out}");
        }
    }

    /// Issue 15, item 9: a login form echoed back kept the password.
    #[test]
    fn a_url_encoded_form_is_scrubbed() {
        let password = Secret::new("p@ss word/with+symbols");
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("username", "me")
            .append_pair("password", password.expose())
            .finish();
        let out = excerpt(format!("invalid form: {form}").as_bytes(), &[&password]);
        assert_eq!(out, "invalid form: username=me&password=***");
    }

    #[test]
    fn a_secret_cut_by_the_read_window_is_dropped() {
        let key = Secret::new("k-0123456789abcdefghij");
        let mut body = " ".repeat(ERROR_BODY_BYTES - 5).into_bytes();
        body.extend_from_slice(key.expose().as_bytes());
        assert_eq!(excerpt(&body, &[&key]), "…");
    }

    /// The ways a body can carry a secret.
    #[derive(Debug, Clone, Copy)]
    enum Form {
        Plain,
        UrlEncoded,
        PercentAll,
        Json,
        JsonAscii,
        Base64 { url_safe: bool, padded: bool, prefix: usize },
    }

    fn encode(secret: &str, form: Form) -> String {
        match form {
            Form::Plain => secret.to_owned(),
            Form::UrlEncoded => url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            Form::PercentAll => secret.bytes().map(|b| format!("%{b:02X}")).collect(),
            Form::Json => {
                let quoted = serde_json::to_string(secret).unwrap();
                quoted[1..quoted.len() - 1].to_owned()
            }
            Form::JsonAscii => secret
                .chars()
                .map(|c| {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units).iter().map(|u| format!("\\u{u:04x}")).collect::<String>()
                })
                .collect(),
            Form::Base64 { url_safe, padded, prefix } => {
                use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
                let mut data = b"user:"[..prefix].to_vec();
                data.extend_from_slice(secret.as_bytes());
                data.extend_from_slice(b"!");
                match (url_safe, padded) {
                    (false, true) => STANDARD.encode(&data),
                    (false, false) => STANDARD_NO_PAD.encode(&data),
                    (true, true) => URL_SAFE.encode(&data),
                    (true, false) => URL_SAFE_NO_PAD.encode(&data),
                }
            }
        }
    }

    fn form() -> impl Strategy<Value = Form> {
        prop_oneof![
            Just(Form::Plain),
            Just(Form::UrlEncoded),
            Just(Form::PercentAll),
            Just(Form::Json),
            Just(Form::JsonAscii),
            (any::<bool>(), any::<bool>(), 0usize..5).prop_map(|(url_safe, padded, prefix)| Form::Base64 {
                url_safe,
                padded,
                prefix
            }),
        ]
    }

    /// Every `len`-character window of a text.
    fn windows(text: &str, len: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        chars.windows(len).map(|w| w.iter().collect()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Issue 15, item 9: for any secret, hidden in any of its forms at
        /// any offset of a body, no excerpt holds 8 characters of it (or of
        /// the form it was sent in).
        #[test]
        fn no_excerpt_holds_eight_characters_of_a_secret(
            secret in "[A-Za-z0-9._~+/=:@!$&'()*,;%\"\\\\ é漢😀-]{8,40}",
            before in "[a-z0-9 ,.:{}\\[\\]\"=&\n]{0,300}",
            after in "[a-z0-9 ,.:{}\\[\\]\"=&\n]{0,100}",
            form in form(),
        ) {
            let encoded = encode(&secret, form);
            let body = format!("{before}{encoded}{after}");
            let key = Secret::new(secret.clone());
            let out = excerpt(body.as_bytes(), &[&key]);
            for window in windows(&secret, 8) {
                prop_assert!(!out.contains(&window), "{form:?} {encoded:?} left {window:?} in {out:?}");
            }
            let edges = match form { Form::Base64 { prefix, .. } => prefix.div_ceil(3) * 4 + 4, _ => 0 };
            for window in windows(&encoded, 8 + edges) {
                prop_assert!(!out.contains(&window), "{form:?} {encoded:?} left {window:?} in {out:?}");
            }
        }
    }
}
