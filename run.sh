#!/usr/bin/env bash
# Runs the pipeline (default: the bundled taxi data), setting up .venv on first use.
# Every argument goes to pipeline_runner.py: ./run.sh --help, ./run.sh serve, ...
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/python pipeline_runner.py "$@"
