#!/bin/bash
# A real sync invoke of the perf `sync` bootstrap: stand-in runtime API (lambda-probe.py),
# DynamoDB Local, the Memory API and LightRAG simulators; prints init, each answer and peak RSS.
# Usage (after `make bench` built target/perf/sync and `cargo build -p memory-connector-tests --bins`):
#   N=20000 MEMORY_CONNECTOR_FEATURES=aws tests/scripts/aws-emulators.sh run bash tests/scripts/lambda-invoke-probe.sh
# (N memories spread over the simulator's days; the Lambda config fetches `day`: ~4% of them.)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"; w=$(mktemp -d)
$root/target/debug/memory-api-sim --context CTX123 --count ${N:-1000} --api-key mem-k --port-file $w/mem.port > $w/mem.log 2>&1 &
mp=$!
$root/target/debug/lightrag-sim --port-file $w/rag.port > $w/rag.log 2>&1 &
rp=$!
trap "kill $mp $rp 2>/dev/null; rm -rf $w" EXIT
for _ in $(seq 100); do [ -s $w/mem.port ] && [ -s $w/rag.port ] && break; sleep 0.05; done
table=probe-$RANDOM
$root/.local/aws/moto-venv/bin/python - "$table" <<'P'
import boto3, os, sys
d = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1")
d.create_table(TableName=sys.argv[1], BillingMode="PAY_PER_REQUEST",
  AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "open_pk")],
  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
  GlobalSecondaryIndexes=[{"IndexName": "open", "KeySchema": [{"AttributeName": "open_pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "KEYS_ONLY"}}])
P
echo '{"connector_id": "personal-memories"}' > $w/event.json
CONFIG_PATH=$root/config/lambda/memory-connector/config.yaml STATE_TABLE=$table \
MEMORY_API_URL=http://127.0.0.1:$(cat $w/mem.port) MEMORY_API_KEY=mem-k \
LIGHTRAG_URL=http://127.0.0.1:$(cat $w/rag.port) \
  python3 $root/tests/scripts/lambda-probe.py $root/target/perf/sync $w/event.json $w/event.json | cut -c1-300
