//! Loading: YAML text -> interpolated tree -> typed [`Config`] -> validated.
//!
//! Each stage collects all its problems instead of stopping at the first:
//! - YAML syntax errors (line and column) end loading at once: there is no
//!   tree to look at;
//! - `${VAR}` problems (unset variables, malformed references);
//! - type errors: `serde_path_to_error` gives the first one with its path;
//!   the offending field is then removed (its default applies) and the tree
//!   deserialized again, so later type errors are found too;
//! - unknown keys, all at once via `serde_ignored`;
//! - semantic rules ([`super::validate`]).
//!
//! A field with an earlier problem is "poisoned": later stages do not repeat
//! complaints about it (an unset `${PORT}` is not also "not a number").

use super::env::Environment;
use super::error::{ConfigError, Problem};
use super::interpolate::{interpolate, scalar_key, typed_scalar};
use super::path::{FieldPath, Seg, is_secret_field};
use super::scalars::typed_scalars;
use super::schema::{Config, ConnectorConfig};
use super::validate::validate;
use crate::secrets::Secret;
use std::collections::HashSet;
use std::path::Path;
use yaml_serde::Value;

/// Upper bound on re-deserialization passes (each converts or removes one field).
const MAX_PASSES: usize = 64;
/// Shorter secret values are not scrubbed from messages (it would mangle them).
const MIN_SCRUBBED_SECRET_LEN: usize = 4;

/// Loads `path` with [`Environment::for_config`] (process env over `.env` files).
///
/// Blocking file I/O: from async code call it in `spawn_blocking`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &Environment::for_config(path))
}

/// Loads `path`, resolving `${VAR}` in `env` only.
pub fn load_with_env(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(&source, &e))?;
    load_str(&text, &source, env)
}

/// Parses, interpolates and validates YAML text; `source` names it in errors.
pub fn load_str(yaml: &str, source: &str, env: &Environment) -> Result<Config, ConfigError> {
    load_str_for(yaml, source, env, &[])
}

/// [`load_str`] for a reader that never uses the secret fields `unread`
/// (of [`super::SECRET_FIELDS`], e.g. the `cleanup` function and
/// `memory_api.api_key`): a `${VAR}` there that cannot be resolved is no
/// error, the field is absent, and no rule about it is checked. Every other
/// field keeps its errors.
pub fn load_str_for(yaml: &str, source: &str, env: &Environment, unread: &[&str]) -> Result<Config, ConfigError> {
    let (mut value, typed_scalars) = match parse_yaml(yaml) {
        Ok(parsed) => parsed,
        Err(problem) => return Err(ConfigError::new(source, vec![problem])),
    };

    let mut interpolated = interpolate(&mut value, env);
    let is_unread = |path: &FieldPath| is_secret_field(path) && unread.contains(&path.to_string().as_str());
    for (path, _) in interpolated.problems.iter().filter(|(path, _)| is_unread(path)) {
        remove_field(&mut value, path);
    }
    interpolated.problems.retain(|(path, _)| !is_unread(path));
    let secrets = secret_values(&value);
    let mut poisoned = interpolated.poisoned;
    poisoned.retain(|path| !is_unread(path));
    let mut problems: Vec<Problem> =
        interpolated.problems.into_iter().map(|(path, message)| Problem::new(path.to_string(), message)).collect();

    let (config, unknown) = deserialize_all(&mut value, interpolated.typed_candidates, &mut poisoned, &mut problems);

    if let Some(mut config) = config {
        let shape = schema_shape();
        problems.extend(unknown.iter().map(|path| unknown_key_problem(&shape, path)));
        problems.extend(changed_text_problems(&typed_scalars, &value, &config));
        normalize(&mut config);
        let poisoned: Vec<String> = poisoned.iter().map(ToString::to_string).collect();
        problems.extend(
            validate(&config)
                .into_iter()
                .filter(|p| !poisoned.iter().any(|q| field_within(&p.field, q)))
                .filter(|p| !unread.iter().any(|field| field_within(&p.field, field))),
        );
        if problems.is_empty() {
            return Ok(config);
        }
    }

    let secrets: Vec<&Secret> = secrets.iter().collect();
    for problem in &mut problems {
        problem.message = crate::secrets::scrub(&problem.message, &secrets);
    }
    Err(ConfigError::new(source, problems))
}

