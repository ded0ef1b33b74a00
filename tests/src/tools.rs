//! The external tools some tests drive (promtool, shellcheck, dpkg, ...):
//! where `make test`'s install scripts put them, and what a test does when
//! one is missing: say SKIPPED loudly, or fail when `REQUIRE_EMULATORS=1`
//! (CI) says every test group must run.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

/// `name` from `.local/bin` or `.local/pkgtools/bin` (the install scripts'
/// folders), else from `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    let root = repo_root();
    let local = [root.join(".local/bin").join(name), root.join(".local/pkgtools/bin").join(name)];
    local.into_iter().find(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()))
    })
}

/// `name`, or `None` after saying that `what` is SKIPPED (a failure when
/// `REQUIRE_EMULATORS=1`).
#[track_caller]
pub fn require(name: &str, what: &str, install: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        skip(what, &format!("{name} is not installed (run {install})"));
    }
    found
}

/// Says loudly that `what` did not run and why; panics when
/// `REQUIRE_EMULATORS=1` (the one rule: [`connector_core::test_support`]).
#[track_caller]
pub fn skip(what: &str, why: &str) {
    connector_core::test_support::skip_test(what, why);
}
