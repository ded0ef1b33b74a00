//! Lenient deserializers for the text fields of the schema: they accept a
//! YAML number or bool as its text, so `context_id: 123` (or an unquoted
//! `${CTX}` whose value is all digits) still gives the string `"123"`.
//!
//! Note YAML itself has already read an unquoted `007` as the number 7: quote
//! such literals in the file. Interpolated values keep their exact text (see
//! `interpolate.rs`).

use crate::ids::ConnectorId;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::path::PathBuf;

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A string, or a number/bool written as its text.
pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(TextVisitor)
}

struct OptionalTextVisitor;

impl<'de> Visitor<'de> for OptionalTextVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        string(deserializer).map(Some)
    }
}

/// Like [`string`], `null` or absent being `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(OptionalTextVisitor)
}

/// A file-system path given as text (or a number).
pub fn path_buf<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    string(deserializer).map(PathBuf::from)
}

/// A connector id given as text (or a number).
pub fn connector_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ConnectorId, D::Error> {
    string(deserializer).map(ConnectorId::new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(deserialize_with = "super::string")]
        s: String,
        #[serde(default, deserialize_with = "super::opt_string")]
        o: Option<String>,
        #[serde(default, deserialize_with = "super::path_buf")]
        p: std::path::PathBuf,
    }

    fn parse(yaml: &str) -> Result<T, String> {
        yaml_serde::from_str::<T>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_strings_numbers_and_bools_as_text() {
        assert_eq!(parse("s: abc").unwrap().s, "abc");
        assert_eq!(parse("s: 123").unwrap().s, "123");
        assert_eq!(parse("s: -5").unwrap().s, "-5");
        assert_eq!(parse("s: 1.5").unwrap().s, "1.5");
        assert_eq!(parse("s: true").unwrap().s, "true");
        assert_eq!(parse("s: '007'").unwrap().s, "007");
        assert_eq!(parse("s: x\np: 42").unwrap().p, std::path::PathBuf::from("42"));
    }

    #[test]
    fn optional_text_handles_null_absent_and_numbers() {
        assert_eq!(parse("s: x").unwrap().o, None);
        assert_eq!(parse("s: x\no: null").unwrap().o, None);
        assert_eq!(parse("s: x\no: ~").unwrap().o, None);
        assert_eq!(parse("s: x\no: 9").unwrap().o.as_deref(), Some("9"));
        assert_eq!(parse("s: x\no: y").unwrap().o.as_deref(), Some("y"));
    }

    #[test]
    fn rejects_collections_with_a_clear_expectation() {
        let err = parse("s: [1, 2]").unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
        let err = parse("s: x\no: {a: 1}").unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
    }
}
