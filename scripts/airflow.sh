#!/usr/bin/env bash
# The optional Airflow install, kept out of the base .venv: makes .venv-airflow (Python 3.10)
# with exactly requirements-airflow.lock plus this package, the first time and whenever the
# lock or setup.py changes, and Airflow's metadata DB (SQLite) in $AIRFLOW_HOME.
#
#   scripts/airflow.sh                      # set up only
#   scripts/airflow.sh dags list            # then run an airflow command in that env
#   scripts/airflow.sh dags test taxi       # one run of the DAG, in this process
#
# AIRFLOW_HOME defaults to output/airflow; the DAG folder is dags/ (see dags/taxi_dag.py).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

VENV=${AIRFLOW_VENV:-.venv-airflow}
UV_VERSION=0.13.9
export AIRFLOW_HOME=${AIRFLOW_HOME:-$REPO/output/airflow}
export AIRFLOW__CORE__DAGS_FOLDER=${AIRFLOW__CORE__DAGS_FOLDER:-$REPO/dags}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
# Parsing the DAG imports TensorFlow and TFX: far more than Airflow's 30 s default on a
# busy machine.
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=${AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT:-600}
export AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT=${AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT:-900}
# `dags test` and the SequentialExecutor run each task in this process or a child of it.
export AIRFLOW__CORE__EXECUTOR=${AIRFLOW__CORE__EXECUTOR:-SequentialExecutor}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

stamp="$VENV/.installed-$(cat requirements-airflow.lock setup.py | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    py=""
    for candidate in "${PYTHON:-}" python3.10; do
      if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        py=$candidate; break
      fi
    done
    [ -n "$py" ] || { echo "airflow.sh: Python 3.10 is required; set PYTHON=/path/to/python3.10" >&2; exit 1; }
    echo "airflow.sh: creating $VENV with $py" >&2
    "$py" -m venv "$VENV"
  fi
  if [ ! -x "$VENV/bin/uv" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  echo "airflow.sh: installing requirements-airflow.lock into $VENV" >&2
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r requirements-airflow.lock
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  mkdir -p "$AIRFLOW_HOME"
  "$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
    || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
fi
[ $# -eq 0 ] || exec "$VENV/bin/airflow" "$@"
