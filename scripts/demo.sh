#!/usr/bin/env bash
# The main job: generate a small synthetic dataset and run the whole DeepFinder pipeline in a
# headless Scipion project, then print per-class precision/recall/F1. Output in ./output/demo.
source "$(dirname "$0")/setup_env.sh"
cd "$REPO"
exec "$PY" scripts/demo.py "$@"
