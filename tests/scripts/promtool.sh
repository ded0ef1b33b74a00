#!/usr/bin/env bash
# Provides .local/bin/promtool for `promtool check metrics` in the serve tests:
# the Debian package `prometheus` is downloaded (not installed) and only its
# promtool binary extracted. Idempotent; never fails the build (the test then
# says loudly that the check was skipped).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.local/bin/promtool"
if [ -x "$dest" ] && "$dest" --version >/dev/null 2>&1; then exit 0; fi
mkdir -p "$root/.local/bin"
if command -v promtool >/dev/null 2>&1; then ln -sf "$(command -v promtool)" "$dest"; exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 0
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download prometheus >/dev/null 2>&1 || true
fi
deb="$(ls prometheus_*.deb 2>/dev/null | head -n1)"
if [ -n "$deb" ] && dpkg-deb -x "$deb" x && [ -x x/usr/bin/promtool ]; then
  install -m 0755 x/usr/bin/promtool "$dest"
  echo "promtool: $("$dest" --version 2>&1 | head -n1)"
else
  echo "WARNING: promtool could not be obtained (apt-get download prometheus failed); 'promtool check metrics' will be SKIPPED" >&2
fi
exit 0
