#!/usr/bin/env bash
# Write requirements.lock from a fresh environment holding the newest versions pyproject.toml
# allows (torch stays at the 2.13.0 CPU build).  Run scripts/test-latest.sh first: lock only
# what the suite passed with.
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV=${VENV:-.venv-latest} TRACEHOUSE_LOCK=none
bash scripts/setup.sh
"$VENV/bin/python" scripts/lockfile.py write requirements.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) pins)"
