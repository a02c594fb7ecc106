#!/usr/bin/env bash
# Lint and format checks (ruff, configured in pyproject.toml), in the project's environment.
source "$(dirname "$0")/setup_env.sh"
cd "$REPO"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
