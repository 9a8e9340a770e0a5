#!/usr/bin/env bash
# Makes .venv (Python 3.10, with pip) and installs exactly requirements.lock plus this
# package, the first time and whenever the lock, setup.py or this script changes; otherwise
# instant.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
UV_VERSION=0.13.9
stamp="$VENV/.installed-$(cat requirements.lock setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

find_python() {
  for candidate in "${PYTHON:-}" python3.10 "$(PYENV_VERSION=3.10.13 pyenv which python3.10 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(find_python) || {
    echo "bootstrap: Python 3.10 is required (TFX 1.15 supports 3.9-3.10) and none was found." >&2
    echo "bootstrap: install it (e.g. 'pyenv install 3.10.13') or set PYTHON=/path/to/python3.10." >&2
    exit 1
  }
  echo "bootstrap: creating $VENV with $py" >&2
  "$py" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
echo "bootstrap: installing requirements.lock into $VENV (first time: a few minutes)" >&2
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r requirements.lock
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
# uv, unlike pip, does not compile bytecode at install time; without it every process that
# imports TFX compiles ~7,000 modules again whenever PYTHONDONTWRITEBYTECODE is set (or the
# venv is read-only): ~10 s per run, per Beam worker, per test subprocess.
echo "bootstrap: compiling bytecode" >&2
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null \
  || echo "bootstrap: some files did not compile (harmless: they are compiled when imported)" >&2
rm -f "$VENV"/.installed-*
touch "$stamp"
