#!/usr/bin/env bash
# `make test` after setup: start the real services, lint, type check, run every test, and stop the services on exit
# whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
trap '$PY deploy/services/svc.py down' EXIT
start=$(date +%s)
$PY deploy/services/svc.py up
$PY -m bottega.feature_store.spark_session fetch  # the Spark Kafka source jars (Maven, cached like the services')
eval "$($PY deploy/services/svc.py env)"
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
export BOTTEGA_REQUIRE_SERVICES=1
echo "== pytest"; .venv/bin/pytest "$@"
echo "make test: passed in $(( $(date +%s) - start )) s (after setup)"
