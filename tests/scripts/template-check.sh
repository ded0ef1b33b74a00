#!/usr/bin/env bash
# infra/template.yaml against the code (part of `make test`, after the test
# run that recorded the functions' AWS calls):
#   1. `sam validate --lint` (offline);
#   2. the template expanded by aws-sam-translator (tests/scripts/sam-expand.py);
#   3. the checks of shared/src/serverless/template_check: each function's
#      secrets and variables against serverless::FunctionRole, every recorded
#      AWS call allowed on its resource and nothing more granted, alarms,
#      logs and hardening, the sample API events' route.
# aws-sam-cli (which brings aws-sam-translator and cfn-lint) is installed from
# PyPI into .local/sam-venv, pinned and reused. The recorded calls are read
# from MEMORY_CONNECTOR_RECORD_AWS_CALLS (default .local/aws-calls, where
# `make test` records them); without any, that one check is SKIPPED (FAILS
# with REQUIRE_EMULATORS=1).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
VENV="$ROOT/.local/sam-venv"
SAM_CLI_VERSION=1.170.0
TRANSLATOR_VERSION=1.115.0 # the one aws-sam-cli 1.170.0 pins
CARGO="${CARGO:-cargo}"
CALLS="${MEMORY_CONNECTOR_RECORD_AWS_CALLS:-$ROOT/.local/aws-calls}"

. "$ROOT/tests/scripts/skip.sh"

installed() {
  "$VENV/bin/sam" --version 2>/dev/null | grep -q "$SAM_CLI_VERSION" &&
    "$VENV/bin/python" -c "import samtranslator, sys; sys.exit(samtranslator.__version__ != '$TRANSLATOR_VERSION')" 2>/dev/null
}
if ! installed; then
  echo "template check: installing aws-sam-cli==$SAM_CLI_VERSION into $VENV" >&2
  rm -rf "$VENV"
  if ! { python3 -m venv "$VENV" &&
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "aws-sam-cli==$SAM_CLI_VERSION" "aws-sam-translator==$TRANSLATOR_VERSION"; }; then
    skipped "template check: aws-sam-cli could not be installed from PyPI"
    exit $?
  fi
fi

# Offline: no telemetry, a region for the translator's pseudo parameters.
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
status=0
if "$VENV/bin/sam" validate --lint -t infra/template.yaml; then
  echo "ok: sam validate --lint infra/template.yaml"
else
  echo "FAILED: sam validate --lint infra/template.yaml" >&2
  status=1
fi

mkdir -p "$ROOT/.local/template"
EXPANDED="$ROOT/.local/template/expanded.json"
if ! "$VENV/bin/python" tests/scripts/sam-expand.py infra/template.yaml >"$EXPANDED"; then
  echo "FAILED: aws-sam-translator could not expand infra/template.yaml" >&2
  exit 1
fi

skip_args=()
if [[ -z "$(find "$CALLS" -name '*.jsonl' -print -quit 2>/dev/null)" ]]; then
  skipped "template check: no recorded AWS calls in $CALLS (the AWS tests did not run): the roles are not checked against them" || exit 1
  skip_args=(--skip roles_allow_every_recorded_call_and_nothing_more)
fi
# The same feature set as make test's run, so nothing is rebuilt.
MEMORY_CONNECTOR_EXPANDED_TEMPLATE="$EXPANDED" MEMORY_CONNECTOR_RECORD_AWS_CALLS="$CALLS" \
  "$CARGO" test --workspace --features memory-connector/aws --lib -- \
  serverless::template_check --include-ignored "${skip_args[@]}" || status=1
exit $status