/// The configuration as YAML with every secret shown as `***` (`validate --show`).
pub fn redacted_yaml(config: &Config) -> String {
    yaml_serde::to_string(config).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}

/// The document as a tree (merge keys applied), and its scalars that YAML
/// read as numbers or booleans with their text as written.
fn parse_yaml(yaml: &str) -> Result<(Value, Vec<(FieldPath, String)>), Problem> {
    let syntax = |e: yaml_serde::Error| {
        // The parser quotes the scalar it choked on (`integer `123...` as
        // u128`), and it may be a key: the field and the place say enough.
        let mut message = format!("YAML syntax error: {}", without_quoted_values(&e.to_string()));
        if let Some(loc) = e.location()
            && !message.contains(" line ")
        {
            message.push_str(&format!(" at line {} column {}", loc.line(), loc.column()));
        }
        Problem::new("", message)
    };
    let mut value: Value = yaml_serde::from_str(yaml).map_err(syntax)?;
    let typed = typed_scalars(yaml, &value);
    // `<<: *anchor` merge keys, so shared connector settings can be written once.
    value.apply_merge().map_err(syntax)?;
    // An empty file is an empty mapping (then validation says what is missing).
    if value.is_null() {
        value = Value::Mapping(yaml_serde::Mapping::new());
    }
    Ok((value, typed))
}

/// `text` with every `` `quoted` `` span replaced by `(value not shown)`.
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('`');
    out.push_str(parts.next().unwrap_or_default());
    while let Some(_quoted) = parts.next() {
        out.push_str("(value not shown)");
        match parts.next() {
            Some(rest) => out.push_str(rest),
            None => break,
        }
    }
    out
}

/// Text fields and secrets written as an unquoted scalar that YAML read as
/// a number or a boolean whose text is not the one written (`0x1F` -> `31`,
/// `1e3` -> `1000`, `True` -> `true`): refused, with the fix. A number that
/// reads back as written (`context_id: 123`) is fine.
fn changed_text_problems(typed: &[(FieldPath, String)], tree: &Value, config: &Config) -> Vec<Problem> {
    let shown = yaml_serde::to_value(config).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    for (path, written) in typed {
        let Some(read) = node(tree, path).and_then(super::scalars::as_text) else { continue };
        if read == *written {
            continue;
        }
        if is_secret_field(path) {
            problems.push(Problem::new(
                path.to_string(),
                "is unquoted, and YAML reads it as a number or a boolean that is not the text written (a hexadecimal, \
                 octal or exponent form, a sign, trailing zeros, a capital); quote it (the value is not shown: it is a secret)",
            ));
        } else if node(&shown, path).is_some_and(Value::is_string) {
            problems.push(Problem::new(
                path.to_string(),
                format!(
                    "`{written}` is read by YAML as a number or a boolean and would become `{read}`; quote it (\"{written}\") to keep it as written"
                ),
            ));
        }
    }
    problems
}

fn node<'a>(value: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut node = value;
    for seg in &path.0 {
        while let Value::Tagged(tagged) = node {
            node = &tagged.value;
        }
        node = match seg {
            Seg::Key(k) => node.as_mapping()?.iter().find(|(key, _)| scalar_key(key) == *k)?.1,
            Seg::Index(i) => node.as_sequence()?.get(*i)?,
        };
    }
    Some(node)
}

/// Deserializes until it succeeds or nothing more can be learned, recording
/// one problem per type error. Returns the config (if any pass succeeded) and
/// the unknown keys of the successful pass.
fn deserialize_all(
    value: &mut Value,
    mut typed_candidates: HashSet<FieldPath>,
    poisoned: &mut Vec<FieldPath>,
    problems: &mut Vec<Problem>,
) -> (Option<Config>, Vec<FieldPath>) {
    for _ in 0..MAX_PASSES {
        let (path, message) = match deserialize_once(value) {
            Ok(done) => return (Some(done.0), done.1),
            Err(failure) => failure,
        };
        // `port: ${PORT}`: the schema wants a number here, give it one.
        if typed_candidates.remove(&path)
            && let Some(node) = node_mut(value, &path)
            && let Some(typed) = node.as_str().and_then(typed_scalar)
        {
            *node = typed;
            continue;
        }
        let repeats_earlier = poisoned.iter().any(|p| path.is_within(p) || p.is_within(&path));
        let removed = remove_field(value, &path);
        if !repeats_earlier || removed.is_none() {
            let message = if is_secret_field(&path) {
                "invalid type: expected a string (the value is not shown: it is a secret)".to_owned()
            } else {
                message
            };
            problems.push(Problem::new(path.to_string(), message));
        }
        match removed {
            Some(removed) => poisoned.push(removed),
            None => return (None, Vec::new()),
        }
    }
    (None, Vec::new())
}

