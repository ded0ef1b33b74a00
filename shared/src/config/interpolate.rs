//! `${VAR}` interpolation in the string scalars of the parsed YAML tree.
//!
//! Syntax: `${NAME}`; `${NAME:-default}` (default when NAME is unset or
//! empty; the default may hold references itself, `${A:-${B}}`, up to 8
//! deep); `$${` is a literal `${`. Mapping keys are never interpolated.
//!
//! A scalar that is exactly one reference may stand for a number or a bool
//! (`port: ${PORT}`). Such scalars are left as strings here and recorded as
//! *typed candidates*: the loader turns one into a YAML number/bool only when
//! the schema rejects the string at that field. So `context_id: ${CTX}` with
//! `CTX=0123` stays `"0123"` and a 25-digit API key is not turned into a float.

use super::env::Environment;
use super::path::{FieldPath, is_secret_field};
use std::collections::HashSet;
use yaml_serde::Value;

/// What interpolation found in the tree.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Unset variables and malformed references, in document order.
    pub problems: Vec<(FieldPath, String)>,
    /// Fields whose substituted value is incomplete: later complaints about
    /// them would only repeat the problem above.
    pub poisoned: Vec<FieldPath>,
    /// Scalars that were exactly one reference and whose value reads as a
    /// YAML int, float or bool.
    pub typed_candidates: HashSet<FieldPath>,
}

/// Substitutes every string scalar of `value` in place.
pub(crate) fn interpolate(value: &mut Value, env: &Environment) -> Outcome {
    let mut outcome = Outcome::default();
    walk(value, &FieldPath::root(), env, &mut outcome);
    outcome
}

fn walk(value: &mut Value, path: &FieldPath, env: &Environment, out: &mut Outcome) {
    match value {
        Value::String(text) => {
            if !text.contains('$') {
                return;
            }
            let result = substitute(text, env);
            let secret = is_secret_field(path);
            for error in &result.errors {
                out.problems.push((path.clone(), error.message(secret)));
            }
            if !result.errors.is_empty() {
                out.poisoned.push(path.clone());
            } else if result.whole_reference && typed_scalar(&result.text).is_some() {
                out.typed_candidates.insert(path.clone());
            }
            *text = result.text;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(i), env, out);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let child = match key {
                    Value::String(k) => path.key(k),
                    other => path.key(&scalar_key(other)),
                };
                walk(item, &child, env, out);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, out),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A non-string mapping key as it would be written (`1`, `true`).
pub(crate) fn scalar_key(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        _ => "?".into(),
    }
}

