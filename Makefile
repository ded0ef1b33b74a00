# memory-connector: the commands a person (and CI) runs.
#   make run   - the main job on embedded defaults: a Memory API simulator with
#                sample data, one real `sync` in direct mode into .local/, then `status`
#   make test  - every test
SHELL := /bin/bash
CARGO ?= cargo
LOCAL := .local
BIN := target/debug

.PHONY: run test build lint clean-local help

help:
	@echo "make run    - sync sample memories from a local Memory API simulator into .local/ (direct mode)"
	@echo "make test   - run every test"
	@echo "make lint   - clippy on all targets"

build:
	$(CARGO) build -p memory-connector -p memory-connector-tests --bins

run: build
	@bash tests/scripts/run-demo.sh "$(BIN)" "$(LOCAL)"

# The whole workspace, with the AWS emulators (DynamoDB Local, moto) started
# for the AWS test group and stopped afterwards (tests/scripts/aws-emulators.sh).
test:
	MEMORY_CONNECTOR_FEATURES=aws bash tests/scripts/aws-emulators.sh run $(CARGO) test --workspace --no-fail-fast --features memory-connector/aws

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-local:
	rm -rf $(LOCAL)
