//! `infra/template.yaml` for the tests that check it against the code (the
//! deployment files are code): its text and one resource's block.

pub const TEXT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml"));

/// The block of the parameter, resource or output `name`: from `  <name>:`
/// to the next entry at the same indentation.
pub fn resource(name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = TEXT.lines().skip_while(|l| *l != header);
    let first = lines.next().unwrap_or_else(|| panic!("infra/template.yaml has no {name}"));
    let body: Vec<&str> = lines
        .take_while(|l| !(l.starts_with("  ") && l.chars().nth(2).is_some_and(|c| c.is_ascii_alphabetic())))
        .collect();
    format!("{first}\n{}", body.join("\n"))
}
