#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine, idempotently:
#   a virtualenv in .venv with the package and its extras, the native BLAS that MLlib
#   looks for, and Delta Lake's jars (resolved from Maven Central into Ivy's cache).
# Re-running is cheap: each step is skipped when its stamp is current.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.installed"
want=$(cat setup.py | sha256sum | cut -c1-16)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing mlops-spark[dev,demo] into $VENV (first run: a few minutes)"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e ".[dev,demo]" 2>&1 | grep -vE 'BuildBackendWarning|^\s*(!!|\*+|Please be careful|name as your package|with strategy)|^\s*$' >&2 || true
  "$VENV/bin/python" -c "import mlops_spark, pyspark, delta, mlflow" # fail here if the install did not work
  echo "$want" > "$STAMP"
fi

# Native BLAS/LAPACK for MLlib (optional: without it MLlib falls back to Java code).
if ! ldconfig -p 2>/dev/null | grep -q 'libblas.so.3'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing libopenblas0 (native BLAS for MLlib)"
    (apt-get -o DPkg::Lock::Timeout=300 update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq libopenblas0 >/dev/null) \
      || log "could not install libopenblas0; MLlib will use its Java BLAS"
  else
    log "libblas.so.3 not found and not root: MLlib will use its Java BLAS"
  fi
fi

# Headless Chromium: the monitoring report's browser test renders the page in it.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing chromium (headless browser for the report test)"
  (apt-get -o DPkg::Lock::Timeout=300 update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null) \
    || log "could not install chromium; the report's browser test will fail"
fi

# Delta's jars: resolve once so jobs and tests start from the cache.
if [ ! -f "$VENV/.delta-jars" ]; then
  log "resolving Delta Lake jars from Maven Central"
  "$VENV/bin/python" -m mlops_spark.session --resolve-jars
  touch "$VENV/.delta-jars"
fi

# A class-data-sharing archive of Spark's classes: local JVMs start ~2x faster from it
# (docs/performance.md, "Job start-up"). Jobs start without it when it is missing.
if ! "$VENV/bin/python" -c "import sys; from mlops_spark.session import class_archive; sys.exit(not class_archive().exists())"; then
  log "archiving Spark's classes for faster JVM starts (once)"
  "$VENV/bin/python" -m mlops_spark.session --archive-classes 2>/dev/null | tail -1 \
    || log "could not write the class archive; jobs start without it"
fi
