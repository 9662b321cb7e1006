#!/usr/bin/env bash
# Submit an mlops_spark job to a Spark master (local[*], spark://, yarn, k8s://) with spark-submit:
#
#   ./spark-submit.sh <job> [options] [-- job arguments]
#   ./spark-submit.sh train --master spark://127.0.0.1:7077 -- --conf conf/flights.yml --env cluster
#   ./spark-submit.sh --help
#
# The flag building, checks and packaging live in mlops_spark/submit.py (python -m
# mlops_spark.submit); this wrapper only finds the Python to run it with:
# $MLOPS_SPARK_PYTHON, else .venv/bin/python next to this script, else python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${MLOPS_SPARK_PYTHON:-}" ]; then
  PY=$MLOPS_SPARK_PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY=$ROOT/.venv/bin/python
else
  PY=python3
fi
export MLOPS_SPARK_ROOT=$ROOT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m mlops_spark.submit "$@"
