#!/usr/bin/env bash
# Provides a tool for the tests by downloading (not installing) a Debian
# package and extracting one binary from it:
#   tests/scripts/deb-tool.sh PACKAGE BINARY DEST_DIR
# e.g. `deb-tool.sh shellcheck shellcheck .local/pkgtools/bin`. A tool already
# on PATH is linked instead. Idempotent; never fails the build (the test that
# needs the tool then says loudly that it was SKIPPED).
set -uo pipefail
package="$1" binary="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
case "$3" in /*) dir="$3" ;; *) dir="$root/$3" ;; esac
dest="$dir/$binary"
if [ -x "$dest" ] && "$dest" --version >/dev/null 2>&1; then exit 0; fi
mkdir -p "$dir"
if command -v "$binary" >/dev/null 2>&1; then ln -sf "$(command -v "$binary")" "$dest"; exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 0
if ! apt-get download "$package" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download "$package" >/dev/null 2>&1 || true
fi
deb="$(find . -maxdepth 1 -name "${package}_*.deb" | head -n1)"
if [ -n "$deb" ] && dpkg-deb -x "$deb" x && [ -x "x/usr/bin/$binary" ] && "x/usr/bin/$binary" --version >/dev/null 2>&1; then
  install -m 0755 "x/usr/bin/$binary" "$dest"
  echo "$binary: $("$dest" --version 2>&1 | head -n2 | tr '\n' ' ')"
else
  echo "WARNING: $binary could not be obtained (apt-get download $package failed); the tests that need it will be SKIPPED" >&2
fi
exit 0
