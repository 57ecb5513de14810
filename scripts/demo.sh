#!/usr/bin/env bash
# Set up, then the main job on the embedded default (a SQLite file, no server): ingest a
# trace our collectors made and show where its time went.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TRACEHOUSE_DATA_DIR=${TRACEHOUSE_DATA_DIR:-$PWD/data}
DB=${TRACEHOUSE_DATABASE_URL:-sqlite:///$TRACEHOUSE_DATA_DIR/tracehouse.sqlite3}
TH=.venv/bin/tracehouse
RUN=$($TH ingest tests/data/sd_tiny_cpu_baseline.json.gz --db "$DB" --json | .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)[0]['run_id'])")
$TH runs --db "$DB"
$TH breakdown "$RUN" --by operator --db "$DB"
$TH breakdown "$RUN" --by seq_len --db "$DB"
$TH breakdown "$RUN" --by component --db "$DB"