/// The YAML number or bool `text` reads as, if it reads as one.
pub(crate) fn typed_scalar(text: &str) -> Option<Value> {
    // Only single-line plain scalars: anything else is clearly text.
    if text.is_empty() || text.contains(['\n', '#', ':', '[', '{', '"', '\'']) {
        return None;
    }
    match yaml_serde::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => Some(v),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum RefError {
    /// `${NAME}` with NAME unset and no default.
    Unset { name: String, reference: String },
    /// Not `${NAME}` / `${NAME:-default}`; `snippet` is the offending text.
    Malformed { snippet: String, reason: &'static str },
}

impl RefError {
    fn message(&self, secret_field: bool) -> String {
        match self {
            RefError::Unset { name, reference } => {
                format!("environment variable {name} is not set (referenced as {reference})")
            }
            // The text of a secret field may be a literal key: don't echo it.
            RefError::Malformed { reason, .. } if secret_field => {
                format!("invalid variable reference: {reason}; expected ${{NAME}} or ${{NAME:-default}}")
            }
            RefError::Malformed { snippet, reason } => format!(
                "invalid variable reference `{snippet}`: {reason}; expected ${{NAME}} or ${{NAME:-default}} (write $${{ for a literal ${{)"
            ),
        }
    }
}

#[derive(Debug, PartialEq)]
pub(crate) struct Substituted {
    /// The text with every resolvable reference replaced (unset ones by "").
    pub text: String,
    /// The input was exactly one reference, nothing around it.
    pub whole_reference: bool,
    pub errors: Vec<RefError>,
}

/// How deep defaults may nest (`${A:-${B:-${C}}}` is 2).
const MAX_DEFAULT_DEPTH: usize = 8;

/// Replaces the references in one string.
pub(crate) fn substitute(input: &str, env: &Environment) -> Substituted {
    substitute_nested(input, env, 0)
}

/// The end of the reference whose body starts `body` (just after `${`):
/// the `}` that closes it, counting the `${` of references nested in a default.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn substitute_nested(input: &str, env: &Environment, depth: usize) -> Substituted {
    let mut text = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut references = 0usize;
    let mut literal_chars = false;
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        if pos > 0 {
            literal_chars = true;
        }
        text.push_str(&rest[..pos]);
        let at = &rest[pos..];
        if let Some(after) = at.strip_prefix("$${") {
            text.push_str("${");
            literal_chars = true;
            rest = after;
            continue;
        }
        let Some(body_start) = at.strip_prefix("${") else {
            // A lone `$` is just a character.
            text.push('$');
            literal_chars = true;
            rest = &at[1..];
            continue;
        };
        let Some(close) = closing_brace(body_start) else {
            errors.push(RefError::Malformed { snippet: truncate(at, 40), reason: "no closing `}`" });
            text.push_str(at);
            rest = "";
            break;
        };
        let body = &body_start[..close];
        let reference = &at[..close + 3];
        rest = &body_start[close + 1..];
        references += 1;
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_var_name(name) {
            errors.push(RefError::Malformed {
                snippet: truncate(reference, 40),
                reason: if name.is_empty() {
                    "empty variable name"
                } else {
                    "a variable name is letters, digits and `_`, not starting with a digit"
                },
            });
            continue;
        }
        let value = env.get(name).filter(|v| default.is_none() || !v.is_empty());
        match (value, default) {
            (Some(value), _) => text.push_str(&value),
            // A default is itself interpolated, only when it is used.
            (None, Some(default)) if !default.contains('$') => text.push_str(default),
            (None, Some(_)) if depth >= MAX_DEFAULT_DEPTH => errors.push(RefError::Malformed {
                snippet: truncate(reference, 40),
                reason: "defaults nested more than 8 deep",
            }),
            (None, Some(default)) => {
                let inner = substitute_nested(default, env, depth + 1);
                text.push_str(&inner.text);
                errors.extend(inner.errors);
            }
            (None, None) => errors.push(RefError::Unset { name: name.to_owned(), reference: reference.to_owned() }),
        }
    }
    if !rest.is_empty() {
        literal_chars = true;
        text.push_str(rest);
    }
    Substituted { text, whole_reference: references == 1 && !literal_chars, errors }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    fn sub(input: &str, e: &Environment) -> (String, bool) {
        let s = substitute(input, e);
        assert!(s.errors.is_empty(), "{input}: {:?}", s.errors);
        (s.text, s.whole_reference)
    }

    #[test]
    fn replaces_references_anywhere_in_the_text() {
        let e = env(&[("HOST", "lr"), ("PORT", "9621")]);
        assert_eq!(sub("${HOST}", &e), ("lr".into(), true));
        assert_eq!(sub("http://${HOST}:${PORT}/x", &e), ("http://lr:9621/x".into(), false));
        assert_eq!(sub("${HOST}${PORT}", &e), ("lr9621".into(), false));
        assert_eq!(sub("no refs", &e), ("no refs".into(), false));
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        let e = env(&[("EMPTY", ""), ("SET", "v")]);
        assert_eq!(sub("${UNSET:-d}", &e).0, "d");
        assert_eq!(sub("${EMPTY:-d}", &e).0, "d");
        assert_eq!(sub("${SET:-d}", &e).0, "v");
        assert_eq!(sub("${UNSET:-}", &e).0, "");
        assert_eq!(sub("${UNSET:-a b:c}", &e).0, "a b:c");
        // Without a default an empty variable is just empty.
        assert_eq!(sub("${EMPTY}", &e), (String::new(), true));
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal_and_lone_dollars_stay() {
        let e = env(&[("A", "x")]);
        assert_eq!(sub("$${A}", &e), ("${A}".into(), false));
        assert_eq!(sub("cost $5 and $$ and ${A}", &e).0, "cost $5 and $$ and x");
        assert_eq!(sub("$${A}${A}", &e), ("${A}x".into(), false));
        assert_eq!(sub("a$", &e).0, "a$");
    }

    #[test]
    fn unset_variables_are_each_reported() {
        let s = substitute("${A}-${B}-${C:-c}", &env(&[]));
        assert_eq!(
            s.errors,
            vec![
                RefError::Unset { name: "A".into(), reference: "${A}".into() },
                RefError::Unset { name: "B".into(), reference: "${B}".into() },
            ]
        );
        assert_eq!(s.text, "--c");
        assert_eq!(s.errors[0].message(false), "environment variable A is not set (referenced as ${A})");
    }

    #[test]
    fn malformed_references_are_reported() {
        let e = env(&[]);
        for bad in ["${}", "${1A}", "${A B}", "${A:?x}", "x ${OPEN"] {
            let s = substitute(bad, &e);
            assert_eq!(s.errors.len(), 1, "{bad}");
            assert!(matches!(s.errors[0], RefError::Malformed { .. }), "{bad}");
        }
        let msg = substitute("${A B}", &e).errors[0].message(false);
        assert!(msg.contains("`${A B}`"), "{msg}");
        // Secret fields: the text is not echoed.
        let msg = substitute("${my-literal-key", &e).errors[0].message(true);
        assert!(!msg.contains("my-literal-key"), "{msg}");
    }

    #[test]
    fn defaults_nest_and_are_never_left_literal() {
        let e = env(&[("D", "from-d"), ("C", "from-c"), ("EMPTY", "")]);
        assert_eq!(sub("${UNSET:-${D}}", &e), ("from-d".into(), true));
        assert_eq!(sub("${C:-${D}}", &e).0, "from-c");
        assert_eq!(sub("${EMPTY:-${UNSET:-deep ${D}!}}", &e).0, "deep from-d!");
        assert_eq!(sub("x${UNSET:-a${D}b}y", &e).0, "xafrom-dby");
        assert_eq!(sub("${UNSET:-$${D}}", &e).0, "${D}");
        // A default that is not used is not looked at: its unset variable is no problem.
        assert_eq!(sub("${C:-${NOT_SET}}", &e).0, "from-c");
        let s = substitute("${UNSET:-${ALSO_UNSET}}", &e);
        assert_eq!(s.errors, vec![RefError::Unset { name: "ALSO_UNSET".into(), reference: "${ALSO_UNSET}".into() }]);
        let deep = format!("{}x{}", "${U:-".repeat(40), "}".repeat(40));
        let s = substitute(&deep, &e);
        assert!(matches!(s.errors.as_slice(), [RefError::Malformed { .. }]), "{:?}", s.errors);
        assert!(!s.text.contains("${"), "never silently literal: {}", s.text);
    }

    #[test]
    fn typed_scalar_reads_yaml_numbers_and_bools_only() {
        assert_eq!(typed_scalar("9622"), Some(Value::Number(9622.into())));
        assert!(matches!(typed_scalar("2.5"), Some(Value::Number(_))));
        assert_eq!(typed_scalar("true"), Some(Value::Bool(true)));
        assert_eq!(typed_scalar("abc"), None);
        assert_eq!(typed_scalar(""), None);
        assert_eq!(typed_scalar("null"), None);
        assert_eq!(typed_scalar("1: 2"), None);
        assert_eq!(typed_scalar("[1]"), None);
    }

    #[test]
    fn tree_walk_tracks_paths_candidates_and_poison() {
        let mut v: Value = yaml_serde::from_str(
            "a:\n  port: ${PORT}\n  name: ${PORT}x\n  list: [\"${MISSING}\", ok]\n  ctx: ${CTX}\n  lit: $${PORT}\n",
        )
        .unwrap();
        let out = interpolate(&mut v, &env(&[("PORT", "9622"), ("CTX", "CTX1")]));
        let paths: Vec<String> = out.problems.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(paths, vec!["a.list[0]"]);
        assert_eq!(out.poisoned.len(), 1);
        let candidates: Vec<String> = out.typed_candidates.iter().map(|p| p.to_string()).collect();
        assert_eq!(candidates, vec!["a.port"]);
        assert_eq!(v["a"]["port"], Value::String("9622".into()));
        assert_eq!(v["a"]["name"], Value::String("9622x".into()));
        assert_eq!(v["a"]["ctx"], Value::String("CTX1".into()));
        assert_eq!(v["a"]["lit"], Value::String("${PORT}".into()));
    }
}
