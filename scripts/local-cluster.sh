#!/usr/bin/env bash
# A real Spark standalone cluster and an MLflow tracking server on this machine (127.0.0.1),
# started from the pyspark install, for trying spark-submit.sh as on a cluster.
#
#   scripts/local-cluster.sh start    # master, worker(s) and MLflow server; prints the exports
#   scripts/local-cluster.sh status   # what runs, and the master's view of workers and apps
#   scripts/local-cluster.sh stop     # stops everything it started (whole process groups)
#
# Settings (environment variables, defaults in brackets):
#   LOCAL_CLUSTER_DIR   state: pids, logs, worker dirs, MLflow store [.cache/local-cluster]
#   SPARK_MASTER_PORT [7077]  SPARK_MASTER_WEBUI_PORT [8080]  SPARK_WORKER_WEBUI_PORT [8081]
#   WORKERS [1]  WORKER_CORES [2]  WORKER_MEMORY [2g]
#   MLFLOW_PORT [5000]  MLFLOW_WORKERS [1]
#   START_TIMEOUT       seconds to wait for each service [120]
#   PYTHON              python with pyspark and mlflow [.venv/bin/python, else python3]
#
# Every service runs in its own process group (setsid); `stop` signals the whole group, so
# executors and Python workers started by a worker stop with it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

STATE=${LOCAL_CLUSTER_DIR:-$ROOT/.cache/local-cluster}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}
MASTER_UI=${SPARK_MASTER_WEBUI_PORT:-8080}
WORKER_UI=${SPARK_WORKER_WEBUI_PORT:-8081}
WORKERS=${WORKERS:-1}
WORKER_CORES=${WORKER_CORES:-2}
WORKER_MEMORY=${WORKER_MEMORY:-2g}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-1}
START_TIMEOUT=${START_TIMEOUT:-120}
HOST=127.0.0.1

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

spark_home() {
  if [ -n "${SPARK_HOME:-}" ]; then echo "$SPARK_HOME"; return; fi
  "$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null \
    || die "cannot import pyspark with $PYTHON (run make bootstrap, or set PYTHON / SPARK_HOME)"
}

mlflow_bin() {
  local dir
  dir=$(dirname "$PYTHON")
  if [ -x "$dir/mlflow" ]; then echo "$dir/mlflow"; else command -v mlflow || die "mlflow not found"; fi
}

port_free() {
  ! "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

is_running() {  # name -> 0 if its recorded process group is alive
  local pidfile="$STATE/$1.pid"
  [ -f "$pidfile" ] && kill -0 -- "-$(cat "$pidfile")" 2>/dev/null
}

launch() {  # name, command...: start in a new session (pgid == pid), record the pid
  local name=$1; shift
  if is_running "$name"; then die "$name is already running (pid $(cat "$STATE/$name.pid")); run stop first"; fi
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
  log "started $name (pid $!, log $STATE/logs/$name.log)"
}

wait_for() {  # description, python predicate over url json
  local what=$1 url=$2 check=$3 name=$4 waited=0
  until "$PYTHON" - "$url" "$check" <<'EOF' 2>/dev/null
import json, sys, urllib.request
url, check = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=3) as resp:
    body = resp.read().decode()
data = json.loads(body) if body.strip().startswith(("{", "[")) else body
sys.exit(0 if eval(check, {"data": data}) else 1)
EOF
  do
    if ! is_running "$name"; then
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      die "$name exited while starting (log: $STATE/logs/$name.log)"
    fi
    waited=$((waited + 1))
    if [ "$waited" -ge "$START_TIMEOUT" ]; then
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      die "$what not ready after ${START_TIMEOUT}s (log: $STATE/logs/$name.log)"
    fi
    sleep 1
  done
  log "$what is ready"
}

start() {
  mkdir -p "$STATE/logs" "$STATE/mlflow/artifacts"
  for port in "$MASTER_PORT" "$MASTER_UI" "$MLFLOW_PORT"; do
    port_free "$port" || die "port $port on $HOST is in use (set SPARK_MASTER_PORT / SPARK_MASTER_WEBUI_PORT / MLFLOW_PORT)"
  done
  local home
  home=$(spark_home)
  export SPARK_HOME=$home SPARK_LOCAL_IP=$HOST SPARK_LOG_DIR=$STATE/logs
  # Executors run Python with this interpreter (the cluster's "installed" Python).
  export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$PYTHON}
  trap 'log "start failed: stopping what was started"; stop' EXIT

  launch master "$home/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host "$HOST" --port "$MASTER_PORT" --webui-port "$MASTER_UI"
  wait_for "Spark master spark://$HOST:$MASTER_PORT" "http://$HOST:$MASTER_UI/json/" \
    "data['status'] == 'ALIVE'" master

  local i
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$STATE/worker-$i"
    launch "worker-$i" "$home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
      --host "$HOST" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" \
      --webui-port "$((WORKER_UI + i - 1))" --work-dir "$STATE/worker-$i" \
      "spark://$HOST:$MASTER_PORT"
  done
  wait_for "$WORKERS worker(s) with $WORKER_CORES core(s), $WORKER_MEMORY each" "http://$HOST:$MASTER_UI/json/" \
    "sum(w['state'] == 'ALIVE' for w in data['workers']) >= $WORKERS" worker-1

  # MLflow's background job runner (GenAI evaluation) is not needed here and costs ~1 GB.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
    launch mlflow "$(mlflow_bin)" server --host "$HOST" --port "$MLFLOW_PORT" \
    --workers "$MLFLOW_WORKERS" \
    --backend-store-uri "sqlite:///$STATE/mlflow/mlflow.db" \
    --serve-artifacts --artifacts-destination "$STATE/mlflow/artifacts"
  wait_for "MLflow server http://$HOST:$MLFLOW_PORT" "http://$HOST:$MLFLOW_PORT/health" "True" mlflow
  trap - EXIT

  cat <<EOF
export SPARK_MASTER=spark://$HOST:$MASTER_PORT
export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT
# Spark master UI: http://$HOST:$MASTER_UI   MLflow UI: http://$HOST:$MLFLOW_PORT
EOF
}

stop_one() {  # name: TERM the process group, KILL it after 15 s
  local name=$1 pidfile="$STATE/$1.pid" pgid waited=0
  [ -f "$pidfile" ] || return 0
  pgid=$(cat "$pidfile")
  if kill -0 -- "-$pgid" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    while kill -0 -- "-$pgid" 2>/dev/null && [ "$waited" -lt 15 ]; do sleep 1; waited=$((waited + 1)); done
    if kill -0 -- "-$pgid" 2>/dev/null; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
    log "stopped $name (process group $pgid)"
  fi
  rm -f "$pidfile"
}

stop() {
  [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  stop_one mlflow
  local pidfile
  for pidfile in "$STATE"/worker-*.pid; do
    [ -e "$pidfile" ] && stop_one "$(basename "$pidfile" .pid)"
  done
  stop_one master
}

status() {
  local name pidfile any=1
  for pidfile in "$STATE"/*.pid; do
    [ -e "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    if is_running "$name"; then echo "$name: running (pid $(cat "$pidfile"))"; any=0
    else echo "$name: not running (stale pid file)"; fi
  done
  [ "$any" = 0 ] || { echo "nothing running (state: $STATE)"; return 3; }
  "$PYTHON" - "http://$HOST:$MASTER_UI/json/" <<'EOF' || true
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as resp:
    data = json.load(resp)
print(f"master {data['url']}: {data['status']}, {len(data['workers'])} worker(s), "
      f"{len(data['activeapps'])} running app(s), {len(data['completedapps'])} completed")
EOF
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
