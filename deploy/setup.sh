#!/usr/bin/env bash
# `make setup`: installs what is missing on this machine, then the project's virtual environment.
# `deploy/setup.sh demo` (what `make demo` runs) is the light profile: Python only, `.venv` with the server, stores,
# XGBoost and serving extras; no system packages, no torch, no Horovod. A full setup satisfies it too.
#  1. System packages (JDK 17, Maven, PostgreSQL server, a C++ toolchain and CMake for Horovod, wrk for the serving
#     benchmark): apt-get when root,
#     otherwise the exact command to run.
#  2. .venv with uv, `-e .[all,dev]` from the pins in requirements/constraints.txt.
#  3. Horovod 0.28.1 with PyTorch and Gloo, built once from its PyPI sdist (deploy/horovod/build-wheel.sh, cached
#     outside the repo; about 10 minutes the first time) and installed into .venv.
#  4. Bytecode for every installed package (see below).
# Idempotent: a second run checks a stamp (hash of pyproject, constraints, this script and the Horovod script) and
# returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${1:-full}
PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.setup-stamp
DEMO_STAMP=$VENV/.setup-stamp-demo
UV_VERSION=0.13.9
DEMO_EXTRAS="server,store,xgboost,serving"
want=$(cat pyproject.toml requirements/constraints.txt deploy/horovod/build-wheel.sh deploy/setup.sh | sha256sum | cut -c1-16)

if [ "$PROFILE" = "demo" ]; then
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || { echo "setup: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 1; }
  for stamp in "$STAMP" "$DEMO_STAMP"; do
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
      echo "setup: .venv is up to date"
      exit 0
    fi
  done
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" \
    || { echo "setup: creating a venv failed: install python3-venv" >&2; exit 1; }
  [ -x "$VENV/bin/uv" ] || "$VENV/bin/python" -m pip install -q "uv==$UV_VERSION"
  echo "setup: installing bottega[$DEMO_EXTRAS] into $VENV (pinned by requirements/constraints.txt)"
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" -q -c requirements/constraints.txt -e ".[$DEMO_EXTRAS]"
  echo "$want" > "$DEMO_STAMP"
  echo "setup: done (demo profile)"
  exit 0
fi

missing=()
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
command -v java >/dev/null && [ "$(java_major)" -ge 17 ] 2>/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v cmake >/dev/null || missing+=(cmake)
command -v wrk >/dev/null || missing+=(wrk)   # the HTTP load tool of bench/serving (its smoke test runs in make test)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  2>/dev/null || missing+=(python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "run:   sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
[ -x "$VENV/bin/uv" ] || "$VENV/bin/python" -m pip install -q "uv==$UV_VERSION"
echo "setup: installing bottega[all,dev] into $VENV (pinned by requirements/constraints.txt)"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q -c requirements/constraints.txt -e ".[all,dev]"
horovod_wheel=$(deploy/horovod/build-wheel.sh "$VENV")
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --no-deps "$horovod_wheel"
# Bytecode up front: with PYTHONDONTWRITEBYTECODE set (as on CI), every process would otherwise recompile torch,
# sklearn and pyspark from source (~20 s per worker process the torch tests start). Some packages ship files that
# do not compile on purpose (test data), hence `|| true`.
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  >/dev/null 2>&1 || true
echo "$want" > "$STAMP"
echo "setup: done"
