# memory-connector: the commands a person (and CI) runs.
#   make run   - the main job on embedded defaults: a Memory API simulator with
#                sample data, one real `sync` in direct mode into .local/, then `status`
#   make test  - every test
#   make bench - performance figures against their targets (release-like
#                `perf` profile; table + target/bench/latest.json)
SHELL := /bin/bash
CARGO ?= cargo
LOCAL := .local
BIN := target/debug

.PHONY: run test build lint clean-local help bench

help:
	@echo "make run    - sync sample memories from a local Memory API simulator into .local/ (direct mode)"
	@echo "make test   - run every test"
	@echo "make lint   - clippy on all targets"
	@echo "make bench  - performance figures vs targets (target/bench/latest.json)"

build:
	$(CARGO) build -p memory-connector -p memory-connector-tests --bins

run: build
	@bash tests/scripts/run-demo.sh "$(BIN)" "$(LOCAL)"

test:
	@bash tests/scripts/promtool.sh
	@bash tests/scripts/schemathesis.sh
	@bash tests/scripts/check-deploy.sh
	@bash tests/scripts/with-lightrag.sh $(CARGO) test --workspace --no-fail-fast

# Not part of `make test` (tests/tests/bench_smoke.rs runs the driver on N=200 there).
PERF := target/perf
bench:
	$(CARGO) build --profile perf -p memory-connector -p memory-connector-tests --bin memory-connector --bin bench
	$(PERF)/bench --connector $(PERF)/memory-connector --profile perf --out-dir target/bench $(BENCH_ARGS)

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-local:
	rm -rf $(LOCAL)
