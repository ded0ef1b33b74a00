//! The environment `${VAR}` references are resolved against: the process
//! environment overlaid on `.env` files.
//!
//! Precedence, highest first: a variable set in the process; `.env` beside
//! the config file; `.env` in the working directory. The files are read with
//! `dotenvy::from_path_iter`, which never touches the process environment
//! (setting process variables is `unsafe` in edition 2024 and racy in tests).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Variables visible to `${VAR}` interpolation.
#[derive(Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
}

impl Environment {
    /// The process environment over `.env` beside `config_path` over `.env`
    /// in the working directory. Missing `.env` files are fine; unreadable
    /// lines are skipped with a warning (the line itself is not logged: it
    /// may hold a key).
    pub fn for_config(config_path: &Path) -> Environment {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let process = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::layered(process, config_path, &cwd)
    }

    /// Exactly these variables (tests, or callers with their own source).
    pub fn from_map(vars: impl IntoIterator<Item = (String, String)>) -> Environment {
        Environment { vars: vars.into_iter().collect() }
    }

    /// The value of `name`, if set (possibly empty).
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// `for_config` with the process variables and working directory given,
    /// so the layering is testable without touching global state.
    fn layered(process: impl IntoIterator<Item = (String, String)>, config_path: &Path, cwd: &Path) -> Environment {
        let config_dir = match config_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let beside_config = if config_dir.is_absolute() { config_dir } else { cwd.join(config_dir) };
        let mut vars = HashMap::new();
        // Lowest precedence first: each later layer overwrites.
        read_dotenv(&cwd.join(".env"), &mut vars);
        read_dotenv(&beside_config.join(".env"), &mut vars);
        vars.extend(process);
        Environment { vars }
    }
}

fn read_dotenv(path: &Path, vars: &mut HashMap<String, String>) {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read .env file");
            return;
        }
    };
    for (line, item) in iter.enumerate() {
        match item {
            Ok((key, value)) => {
                vars.insert(key, value);
            }
            Err(e) => {
                // dotenvy's LineParse error quotes the line, which may hold a
                // secret: log only where it is.
                let reason = match e {
                    dotenvy::Error::LineParse(_, _) => "unparsable line".to_owned(),
                    dotenvy::Error::Io(io) => io.to_string(),
                    _ => "unreadable entry".to_owned(),
                };
                tracing::warn!(path = %path.display(), entry = line + 1, %reason, "skipping .env entry");
            }
        }
    }
}

/// Names only: values may be secrets.
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Environment").field("names", &names).finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use std::fs;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn from_map_gives_exactly_those_variables() {
        let env = Environment::from_map(vars(&[("A", "1"), ("EMPTY", "")]));
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("EMPTY").as_deref(), Some(""));
        assert_eq!(env.get("B"), None);
    }

    #[test]
    fn process_wins_over_env_beside_config_which_wins_over_cwd() {
        let cwd = tempfile::tempdir().unwrap();
        let conf_dir = tempfile::tempdir().unwrap();
        fs::write(cwd.path().join(".env"), "ALL=cwd\nCWD_AND_CONF=cwd\nONLY_CWD=cwd\n").unwrap();
        fs::write(conf_dir.path().join(".env"), "ALL=conf\nCWD_AND_CONF=conf\nONLY_CONF=conf\n").unwrap();
        let env = Environment::layered(vars(&[("ALL", "process")]), &conf_dir.path().join("config.yaml"), cwd.path());
        assert_eq!(env.get("ALL").as_deref(), Some("process"));
        assert_eq!(env.get("CWD_AND_CONF").as_deref(), Some("conf"));
        assert_eq!(env.get("ONLY_CWD").as_deref(), Some("cwd"));
        assert_eq!(env.get("ONLY_CONF").as_deref(), Some("conf"));
        assert_eq!(env.get("NOWHERE"), None);
    }

    #[test]
    fn relative_config_path_is_resolved_against_the_working_directory() {
        let cwd = tempfile::tempdir().unwrap();
        fs::create_dir(cwd.path().join("conf")).unwrap();
        fs::write(cwd.path().join("conf/.env"), "X=beside\n").unwrap();
        fs::write(cwd.path().join(".env"), "X=cwd\nY=cwd\n").unwrap();
        let env = Environment::layered(vars(&[]), Path::new("conf/config.yaml"), cwd.path());
        assert_eq!(env.get("X").as_deref(), Some("beside"));
        assert_eq!(env.get("Y").as_deref(), Some("cwd"));
        // A bare file name: the config sits in the working directory.
        let env = Environment::layered(vars(&[]), Path::new("config.yaml"), cwd.path());
        assert_eq!(env.get("X").as_deref(), Some("cwd"));
    }

    #[test]
    fn missing_env_files_and_bad_lines_are_tolerated() {
        let cwd = tempfile::tempdir().unwrap();
        let env = Environment::layered(vars(&[("P", "1")]), &cwd.path().join("c.yaml"), cwd.path());
        assert_eq!(env.get("P").as_deref(), Some("1"));

        fs::write(cwd.path().join(".env"), "GOOD=1\nthis is not a line\nLATER=2\n").unwrap();
        let env = Environment::layered(vars(&[]), &cwd.path().join("c.yaml"), cwd.path());
        assert_eq!(env.get("GOOD").as_deref(), Some("1"));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Environment::from_map(vars(&[("KEY", "s3cr3t-value")]));
        let shown = format!("{env:?}");
        assert!(shown.contains("KEY"));
        assert!(!shown.contains("s3cr3t-value"));
    }
}
