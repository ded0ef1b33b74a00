#!/usr/bin/env bash
# `make run`: start the Memory API simulator with sample data on a free port,
# run one real sync in direct mode into .local/, print the report and `status`,
# then stop the simulator. A second `make run` finds nothing new to ingest.
set -euo pipefail
bin="$1"; local_dir="$2"
mkdir -p "$local_dir"
port_file="$local_dir/memory-api-sim.port"
rm -f "$port_file"
"$bin/memory-api-sim" --port 0 --seed 42 --contexts DEMO=40 --api-key demo-memory-key \
  --port-file "$port_file" > "$local_dir/memory-api-sim.log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$port_file" ] && break; sleep 0.05; done
[ -s "$port_file" ] || { echo "the Memory API simulator did not start; see $local_dir/memory-api-sim.log" >&2; exit 1; }
export MEMORY_API_URL="http://127.0.0.1:$(cat "$port_file")"
export MEMORY_API_KEY=demo-memory-key
echo "== memory-connector sync (Memory API simulator at $MEMORY_API_URL, documents into $local_dir/lightrag/inputs)"
set +e
"$bin/memory-connector" sync --config config/local.yaml --connector-id demo
code=$?
set -e
echo
echo "== memory-connector status"
"$bin/memory-connector" status --config config/local.yaml --connector-id demo
exit "$code"
