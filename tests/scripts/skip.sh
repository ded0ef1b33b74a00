# Sourced by the test scripts: the shell side of the one rule in
# shared/src/test_support.rs. A check that cannot find its emulator, server
# or tool says loudly that it is SKIPPED; with REQUIRE_EMULATORS=1 (CI,
# .ci/run) it is a failure instead.
#   skipped "what is not checked, and why"   -> returns 0 (skipped) or 1 (required)
emulators_required() { [[ -n "${REQUIRE_EMULATORS:-}" && "${REQUIRE_EMULATORS}" != 0 ]]; }
skipped() {
  if emulators_required; then
    printf '\n!!!!!!!! FAILED (REQUIRE_EMULATORS=1 forbids skipping): %s\n\n' "$1" >&2
    return 1
  fi
  printf '\n!!! SKIPPED %s\n\n' "$1" >&2
  return 0
}
