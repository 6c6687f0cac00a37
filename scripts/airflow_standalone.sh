#!/usr/bin/env bash
# `make airflow`: the Airflow UI on this machine, no login, with the offline Absorb sandbox beside it.
#
#   AIRFLOW_PORT   API server / UI port            (default 8080)
#   AIRFLOW_HOST   address the API server / UI listens on (default 127.0.0.1: this machine only,
#                  since login is off; 0.0.0.0 opens it, and everything in it, to your network)
#   SANDBOX_PORT   sandbox port                    (default 8765)
#   SEED           sandbox seed (small, medium...) (default small)
#   VAR_DIR        where the Airflow home, sandbox db, logs and outputs go (default var/)
#   AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT   task log server port    (default 8793)
#   AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT  triggerer log server port (default 8794)
#                  change them when another Airflow already uses these ports (Airflow binds the log
#                  servers on every interface; they only answer requests signed with this home's key)
#   AIRFLOW__CORE__TEST_CONNECTION   the connection form's "Test" button (default Enabled here:
#                  local and single-user; Disabled or Hidden turn it off). The Absorb hook's test
#                  authenticates against the portal and reads one page of courses.
# Any other AIRFLOW__SECTION__KEY you export is passed to Airflow as usual.
# To use a real Absorb portal instead of the sandbox, export ABSORB_BASE_URL (or ABSORB_REGION),
# ABSORB_USERNAME, ABSORB_PASSWORD and ABSORB_PRIVATE_KEY first: the sandbox is then not started.
#
# Home: var/airflow (SQLite), the same one the demo uses. Ctrl-C stops Airflow and the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="$ROOT/.venv/bin"
export PATH="$BIN:$PATH"  # airflow standalone starts its components as `airflow ...`
AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"
AIRFLOW_HOST="${AIRFLOW_HOST:-127.0.0.1}"
SANDBOX_PORT="${SANDBOX_PORT:-8765}"

VAR_DIR="$(mkdir -p "${VAR_DIR:-$ROOT/var}" && cd "${VAR_DIR:-$ROOT/var}" && pwd)"
export AIRFLOW_HOME="$VAR_DIR/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__API__HOST="$AIRFLOW_HOST"
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-8793}"
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-8794}"
export AIRFLOW__CORE__TEST_CONNECTION="${AIRFLOW__CORE__TEST_CONNECTION:-Enabled}"
# Plugins come from installed entry points (the project's absorb_reports); no folder to scan.
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$AIRFLOW_HOME/plugins}"
export AIRFLOW__API__BASE_URL="http://localhost:$AIRFLOW_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_PORT/execution/"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
export GX_ANALYTICS_ENABLED=false
export ABSORB_OUTPUT_ROOT="${ABSORB_OUTPUT_ROOT:-$VAR_DIR/output}"
export ABSORB_STATE_ROOT="${ABSORB_STATE_ROOT:-$VAR_DIR/state}"
mkdir -p "$AIRFLOW_HOME" "$VAR_DIR/log"

sandbox_pid=""
airflow_pid=""
stop_all() {
    for pid in $airflow_pid $sandbox_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if [ -z "${ABSORB_BASE_URL:-}" ] && [ -z "${ABSORB_REGION:-}" ]; then
    export ABSORB_SANDBOX_URL="http://127.0.0.1:$SANDBOX_PORT"
    "$BIN/absorb-sandbox" serve --host 127.0.0.1 --port "$SANDBOX_PORT" --db "$VAR_DIR/sandbox.db" \
        --seed "${SEED:-small}" >"$VAR_DIR/log/sandbox.log" 2>&1 &
    sandbox_pid=$!
    for _ in $(seq 1 60); do
        if curl -fsS "$ABSORB_SANDBOX_URL/_sandbox/stats" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$sandbox_pid" 2>/dev/null; then
            echo "the sandbox did not start; see $VAR_DIR/log/sandbox.log:" >&2
            tail -n 20 "$VAR_DIR/log/sandbox.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "Absorb sandbox: $ABSORB_SANDBOX_URL (log: $VAR_DIR/log/sandbox.log)"
else
    echo "Absorb: using the portal from ABSORB_BASE_URL/ABSORB_REGION (no sandbox started)"
fi

"$BIN/airflow" db migrate >"$VAR_DIR/log/airflow-migrate.log" 2>&1 || {
    echo "airflow db migrate failed; see $VAR_DIR/log/airflow-migrate.log" >&2
    exit 1
}
"$BIN/python" "$ROOT/scripts/bootstrap_airflow.py"

echo
echo "Airflow UI: http://localhost:$AIRFLOW_PORT   (no login; listening on $AIRFLOW_HOST; Ctrl-C to stop)"
echo "Run reports: the \"Absorb report\" tab of each run of the Absorb DAGs"
echo
# In the background so that Ctrl-C reaches this script: `airflow standalone` ends cleanly on SIGTERM.
"$BIN/airflow" standalone &
airflow_pid=$!
wait "$airflow_pid"
