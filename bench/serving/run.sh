#!/usr/bin/env bash
# Serving benchmarks: Bottega's prediction service against a bare ONNX Runtime floor and MLflow's model server.
#   bench/serving/run.sh all|floor|bottega|mlflow|deploy [--quick] [--seconds S] [--rounds N] [--help for more]
# Needs the project venv (make setup) and, for the store-feature case, the running services (make services-up).
# Installs wrk (Debian package) when running as root and it is missing; creates MLflow's own venv at
# bench/.venv-mlflow from requirements-mlflow.txt on first use (only for `all` and `mlflow`).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ! -x .venv/bin/python ]]; then
  echo "no .venv: run 'make setup' first" >&2
  exit 2
fi
if ! command -v wrk >/dev/null; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing wrk ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
  else
    echo "wrk is missing (the runner falls back to a slower Python client); install it with:" >&2
    echo "  sudo apt-get install -y wrk" >&2
  fi
fi
bench="${1:-}"
if [[ "$bench" == "all" || "$bench" == "mlflow" ]] && [[ " $* " != *" --no-mlflow "* ]]; then
  mlflow_venv=bench/.venv-mlflow
  requirements=bench/serving/requirements-mlflow.txt
  stamp="$mlflow_venv/.requirements"
  if [[ ! -f "$stamp" ]] || ! cmp -s "$requirements" "$stamp"; then
    echo "creating $mlflow_venv from $requirements ..." >&2
    .venv/bin/uv venv --quiet --allow-existing --python .venv/bin/python "$mlflow_venv"
    .venv/bin/uv pip install --quiet --python "$mlflow_venv/bin/python" -r "$requirements"
    cp "$requirements" "$stamp"
  fi
fi
eval "$(.venv/bin/python deploy/services/svc.py env)"
exec .venv/bin/python bench/serving/runner.py "$@"
