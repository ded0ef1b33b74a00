#!/usr/bin/env bash
# Runs a command with a real LightRAG 1.5.7 server (three, in fact: one open,
# one with an API key, one with login accounts) and the fake OpenAI-compatible LLM on free loopback
# ports, then stops them all. The tests find them through:
#   LIGHTRAG_REAL_URL, LIGHTRAG_REAL_KEYED_URL, LIGHTRAG_REAL_KEY, FAKE_LLM_URL,
#   LIGHTRAG_REAL_LOGIN_URL, LIGHTRAG_REAL_LOGIN_USER, LIGHTRAG_REAL_LOGIN_PASSWORD
# Usage: tests/scripts/with-lightrag.sh COMMAND [ARGS...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/tests/scripts/ensure-lightrag.sh"
run="$root/.local/lightrag-run"
rm -rf "$run"
mkdir -p "$run"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap stop EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

setsid python3 "$root/tests/lightrag/fake_llm.py" --port 0 --port-file "$run/llm.port" > "$run/llm.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run/llm.port" ] && break; sleep 0.05; done
llm="http://127.0.0.1:$(cat "$run/llm.port")"

# MAX_GRAPH_NODES: `lookup by-memory` reads the whole graph (GET /graphs?label=*),
# which a server caps at this many nodes (1000 by default); the shared test
# server holds every test's entities, so the cap is raised (decision 0022).
start_server() { # name port [api-key]
  local dir="$run/$1"
  mkdir -p "$dir"
  cat > "$dir/.env" <<ENV
HOST=127.0.0.1
PORT=$2
WORKING_DIR=$dir/rag_storage
INPUT_DIR=$dir/inputs
LLM_BINDING=openai
LLM_BINDING_HOST=$llm/v1
LLM_MODEL=fake-llm
LLM_BINDING_API_KEY=sk-fake
EMBEDDING_BINDING=openai
EMBEDDING_BINDING_HOST=$llm/v1
EMBEDDING_MODEL=fake-embed
EMBEDDING_DIM=64
EMBEDDING_BINDING_API_KEY=sk-fake
MAX_PARALLEL_INSERT=4
MAX_GRAPH_NODES=100000
ENV
  if [ -n "${3:-}" ]; then echo "LIGHTRAG_API_KEY=$3" >> "$dir/.env"; fi
  if [ -n "${4:-}" ]; then printf 'AUTH_ACCOUNTS=%s\nTOKEN_SECRET=contract-token-secret\n' "$4" >> "$dir/.env"; fi
  # exec: the server is $! itself and leads its own process group (setsid),
  # so stop() ends it and its workers; without exec $! was the subshell and
  # the servers outlived the tests.
  # tests/lightrag/serve.py is lightrag-server plus a hook a test can use to
  # make enqueueing slow (see that file); off unless a test switches it on.
  (cd "$dir" && TIKTOKEN_CACHE_DIR="$root/.local/tiktoken" FAKE_LLM_CONTROL="$llm" \
    exec setsid "$root/.venv/bin/python" "$root/tests/lightrag/serve.py" > "$dir/server.log" 2>&1) &
  pids+=($!)
}
plain_port=$(free_port); keyed_port=$(free_port); login_port=$(free_port)
key="contract-key-$RANDOM$RANDOM"
password="contract-pass-$RANDOM$RANDOM"
start_server plain "$plain_port"
start_server keyed "$keyed_port" "$key"
start_server login "$login_port" "" "connector:$password"
for url in "http://127.0.0.1:$plain_port" "http://127.0.0.1:$keyed_port" "http://127.0.0.1:$login_port"; do
  ok=
  for _ in $(seq 1 240); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url/health" 2>/dev/null; then ok=1; break; fi
    sleep 0.25
  done
  [ -n "$ok" ] || { echo "with-lightrag: $url did not become healthy; logs in $run" >&2; tail -20 "$run"/*/server.log >&2; exit 1; }
done
echo "with-lightrag: LightRAG 1.5.7 at http://127.0.0.1:$plain_port (open), :$keyed_port (API key), :$login_port (accounts); fake LLM at $llm"
export LIGHTRAG_REAL_URL="http://127.0.0.1:$plain_port"
export LIGHTRAG_REAL_KEYED_URL="http://127.0.0.1:$keyed_port"
export LIGHTRAG_REAL_KEY="$key"
export LIGHTRAG_REAL_LOGIN_URL="http://127.0.0.1:$login_port"
export LIGHTRAG_REAL_LOGIN_USER=connector
export LIGHTRAG_REAL_LOGIN_PASSWORD="$password"
export FAKE_LLM_URL="$llm"
set +e
"$@"
code=$?
set -e
exit $code
