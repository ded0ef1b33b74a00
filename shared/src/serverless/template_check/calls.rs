//! The AWS calls the tests recorded ([`crate::aws::record`]): per function,
//! what its own tests sent, and what the state store's tests saw each
//! store method it used send (the store's tests cover paths a function's
//! tests may not reach: split transactions, retries, fallbacks).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

use crate::aws::record::STORE_ROLE as STORE;

/// One IAM action on one resource, and where the need was seen.
#[derive(Debug, Clone)]
pub struct Need {
    pub action: String,
    pub resource: Value,
    /// `the sync tests (Query)` or `store method runs (Query)`.
    pub seen: String,
    /// Recorded by the state store's tests (its table is the function's).
    pub via_store: bool,
}

pub struct Recordings {
    lines: Vec<Value>,
}

impl Recordings {
    /// Every line of every `*.jsonl` in `dir`.
    pub fn load(dir: &Path) -> Self {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("recorded calls in {}: {e}", dir.display()));
        let mut lines = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    lines
                        .push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display())));
                }
            }
        }
        Self { lines }
    }

    #[cfg(test)]
    pub fn from_lines(lines: Vec<Value>) -> Self {
        Self { lines }
    }

    fn of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["role"] == role)
    }

    /// The state-store methods `role`'s tests called.
    pub fn store_methods(&self, role: &str) -> BTreeSet<String> {
        self.of(role).filter_map(|l| l["store_method"].as_str().map(str::to_owned)).collect()
    }

    /// What `role` needs: its tests' calls, and the calls of each store
    /// method it used as the store's tests saw them.
    pub fn needs(&self, role: &str) -> Vec<Need> {
        let methods = self.store_methods(role);
        let own = self.of(role).map(|l| (l, format!("the {role} tests"), false));
        let store = self
            .of(STORE)
            .filter(|l| l["store_method"].as_str().is_some_and(|m| methods.contains(m)))
            .map(|l| (l, format!("store method {}", l["store_method"].as_str().unwrap_or_default()), true));
        own.chain(store)
            .flat_map(|(line, seen, via_store)| {
                let operation = line["operation"].as_str().unwrap_or_default().to_owned();
                line["needs"].as_array().cloned().unwrap_or_default().into_iter().map(move |n| Need {
                    action: n["action"].as_str().unwrap_or_default().to_owned(),
                    resource: n["resource"].clone(),
                    seen: format!("{seen} ({operation})"),
                    via_store,
                })
            })
            .collect()
    }

    /// Store methods a function used whose calls the store's tests never saw.
    pub fn unseen_store_methods(&self, role: &str) -> Vec<String> {
        let seen = self.store_methods(STORE);
        self.store_methods(role).into_iter().filter(|m| !seen.contains(m)).collect()
    }
}
