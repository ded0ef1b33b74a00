//! The error of loading a configuration: every problem found, each naming
//! its field, so a person fixes the file in one go instead of one run per typo.

use serde::Serialize;
use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Field path such as `connectors[1].schedule.cron`; empty for the whole file.
    pub field: String,
    /// What is wrong and what is allowed; never a secret's value.
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

/// A configuration that could not be read or is not valid.
///
/// Not derived with `thiserror`: its derive treats a field named `source` as
/// the underlying error, and here `source` is the file name.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file path, or the name given to [`super::load_str`].
    pub source: String,
    pub problems: Vec<Problem>,
    /// The file itself could not be read (the one problem says why).
    unreadable: bool,
}

impl ConfigError {
    pub fn new(source: impl Into<String>, problems: Vec<Problem>) -> Self {
        Self { source: source.into(), problems, unreadable: false }
    }

    /// The file could not be read at all.
    pub fn unreadable(path: impl Into<String>, err: &std::io::Error) -> Self {
        let path = path.into();
        let message = format!("cannot read {path}: {err}");
        Self { source: path, problems: vec![Problem::new("", message)], unreadable: true }
    }

    /// True when the file could not be read (as opposed to being invalid).
    pub fn is_unreadable(&self) -> bool {
        self.unreadable
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unreadable
            && let Some(problem) = self.problems.first()
        {
            return f.write_str(&problem.message);
        }
        let n = self.problems.len();
        write!(f, "invalid configuration in {} ({n} problem{}):", self.source, if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
