//! Field paths inside the configuration (`connectors[1].schedule.cron`).
//!
//! Every problem names its field this way, whichever stage found it (YAML
//! walk, `serde_ignored`, `serde_path_to_error`, validation), so one type
//! translates all of their path representations into one spelling.

use std::fmt;

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root; empty means the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        Self(segs)
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }

    pub(crate) fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    pub(crate) fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// `self` equals `other` or lies inside it.
    pub(crate) fn is_within(&self, other: &FieldPath) -> bool {
        self.0.len() >= other.0.len() && self.0[..other.0.len()] == other.0[..]
    }

    /// From the path at which `serde_path_to_error` saw a failure.
    pub(crate) fn from_serde_path(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut segs = Vec::new();
        for seg in path {
            match seg {
                Segment::Seq { index } => segs.push(Seg::Index(*index)),
                Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                Segment::Enum { variant } => segs.push(Seg::Key(variant.clone())),
                Segment::Unknown => segs.push(Seg::Key("?".into())),
            }
        }
        Self(segs)
    }

    /// From the path `serde_ignored` reports for a key nothing consumed.
    pub(crate) fn from_ignored_path(path: &serde_ignored::Path<'_>) -> Self {
        use serde_ignored::Path;
        fn walk(path: &Path<'_>, segs: &mut Vec<Seg>) {
            match path {
                Path::Root => {}
                Path::Seq { parent, index } => {
                    walk(parent, segs);
                    segs.push(Seg::Index(*index));
                }
                Path::Map { parent, key } => {
                    walk(parent, segs);
                    segs.push(Seg::Key(key.clone()));
                }
                // Option and newtype layers do not show in the document.
                Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
                    walk(parent, segs)
                }
            }
        }
        let mut segs = Vec::new();
        walk(path, &mut segs);
        Self(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Every `Secret` field of the schema, as written in problems. Keep in
/// step with `schema.rs`: a field missing here would have its value echoed
/// by type errors and interpolation notes.
pub const SECRET_FIELDS: &[&str] = &[
    "lightrag.api.api_key",
    "lightrag.api.password",
    "memory_api.api_key",
    "api.api_key",
    "monitoring.alerts.webhook_url",
    "advanced.security.encryption_key",
    "enrichment.transcription.api_key",
    "enrichment.vision.api_key",
];

/// Is the field a `Secret` of the schema? Its value must never be shown.
pub(crate) fn is_secret_field(path: &FieldPath) -> bool {
    SECRET_FIELDS.iter().any(|field| {
        let names = field.split('.');
        path.0.len() == names.clone().count()
            && path.0.iter().zip(names).all(|(seg, name)| matches!(seg, Seg::Key(k) if k == name))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn displays_keys_with_dots_and_indices_in_brackets() {
        let p = FieldPath::root().key("connectors").index(1).key("schedule").key("cron");
        assert_eq!(p.to_string(), "connectors[1].schedule.cron");
        assert_eq!(FieldPath::root().to_string(), "");
        assert_eq!(FieldPath::root().index(0).key("a").to_string(), "[0].a");
    }

    #[test]
    fn within_is_prefix_on_segments() {
        let c = FieldPath::root().key("connectors");
        let c1 = c.index(1).key("id");
        assert!(c1.is_within(&c));
        assert!(c.is_within(&c));
        assert!(!c.is_within(&c1));
        // "connectors_x" is not inside "connectors" although the string starts with it.
        assert!(!FieldPath::root().key("connectors_x").is_within(&c));
    }

    #[test]
    fn secret_fields_are_recognised() {
        assert!(is_secret_field(&FieldPath::root().key("memory_api").key("api_key")));
        assert!(!is_secret_field(&FieldPath::root().key("memory_api").key("url")));
        assert!(!is_secret_field(&FieldPath::root().key("memory_api")));
    }
}
