#!/usr/bin/env bash
# Provides headless Chromium and its WebDriver for the console's browser test
# (tests/tests/e2e_console.rs): Debian's `chromium` and `chromium-driver`,
# installed with apt-get when missing (root or passwordless sudo). Not pinned:
# Debian's archive serves only the current (security) build of Chromium, and
# the two packages come from the same source, so their versions always match.
# Idempotent; never fails the build (the test then says loudly that it was
# SKIPPED, or fails under REQUIRE_EMULATORS=1).
set -uo pipefail
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
if have; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "WARNING: chromium/chromium-driver missing and no root to apt-get them; the console's browser test will be SKIPPED" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "WARNING: no apt-get for chromium/chromium-driver; the console's browser test will be SKIPPED" >&2
  exit 0
fi
echo "chromium.sh: installing chromium and chromium-driver with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
install() { $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }
install || { $sudo apt-get update -qq >/dev/null 2>&1; install; } ||
  echo "WARNING: apt-get install chromium chromium-driver failed; the console's browser test will be SKIPPED" >&2
have && echo "chromium.sh: $(chromedriver --version 2>/dev/null | head -n1)" >&2
exit 0
