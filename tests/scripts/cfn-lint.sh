#!/usr/bin/env bash
# Lints infra/template.yaml with cfn-lint (PyPI), installed into .local/ (idempotent, reused).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.local/cfn-lint-venv"
VERSION=1.58.0
. "$ROOT/tests/scripts/skip.sh"
if ! "$VENV/bin/cfn-lint" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "cfn-lint: installing cfn-lint==$VERSION into $VENV" >&2
  rm -rf "$VENV"
  if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$VERSION"; }; then
    skipped "cfn-lint: it could not be installed from PyPI"
    exit $?
  fi
fi
"$VENV/bin/cfn-lint" "$ROOT/infra/template.yaml" && echo "cfn-lint: infra/template.yaml OK"
