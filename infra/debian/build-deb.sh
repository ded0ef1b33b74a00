#!/usr/bin/env bash
# Builds the Debian package of memory-connector with dpkg-deb from a staging
# directory (decision 0021 says why not cargo-deb):
#   infra/debian/build-deb.sh --binary target/release/memory-connector --out target/debian [--version V] [--fast]
# `make deb` builds the release binary and calls this; the package test
# (tests/tests/deb_package.rs) packages the debug binary with --fast (gzip -1
# instead of xz). Prints the path of the .deb it wrote.
#
# Contents: /usr/bin/memory-connector (stripped), the systemd unit, sysusers.d
# and tmpfiles.d entries (the `connector` user, /var/lib and /var/log
# directories), /etc/memory-connector/config.yaml (a conffile, from
# config/production.yaml), the .env template, the Prometheus rules and Grafana
# dashboard, the example config and the copyright file.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="" out="" version="" compression=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --fast) compression=(-Zgzip -z1); shift ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ] || [ ! -x "$binary" ]; then echo "build-deb.sh: --binary must name the built memory-connector" >&2; exit 2; fi
[ -n "$out" ] || { echo "build-deb.sh: --out DIR is required" >&2; exit 2; }
if [ -z "$version" ]; then
  # [workspace.package] version in Cargo.toml
  version="$(awk '/^\[workspace.package\]/{p=1;next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/,"",$0); sub(/version=/,"",$0); print; exit}' "$root/Cargo.toml")"
fi
arch="$(dpkg --print-architecture)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pkg="$work/debian/memory-connector"
d="$root/infra/debian"

install -D -m 0755 "$binary" "$pkg/usr/bin/memory-connector"
if command -v strip >/dev/null 2>&1; then strip --strip-unneeded "$pkg/usr/bin/memory-connector"; fi
install -D -m 0644 "$root/infra/systemd/memory-connector.service" "$pkg/usr/lib/systemd/system/memory-connector.service"
install -D -m 0644 "$d/memory-connector.sysusers" "$pkg/usr/lib/sysusers.d/memory-connector.conf"
install -D -m 0644 "$d/memory-connector.tmpfiles" "$pkg/usr/lib/tmpfiles.d/memory-connector.conf"
install -D -m 0640 "$root/config/production.yaml" "$pkg/etc/memory-connector/config.yaml"
install -D -m 0644 "$d/env.example" "$pkg/usr/share/memory-connector/env.example"
install -D -m 0644 "$root/infra/prometheus/memory-connector.rules.yml" "$pkg/usr/share/memory-connector/prometheus/memory-connector.rules.yml"
install -D -m 0644 "$root/infra/grafana/memory-connector.json" "$pkg/usr/share/memory-connector/grafana/memory-connector.json"
install -D -m 0644 "$root/config/config.example.yaml" "$pkg/usr/share/doc/memory-connector/config.example.yaml"
install -d -m 0755 "$pkg/DEBIAN"
cat > "$pkg/usr/share/doc/memory-connector/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: memory-connector

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$pkg/usr/share/doc/memory-connector/copyright"

# Shared-library dependencies, as dpkg-shlibdeps computes them for the binary.
depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  printf 'Source: memory-connector\n\nPackage: memory-connector\nArchitecture: any\n' > "$work/debian/control"
  computed="$(cd "$work" && dpkg-shlibdeps -O -e debian/memory-connector/usr/bin/memory-connector 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
  [ -n "$computed" ] && depends="$computed"
else
  echo "build-deb.sh: WARNING: dpkg-shlibdeps (dpkg-dev) not found; Depends is the fixed '$depends'" >&2
fi

installed_size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: memory-connector
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-memory-connector maintainers <memory-connector@localhost>}
Installed-Size: $installed_size
Depends: $depends, systemd | passwd
Section: net
Priority: optional
Description: keeps a LightRAG knowledge graph in sync with a Memory API
 memory-connector pulls new and changed memories (voice memos with
 transcripts, photos, places) from a Memory API on a schedule, turns each
 into a document, writes it to LightRAG and keeps a ledger of what it did,
 so nothing is lost and nothing is sent twice.
 .
 This package runs it as the systemd service memory-connector, as the
 system user connector, with its state in /var/lib/memory-connector and its
 configuration in /etc/memory-connector.
CONTROL
echo /etc/memory-connector/config.yaml > "$pkg/DEBIAN/conffiles"
install -m 0755 "$d/postinst" "$d/prerm" "$d/postrm" "$pkg/DEBIAN/"
(cd "$pkg" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/memory-connector_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compression[@]}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
