#!/usr/bin/env bash
# Installs what the tests against a real LightRAG server need, idempotently:
# - lightrag-hku[api]==1.5.7 in the project-local, git-ignored virtualenv .venv
# - the tiktoken encodings, offline, from the tiktoken-rs crate's files, in
#   .local/tiktoken named as tiktoken's cache expects (sha1 of the download URL)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv
if ! "$venv/bin/python" -c 'import lightrag, importlib.metadata as m; assert m.version("lightrag-hku") == "1.5.7"' 2>/dev/null; then
  echo "ensure-lightrag: installing lightrag-hku[api]==1.5.7 into $venv (large, once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'lightrag-hku[api]==1.5.7'
fi
cache=.local/tiktoken
mkdir -p "$cache"
if [ ! -s "$cache/fb374d419588a4632f3f557e76b4b70aebbca790" ] || [ ! -s "$cache/9b5ad71b2ce5302211f9c61530b329a4922fc6a4" ]; then
  cargo fetch --quiet
  assets=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-0.12.1/assets 2>/dev/null | head -n 1)
  [ -n "$assets" ] || { echo "ensure-lightrag: tiktoken-rs 0.12.1 sources not found after cargo fetch" >&2; exit 1; }
  cp "$assets/o200k_base.tiktoken" "$cache/fb374d419588a4632f3f557e76b4b70aebbca790"
  cp "$assets/cl100k_base.tiktoken" "$cache/9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
fi
echo "ensure-lightrag: ready ($venv, $cache)"
