#!/usr/bin/env bash
# Feature-store benchmarks against Feast: one command per benchmark.
#   bench/feature_store/run.sh online|training|materialize|stream|all [--quick] [--rows N] [--help for more]
# Needs the project venv (make setup) and the running services (make services-up). Creates Feast's own venv at
# bench/.venv-feast from requirements-feast.txt on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ! -x .venv/bin/python ]]; then
  echo "no .venv: run 'make setup' first" >&2
  exit 2
fi
feast_venv=bench/.venv-feast
requirements=bench/feature_store/requirements-feast.txt
stamp="$feast_venv/.requirements"
if [[ ! -f "$stamp" ]] || ! cmp -s "$requirements" "$stamp"; then
  echo "creating $feast_venv from $requirements ..." >&2
  .venv/bin/uv venv --quiet --allow-existing --python .venv/bin/python "$feast_venv"
  .venv/bin/uv pip install --quiet --python "$feast_venv/bin/python" -r "$requirements"
  cp "$requirements" "$stamp"
fi
eval "$(.venv/bin/python deploy/services/svc.py env)"
exec .venv/bin/python bench/feature_store/runner.py "$@"
