//! Identifier newtypes, so a memory id is never passed where a doc id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// A connector's `id` from the config.
    ConnectorId
);
string_id!(
    /// A memory's id as the Memory API gives it (numbers become their decimal string).
    MemoryId
);
string_id!(
    /// Hex SHA-256 of a document's text: the change-detection key.
    ContentHash
);
string_id!(
    /// LightRAG's document id: `doc-` + md5 of the stored basename.
    DocId
);

impl DocId {
    /// LightRAG's document id for a document named `file_source`: `doc-` +
    /// md5 of the part of the name LightRAG keeps ([`stored_basename`]).
    pub fn of_name(file_source: &str) -> Self {
        use md5::{Digest, Md5};
        Self::new(format!("doc-{}", hex::encode(Md5::digest(stored_basename(file_source).as_bytes()))))
    }
}

/// The part of a `file_source` LightRAG keeps (`a/b/c.txt` -> `c.txt`, `a/b/` -> `b`).
pub fn stored_basename(file_source: &str) -> &str {
    file_source.trim_end_matches('/').rsplit('/').next().unwrap_or(file_source)
}

string_id!(
    /// LightRAG's `track_id` returned by an insert.
    TrackId
);
string_id!(
    /// One sync run: `<UTC start, compact>-<random hex>@<host>:<pid>`, sortable
    /// by time; made and read by [`crate::liveness`], which knows its holder.
    RunId
);
