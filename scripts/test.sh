#!/usr/bin/env bash
# Sets up .venv with promptopt and its dev tools, then lints, type-checks and runs the tests.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k scorer`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The distribution is promptopt-cli now: a .venv made before the rename still has the old
# `promptopt` one, whose files (the command among them) would clash with it.
.venv/bin/python -m pip uninstall -q -y promptopt >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
