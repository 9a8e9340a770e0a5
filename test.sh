#!/usr/bin/env bash
# Runs the test suite, setting up .venv on first use. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
