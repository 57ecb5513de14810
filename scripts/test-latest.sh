#!/usr/bin/env bash
# Run the suite against the newest versions pyproject.toml allows, in a separate environment
# (.venv-latest), then list every package whose version differs from requirements.lock.
# A pass means the lock can move forward: scripts/lock.sh writes the new one.
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV=.venv-latest TRACEHOUSE_LOCK=none
status=0
bash scripts/test.sh "$@" || status=$?
echo "--- versions that differ from requirements.lock (lock -> newest allowed):"
"$VENV/bin/python" scripts/lockfile.py diff requirements.lock || true  # differences are news, not failures
exit $status
