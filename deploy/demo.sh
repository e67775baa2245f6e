#!/usr/bin/env bash
# `make demo`: set up (the light `demo` profile: no JDK, no torch), start the API server and the prediction service
# on embedded defaults under .demo/ (SQLite metadata, local artifacts, DuckDB + Parquet offline store, SQLite online
# store, local prediction-log spool), then walk one model from features to predictions (deploy/demo/walkthrough.py).
# Idempotent: each run stops the previous demo's servers and starts from a clean .demo/. The servers keep running
# afterwards so you can try the API and the prediction service; `make demo-stop` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=$PWD/.demo
API_PORT=${BOTTEGA_DEMO_API_PORT:-8700}
SERVE_PORT=${BOTTEGA_DEMO_SERVE_PORT:-8701}
started=$(date +%s)

stop() {
  for name in serve api; do
    pidfile=$DEMO/$name.pid
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$pidfile"
    fi
  done
}

if [ "${1:-}" = "stop" ]; then
  stop
  echo "demo: stopped"
  exit 0
fi

bash deploy/setup.sh demo
stop
rm -rf "$DEMO"
mkdir -p "$DEMO/home"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$API_PORT" "$SERVE_PORT"; do
  port_free "$port" || { echo "demo: port $port is taken; set BOTTEGA_DEMO_API_PORT / BOTTEGA_DEMO_SERVE_PORT" >&2; exit 1; }
done

export BOTTEGA_HOME=$DEMO/home
export BOTTEGA_URL=http://127.0.0.1:$API_PORT
export BOTTEGA_DEMO_SERVE_URL=http://127.0.0.1:$SERVE_PORT
export PYTHONUNBUFFERED=1

wait_http() {  # url, what, log
  for _ in $(seq 300); do
    .venv/bin/python -c "import httpx,sys; sys.exit(httpx.get('$1', timeout=1).status_code >= 500)" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "demo: $2 did not start; its log:" >&2
  tail -30 "$3" >&2
  exit 1
}

echo "demo: starting the API server on $BOTTEGA_URL (log: .demo/api.log)"
setsid .venv/bin/bottega server --port "$API_PORT" --log-level warning >"$DEMO/api.log" 2>&1 &
echo $! > "$DEMO/api.pid"
wait_http "$BOTTEGA_URL/healthz" "the API server" "$DEMO/api.log"
BOTTEGA_TOKEN=$(cat "$BOTTEGA_HOME/bootstrap-token")
export BOTTEGA_TOKEN

echo "demo: starting the prediction service on $BOTTEGA_DEMO_SERVE_URL (log: .demo/serve.log)"
setsid .venv/bin/bottega serve --port "$SERVE_PORT" --workers 1 >"$DEMO/serve.log" 2>&1 &
echo $! > "$DEMO/serve.pid"
wait_http "$BOTTEGA_DEMO_SERVE_URL/healthz" "the prediction service" "$DEMO/serve.log"

.venv/bin/python deploy/demo/walkthrough.py
echo
echo "demo: done in $(( $(date +%s) - started )) s; the API and the prediction service keep running (make demo-stop)"
