//! What the workspace's test groups share (test support, not the library's
//! API: compiled for this crate's tests, and with the `test-support` feature
//! the test crates enable).
//!
//! One rule lives here: a test that cannot find what it needs outside this
//! process (an AWS emulator, the real LightRAG server, a checking tool) says
//! loudly that it is SKIPPED, so a plain `cargo test` on a bare machine still
//! passes; with `REQUIRE_EMULATORS=1` (CI, `.ci/run`) it fails instead, so a
//! missing install step can never pass as green.

/// The variable that turns every skip into a failure.
pub const REQUIRE_EMULATORS: &str = "REQUIRE_EMULATORS";

/// Whether `REQUIRE_EMULATORS` is set to anything but empty or `0`.
pub fn emulators_required() -> bool {
    std::env::var(REQUIRE_EMULATORS).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Skips `test` because of `why`: a loud line on stderr, or, with
/// `REQUIRE_EMULATORS=1`, a panic that fails the test.
#[track_caller]
pub fn skip_test(test: &str, why: &str) {
    if emulators_required() {
        panic!("{test} cannot run: {why}. {REQUIRE_EMULATORS}=1 turns this skip into a failure");
    }
    eprintln!("\n!!! SKIPPED {test}: {why}\n");
}

/// [`skip_test`] for the test running on this thread (libtest names the
/// thread after the test).
#[track_caller]
pub fn skip(why: &str) {
    let thread = std::thread::current();
    skip_test(thread.name().unwrap_or("this test"), why);
}

/// The value of `variable` (an emulator's endpoint, a server's URL), or
/// `None` after [`skip_test`] said why `test` cannot run without it.
#[track_caller]
pub fn required_var(variable: &str, test: &str, how_to_get_it: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            skip_test(test, &format!("{variable} is not set; {how_to_get_it}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variable no environment sets: the name is made for this test.
    const MISSING: &str = "MEMORY_CONNECTOR_TEST_SUPPORT_NEVER_SET_7f3a";

    /// Run as a child by the test below: a test whose emulator is missing.
    #[test]
    fn child_missing_its_emulator() {
        if std::env::var_os("MC_TEST_SUPPORT_CHILD").is_none() {
            return;
        }
        assert_eq!(required_var(MISSING, "child_missing_its_emulator", "never set"), None);
    }

    /// The same test without an emulator passes (SKIPPED) on a bare machine
    /// and fails under `REQUIRE_EMULATORS=1`, whatever this run's own setting.
    #[test]
    fn require_emulators_turns_a_skip_into_a_failure() {
        let run = |require: Option<&str>| {
            let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
            child.args([
                "--exact",
                "test_support::tests::child_missing_its_emulator",
                "--test-threads=1",
                "--nocapture",
            ]);
            child.env("MC_TEST_SUPPORT_CHILD", "1").env_remove(REQUIRE_EMULATORS);
            if let Some(value) = require {
                child.env(REQUIRE_EMULATORS, value);
            }
            child.output().expect("run the child test")
        };
        let skipped = run(None);
        assert!(skipped.status.success(), "{}", String::from_utf8_lossy(&skipped.stderr));
        assert!(String::from_utf8_lossy(&skipped.stderr).contains("!!! SKIPPED child_missing_its_emulator"));
        assert!(run(Some("0")).status.success(), "0 means not required");
        let failed = run(Some("1"));
        assert!(!failed.status.success(), "REQUIRE_EMULATORS=1 must fail the test");
        let output = String::from_utf8_lossy(&failed.stdout).into_owned() + &String::from_utf8_lossy(&failed.stderr);
        assert!(output.contains(MISSING) && output.contains("REQUIRE_EMULATORS=1 turns this skip"), "{output}");
    }

    #[test]
    fn a_set_variable_is_returned() {
        assert!(required_var("PATH", "test_support", "it always is").is_some());
    }
}