type Deserialized = (Config, Vec<FieldPath>);

fn deserialize_once(value: &Value) -> Result<Deserialized, (FieldPath, String)> {
    let mut unknown = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(FieldPath::from_ignored_path(&path));
    let result: Result<Config, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_ignored));
    match result {
        Ok(config) => Ok((config, unknown)),
        Err(e) => Err((FieldPath::from_serde_path(e.path()), e.inner().to_string())),
    }
}

fn node_mut<'a>(value: &'a mut Value, path: &FieldPath) -> Option<&'a mut Value> {
    let mut node = value;
    for seg in &path.0 {
        while let Value::Tagged(tagged) = node {
            node = &mut tagged.value;
        }
        node = match seg {
            Seg::Key(k) => node.as_mapping_mut()?.iter_mut().find(|(key, _)| scalar_key(key) == *k)?.1,
            Seg::Index(i) => node.as_sequence_mut()?.get_mut(*i)?,
        };
    }
    Some(node)
}

/// Removes the mapping entry nearest above (or at) `path`, so its default
/// applies; a sequence loses its whole entry rather than shifting indices.
/// Returns the removed path, or `None` when there is no entry to remove.
fn remove_field(value: &mut Value, path: &FieldPath) -> Option<FieldPath> {
    let at = path.0.iter().rposition(|seg| matches!(seg, Seg::Key(_)))?;
    let entry = FieldPath(path.0[..=at].to_vec());
    let key = entry.last_key()?.to_owned();
    let parent = node_mut(value, &entry.parent()?)?;
    let map = parent.as_mapping_mut()?;
    let before = map.len();
    map.retain(|k, _| scalar_key(k) != key);
    (map.len() < before).then_some(entry)
}

