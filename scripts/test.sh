#!/usr/bin/env bash
# Set up, make sure PostgreSQL is up, run the whole suite on SQLite and PostgreSQL.
# VENV and TRACEHOUSE_LOCK pass through to scripts/setup.sh (see scripts/test-latest.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bash scripts/setup.sh
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
export TRACEHOUSE_TEST_POSTGRES_URL=${TRACEHOUSE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
exec "$VENV/bin/python" -m pytest -n 2 --dist worksteal -q "$@"
