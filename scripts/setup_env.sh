# Sourced by the other scripts: creates ./.venv with Python 3.11 if absent and installs the plugin
# (editable, with the test and dev extras) whenever pyproject.toml changed. Sets $PY to the environment's python.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DEEPFINDER_VENV:-$REPO/.venv}"
# PYTHON chooses the interpreter (it must exist); without it, python3.11 or else python3.
PYTHON_BIN="${PYTHON:-python3.11}"
if [ -z "${PYTHON:-}" ] && ! command -v python3.11 >/dev/null; then PYTHON_BIN=python3; fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON_BIN" --version >/dev/null 2>&1; then
        echo "Cannot run the Python interpreter '$PYTHON_BIN': set PYTHON to a working one" >&2
        exit 1
    fi
    echo ">>> Creating the virtual environment $VENV with $("$PYTHON_BIN" --version)"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.deepfinder-installed"
if [ ! -f "$STAMP" ] || [ "$REPO/pyproject.toml" -nt "$STAMP" ]; then
    echo ">>> Installing scipion-em-deepfinder and its dependencies into $VENV (about 1-2 minutes)"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e "$REPO[test,dev]"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