/// Every secret value in the tree, to scrub from messages.
fn secret_values(value: &Value) -> Vec<Secret> {
    fn walk(value: &Value, path: &FieldPath, out: &mut Vec<Secret>) {
        if is_secret_field(path) {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            if text.len() >= MIN_SCRUBBED_SECRET_LEN {
                out.push(Secret::new(text));
            }
            return;
        }
        match value {
            Value::Mapping(map) => {
                for (k, v) in map {
                    walk(v, &path.key(&scalar_key(k)), out);
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &path.index(i), out);
                }
            }
            Value::Tagged(t) => walk(&t.value, path, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &FieldPath::root(), &mut out);
    out
}

/// Every field of the schema, as a tree: where an unknown key is, the keys
/// that were possible there. Built from the defaults so it cannot drift.
fn schema_shape() -> Value {
    let mut config = Config::default();
    config.connectors.push(ConnectorConfig::default());
    yaml_serde::to_value(&config).unwrap_or(Value::Null)
}

fn unknown_key_problem(shape: &Value, path: &FieldPath) -> Problem {
    let key = path.last_key().unwrap_or_default();
    let expected = path.parent().and_then(|parent| expected_keys(shape, &parent));
    let message = match expected {
        Some(keys) if !keys.is_empty() => {
            let hint = did_you_mean(key, &keys).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
            format!("unknown key{hint}; expected one of: {}", keys.join(", "))
        }
        _ => "unknown key".to_owned(),
    };
    Problem::new(path.to_string(), message)
}

fn expected_keys(shape: &Value, parent: &FieldPath) -> Option<Vec<String>> {
    let mut node = shape;
    for seg in &parent.0 {
        node = match seg {
            Seg::Key(k) => node.as_mapping()?.get(k.as_str())?,
            // The shape holds one element standing for all of them.
            Seg::Index(_) => node.as_sequence()?.first()?,
        };
    }
    Some(node.as_mapping()?.keys().map(scalar_key).collect())
}

/// The closest expected key, if it is close enough to be a typo.
fn did_you_mean<'a>(key: &str, expected: &'a [String]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    expected
        .iter()
        .map(|k| (edit_distance(&key, k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `field` is `prefix` or inside it (`a.b` is inside `a`, `a[0]` too, `ab` is not).
fn field_within(field: &str, prefix: &str) -> bool {
    field.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Empty optional values mean "not set": `api_key: "${KEY:-}"` sends no key.
fn normalize(config: &mut Config) {
    fn secret(s: &mut Option<Secret>) {
        if s.as_ref().is_some_and(|v| v.expose().trim().is_empty()) {
            *s = None;
        }
    }
    fn text(s: &mut Option<String>) {
        if s.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *s = None;
        }
    }
    secret(&mut config.lightrag.api.api_key);
    secret(&mut config.lightrag.api.password);
    text(&mut config.lightrag.api.username);
    secret(&mut config.memory_api.api_key);
    secret(&mut config.api.api_key);
    secret(&mut config.monitoring.alerts.webhook_url);
    secret(&mut config.advanced.security.encryption_key);
    text(&mut config.state.table);
    for connector in &mut config.connectors {
        text(&mut connector.schedule.cron);
        text(&mut connector.schedule.timezone);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("intervl_hours", "interval_hours"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn did_you_mean_only_for_close_keys() {
        let keys: Vec<String> = ["type", "interval_hours", "cron"].iter().map(|s| s.to_string()).collect();
        assert_eq!(did_you_mean("intervl_hours", &keys), Some("interval_hours"));
        assert_eq!(did_you_mean("Cron", &keys), Some("cron"));
        assert_eq!(did_you_mean("something_else", &keys), None);
    }

    #[test]
    fn field_within_respects_segment_boundaries() {
        assert!(field_within("api.port", "api.port"));
        assert!(field_within("connectors[0].id", "connectors"));
        assert!(field_within("api.cors.origins", "api.cors"));
        assert!(!field_within("api.portx", "api.port"));
        assert!(!field_within("api", "api.port"));
    }

    #[test]
    fn schema_shape_lists_fields_in_declaration_order() {
        let shape = schema_shape();
        let path = FieldPath::root().key("connectors").index(3).key("schedule");
        assert_eq!(
            expected_keys(&shape, &path).unwrap(),
            vec!["type", "interval_hours", "interval_minutes", "cron", "timezone", "jitter_seconds"]
        );
        let top = expected_keys(&shape, &FieldPath::root()).unwrap();
        assert_eq!(top[0], "lightrag");
        assert_eq!(top.len(), 9);
    }

    /// A reader that never uses a secret field does not need its variable;
    /// every other reader (and every other field) still does.
    #[test]
    fn unread_secret_fields_may_stay_unresolved() {
        let yaml = r#"
memory_api: {url: "${MEMORY_API_URL:-http://127.0.0.1:9}", api_key: "${MEMORY_API_KEY}"}
lightrag: {mode: api, api: {url: "http://127.0.0.1:9"}}
enrichment: {transcription: {api_key: "${OPENAI_API_KEY}"}}
api: {enabled: true, api_key: "${CONNECTOR_API_KEY}"}
connectors: [{id: docs, context_id: C1, transformation: {include_audio: true}}]
"#;
        let env = Environment::from_map([("CONNECTOR_API_KEY".to_owned(), "k".to_owned())]);
        let error = load_str(yaml, "t", &env).unwrap_err().to_string();
        assert!(error.contains("MEMORY_API_KEY") && error.contains("OPENAI_API_KEY"), "{error}");
        let unread = ["memory_api.api_key", "enrichment.transcription.api_key"];
        let config = load_str_for(yaml, "t", &env, &unread).unwrap();
        assert!(config.memory_api.api_key.is_none());
        assert_eq!(config.api.api_key.as_ref().map(Secret::expose), Some("k"));
        // A field the reader does use keeps its error.
        let none = Environment::from_map(Vec::<(String, String)>::new());
        let error = load_str_for(yaml, "t", &none, &unread).unwrap_err().to_string();
        assert!(error.contains("api.api_key") && error.contains("CONNECTOR_API_KEY"), "{error}");
        assert!(!error.contains("MEMORY_API_KEY"), "{error}");
    }
}
