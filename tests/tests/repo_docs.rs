//! The repository's docs stand on their own: no file cites a document outside
//! the repository, every `*.md` a file names exists in it, every decision
//! cited by number exists, and each decision's title carries its file's
//! number. Reads the files; starts nothing.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// Folders that are not the repository's own text (build output, installed tools).
const SKIPPED_DIRS: &[&str] = &[".git", ".local", ".venv", "target", "node_modules"];

fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                text_files(&path, out);
            }
            continue;
        }
        let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        let textual = ["rs", "md", "toml", "yaml", "yml", "sh", "py", "service", "txt"].contains(&ext.as_str())
            || ["Makefile", "Dockerfile", "run"].contains(&name.as_str());
        if textual {
            out.push(path);
        }
    }
}

fn files() -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    text_files(&root(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text)))
        .filter(|(p, _)| !p.ends_with("tests/tests/repo_docs.rs"))
        .collect()
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// The `*.md` names a text mentions (`docs/x.md`, `README.md`, `../y.md`).
fn md_names(text: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let mut names = Vec::new();
    for (at, _) in text.match_indices(".md") {
        let after = text[at + 3..].chars().next();
        if after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `.mdx`, `.md_`
        }
        let start = text[..at].rfind(|c: char| !is_name(c)).map_or(0, |i| i + 1);
        let before = text[..start].chars().last();
        let name = &text[start..at + 3];
        let stem = name.trim_end_matches(".md").trim_start_matches(['.', '/']);
        // URLs (`https://host/x.md`) and globs (`*.md`) are not files of ours.
        if stem.is_empty() || name.starts_with("//") || matches!(before, Some(':' | '*' | '@')) {
            continue;
        }
        names.push(name.to_owned());
    }
    names
}

#[test]
fn no_file_cites_a_document_outside_the_repository() {
    let root = root();
    let mut all = Vec::new();
    text_files(&root, &mut all);
    let basenames: Vec<String> =
        all.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    let outside = [["shared", "/spec"].concat(), ["..", "/shared/"].concat()];
    let mut wrong = Vec::new();
    for (path, text) in files() {
        for (n, line) in text.lines().enumerate() {
            for needle in &outside {
                if line.contains(needle.as_str()) {
                    wrong.push(format!("{}:{}: cites {needle}", shown(&path), n + 1));
                }
            }
            for name in md_names(line) {
                let exists = if name.contains('/') {
                    let relative = name.trim_start_matches("./");
                    root.join(relative).exists() || path.parent().is_some_and(|d| d.join(relative).exists())
                } else {
                    basenames.contains(&name)
                };
                if !exists {
                    wrong.push(format!("{}:{}: {name} is not a file of the repository", shown(&path), n + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "write what is needed in the repository's own docs:\n{}", wrong.join("\n"));
}

/// The decision files: (number, file name, title line).
fn decisions() -> Vec<(u32, String, String)> {
    let dir = root().join("docs/decisions");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("docs/decisions") {
        let path = entry.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(number) = name.split('-').next().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let title = std::fs::read_to_string(&path).expect("decision").lines().next().unwrap_or_default().to_owned();
        out.push((number, name, title));
    }
    out.sort();
    out
}

#[test]
fn decision_titles_carry_their_file_numbers() {
    let wrong: Vec<String> = decisions()
        .into_iter()
        .filter(|(number, _, title)| !title.starts_with(&format!("# {number}. ")))
        .map(|(_, name, title)| format!("{name}: {title}"))
        .collect();
    assert!(wrong.is_empty(), "a decision's title starts with `# <its number>. `:\n{}", wrong.join("\n"));
}

/// The numbers cited after "decision" / "decisions" (`decision 0012`,
/// `decisions 0010, 0016`, `decision 2`, `docs/decisions/0009-...`).
fn cited_decisions(line: &str) -> Vec<u32> {
    let lower = line.to_ascii_lowercase();
    let mut found = Vec::new();
    for (at, word) in lower.match_indices("decision") {
        let mut rest = &lower[at + word.len()..];
        rest = rest.strip_prefix('s').unwrap_or(rest);
        let Some(rest) = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('/')) else { continue };
        let mut rest = rest;
        loop {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() || digits.len() > 4 {
                break;
            }
            found.push(digits.parse().expect("digits"));
            rest = &rest[digits.len()..];
            let Some(next) = rest.strip_prefix(", ").or_else(|| rest.strip_prefix(" and ")) else { break };
            rest = next;
        }
    }
    found
}

#[test]
fn every_cited_decision_exists() {
    let numbers: Vec<u32> = decisions().into_iter().map(|(n, _, _)| n).collect();
    assert!(numbers.len() >= 10, "{numbers:?}");
    let mut wrong = Vec::new();
    for (path, text) in files() {
        for (n, line) in text.lines().enumerate() {
            for cited in cited_decisions(line) {
                if !numbers.contains(&cited) {
                    wrong.push(format!("{}:{}: decision {cited} does not exist", shown(&path), n + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_readers_see_what_they_should() {
    assert_eq!(
        md_names("see `docs/memory-api.md`, README.md and https://x.org/a.md or *.md"),
        ["docs/memory-api.md", "README.md"]
    );
    assert_eq!(cited_decisions("(decision 0012) and decisions 0010, 0016; Decision 2"), [12, 10, 16, 2]);
    assert_eq!(cited_decisions("docs/decisions/0009-confirmed.md"), [9]);
    assert!(cited_decisions("a decision about it").is_empty());
}
