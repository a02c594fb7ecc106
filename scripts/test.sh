#!/usr/bin/env bash
# The whole test suite, headless, in the project's virtual environment (created if absent).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k cluster` or
# `bash scripts/test.sh deepfinder/tests/test_core_io.py` (without a path: deepfinder/tests).
# Without arguments (README, .ci/run) the suite runs in two worker processes, one test module at a
# time each (--dist loadfile, so a module's shared setup is made once), in collection order (the
# longest module first, see deepfinder/tests/conftest.py): while one trains a model, the other runs
# the Scipion projects, windows and engine processes, which spend much of their time waiting.
source "$(dirname "$0")/setup_env.sh"
cd "$REPO"
if [ $# -eq 0 ]; then
    set -- -n 2 --dist loadfile --no-loadscope-reorder
fi
exec "$PY" -m pytest "$@"
