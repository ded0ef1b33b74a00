//! Plain YAML scalars that YAML reads as numbers or booleans, with their
//! text as written. The typed tree alone cannot tell `31` from `0x1F`, `1000`
//! from `1e3`, or `true` from `True`; a text field (an id, a key) given one
//! of the latter would silently become the former, so the loader compares.
//!
//! The document is read a second time, guided by the tree of the first read:
//! where the tree holds a number or a boolean, the scalar is read as a string,
//! which yields its text exactly as written.

use super::interpolate::scalar_key;
use super::path::FieldPath;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;
use yaml_serde::Value;

/// Every number or boolean scalar of `yaml` with its text as written, by
/// field path. `tree` is `yaml` parsed, before merge keys were applied
/// (entries under `<<` count as the mapping's own). Best effort: a document
/// the second read cannot follow yields what was found until then.
pub(crate) fn typed_scalars(yaml: &str, tree: &Value) -> Vec<(FieldPath, String)> {
    let found = RefCell::new(Vec::new());
    let walk = Walk { tree, path: FieldPath::root(), merged: false, found: &found };
    let _ = walk.deserialize(yaml_serde::Deserializer::from_str(yaml));
    found.into_inner()
}

/// The text a number or boolean becomes in a text field (as the lenient
/// readers and the `Secret` reader write it).
pub(crate) fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => n
            .as_u64()
            .map(|v| v.to_string())
            .or_else(|| n.as_i64().map(|v| v.to_string()))
            .or_else(|| n.as_f64().map(|v| v.to_string())),
        _ => None,
    }
}

struct Walk<'t, 'f> {
    tree: &'t Value,
    path: FieldPath,
    /// The sequence under a merge key: its mappings merge into the parent.
    merged: bool,
    found: &'f RefCell<Vec<(FieldPath, String)>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.tree {
            Value::Number(_) | Value::Bool(_) => {
                let text = String::deserialize(deserializer)?;
                self.found.borrow_mut().push((self.path, text));
                Ok(())
            }
            Value::Mapping(_) => deserializer.deserialize_map(self),
            Value::Sequence(_) => deserializer.deserialize_seq(self),
            _ => deserializer.deserialize_ignored_any(IgnoredAny).map(drop),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the same document again")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let Value::Mapping(map) = self.tree else { return Err(de::Error::custom("not a mapping")) };
        let mut entries = map.iter();
        while access.next_key::<IgnoredAny>()?.is_some() {
            let Some((key, value)) = entries.next() else {
                access.next_value::<IgnoredAny>()?;
                continue;
            };
            let key = scalar_key(key);
            let (path, merged) = if key == "<<" { (self.path.clone(), true) } else { (self.path.key(&key), false) };
            access.next_value_seed(Walk { tree: value, path, merged, found: self.found })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let Value::Sequence(items) = self.tree else { return Err(de::Error::custom("not a sequence")) };
        let mut index = 0;
        loop {
            let Some(item) = items.get(index) else {
                while access.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(());
            };
            let path = if self.merged { self.path.clone() } else { self.path.index(index) };
            if access.next_element_seed(Walk { tree: item, path, merged: false, found: self.found })?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn scalars(yaml: &str) -> Vec<(String, String)> {
        let tree: Value = yaml_serde::from_str(yaml).unwrap();
        typed_scalars(yaml, &tree).into_iter().map(|(p, t)| (p.to_string(), t)).collect()
    }

    #[test]
    fn finds_numbers_and_booleans_with_their_text_as_written() {
        let yaml = "a:\n  key: 0x1F\n  b: [1e3, text, 'quoted 5', True]\n  c: \"7\"\n  d: 12\n";
        assert_eq!(
            scalars(yaml),
            [("a.key", "0x1F"), ("a.b[0]", "1e3"), ("a.b[3]", "True"), ("a.d", "12")]
                .map(|(p, t)| (p.to_owned(), t.to_owned()))
        );
    }

    #[test]
    fn merged_and_aliased_entries_count_where_they_land() {
        let yaml = "base: &b\n  id: 0o17\nthing:\n  <<: *b\n  n: .inf\n";
        let found = scalars(yaml);
        assert!(found.contains(&("base.id".into(), "0o17".into())), "{found:?}");
        assert!(found.contains(&("thing.id".into(), "0o17".into())), "{found:?}");
        assert!(found.contains(&("thing.n".into(), ".inf".into())), "{found:?}");
    }
}
