#!/usr/bin/env bash
# Provides .local/bin/promtool (from the Debian package `prometheus`, extracted)
# for the metrics and alert-rule tests (tests/tests/e2e_serve.rs, monitoring.rs).
exec bash "$(dirname "$0")/deb-tool.sh" prometheus promtool .local/bin
