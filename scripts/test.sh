#!/usr/bin/env bash
# The whole test suite, headless, in the project's virtual environment (created if absent).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k cluster` or
# `bash scripts/test.sh deepfinder/tests/test_core_io.py` (without a path: deepfinder/tests).
source "$(dirname "$0")/setup_env.sh"
cd "$REPO"
exec "$PY" -m pytest "$@"
