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

.PHONY: run test build lint clean-local help bench deb lambda-build lambda-watch test-localstack cfn-lint template-check

help:
	@echo "make run    - sync sample memories from a local Memory API simulator into .local/ (direct mode)"
	@echo "make test   - run every test"
	@echo "make lint   - rustfmt check, clippy (with and without AWS), unused deps, licences (cargo-shear, cargo-deny)"
	@echo "make bench  - performance figures vs targets (target/bench/latest.json)"
	@echo "make deb    - the Debian package of the release binary (target/debian/)"
	@echo "make lambda-build    - release Lambda bootstraps (cargo lambda build --release --arm64) into target/lambda/"
	@echo "make lambda-watch    - the local Lambda emulator (cargo lambda watch); invoke with config/events/*.json"
	@echo "make test-localstack - the AWS test group against LocalStack (Docker)"

build:
	$(CARGO) build -p memory-connector -p memory-connector-tests --bins

run: build
	@bash tests/scripts/run-demo.sh "$(BIN)" "$(LOCAL)"

# The whole workspace, with the AWS emulators (DynamoDB Local, moto) started
# for the AWS test group and stopped afterwards (tests/scripts/aws-emulators.sh).
# The Lambda functions' tests and the DynamoDB store's tests record the AWS
# calls they send into $(CALLS); the template check then holds
# infra/template.yaml against them (tests/scripts/template-check.sh).
CALLS := $(CURDIR)/$(LOCAL)/aws-calls
test:
	@bash tests/scripts/promtool.sh
	@bash tests/scripts/chromium.sh
	@bash tests/scripts/deb-tool.sh shellcheck shellcheck .local/pkgtools/bin
	@bash tests/scripts/schemathesis.sh
	@bash tests/scripts/check-deploy.sh
	rm -rf $(CALLS)
	MEMORY_CONNECTOR_RECORD_AWS_CALLS=$(CALLS) MEMORY_CONNECTOR_FEATURES=aws bash tests/scripts/aws-emulators.sh run \
	  bash tests/scripts/with-lightrag.sh $(CARGO) test --workspace --no-fail-fast --features memory-connector/aws
	MEMORY_CONNECTOR_RECORD_AWS_CALLS=$(CALLS) CARGO=$(CARGO) bash tests/scripts/template-check.sh
	bash tests/scripts/cfn-lint.sh

cfn-lint:
	bash tests/scripts/cfn-lint.sh

# The template against the code and the calls the last `make test` recorded.
template-check:
	MEMORY_CONNECTOR_RECORD_AWS_CALLS=$(CALLS) CARGO=$(CARGO) bash tests/scripts/template-check.sh

# Needs cargo-lambda (pip install cargo-lambda==1.9.2) and, for arm64,
# `rustup target add aarch64-unknown-linux-gnu`.
lambda-build:
	cargo lambda build --release --arm64 -p sync -p cleanup -p api

LAMBDA_PORT ?= 9000
lambda-watch:
	cargo lambda watch -A 127.0.0.1 -P $(LAMBDA_PORT)

# The AWS test group against LocalStack in Docker (infra/localstack).
test-localstack:
	docker compose -f infra/localstack/docker-compose.yaml up -d --wait
	AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:4566 \
	  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 MEMORY_CONNECTOR_FEATURES=aws \
	  $(CARGO) test --no-fail-fast -p memory-connector-core -p sync -p memory-connector -p memory-connector-tests \
	  --features memory-connector-core/aws,memory-connector/aws -- dynamodb secrets rules handler schedules; \
	  status=$$?; docker compose -f infra/localstack/docker-compose.yaml down; exit $$status

# Not part of `make test` (tests/tests/bench_smoke.rs runs the driver on N=200 there).
PERF := target/perf
# The Lambda `sync` bootstrap (figure 5) is built by a second cargo call: in
# the same call, feature unification would link the AWS SDK into the
# memory-connector binary that figures 1-7 measure.
bench:
	$(CARGO) build --profile perf -p memory-connector -p memory-connector-tests --bin memory-connector --bin bench
	$(CARGO) build --profile perf -p sync --bin sync
	$(PERF)/bench --connector $(PERF)/memory-connector --lambda-bootstrap $(PERF)/sync --profile perf --out-dir target/bench $(BENCH_ARGS)

# The Debian package of the release binary (infra/debian/build-deb.sh; the
# package test in `make test` packages the debug binary instead).
deb:
	$(CARGO) build --release --locked -p memory-connector --bin memory-connector
	bash infra/debian/build-deb.sh --binary target/release/memory-connector --out target/debian

# Formatting, clippy on the AWS build and on the build without AWS (the
# binary's default), then the dependency checks: unused dependencies,
# licences, bans, sources, advisories where the database is present
# (tests/scripts/lint-deps.sh).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets --features memory-connector/aws -- -D warnings
	$(CARGO) clippy -p memory-connector-core -p memory-connector --all-targets -- -D warnings
	bash tests/scripts/lint-deps.sh

clean-local:
	rm -rf $(LOCAL)
