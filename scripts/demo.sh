#!/usr/bin/env bash
# Set up, then the main job on the embedded default (a SQLite file under ./data, no server to
# start by hand): profile the tiny model suite on this machine (baseline and flash attention),
# ingest every trace, print where Stable Diffusion's time went and each model's flash speedup
# (Table II), then serve the results.
# TRACEHOUSE_DEMO_SERVE=0 stops before serving.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TRACEHOUSE_DATA_DIR=${TRACEHOUSE_DATA_DIR:-$PWD/data}
DB=${TRACEHOUSE_DATABASE_URL:-sqlite:///$TRACEHOUSE_DATA_DIR/tracehouse.sqlite3}
TH=.venv/bin/tracehouse
$TH collect --suite tiny --attention both --device cpu --out "$TRACEHOUSE_DATA_DIR/traces" --ingest --db "$DB" 2>/dev/null
$TH runs --db "$DB"
RUN=$($TH runs --db "$DB" --model stable-diffusion --json | .venv/bin/python -c \
  "import json,sys; print([r['run_id'] for r in json.load(sys.stdin) if r['attention_backend']=='baseline'][-1])")
$TH breakdown "$RUN" --by operator --db "$DB"
$TH breakdown "$RUN" --by seq_len --db "$DB"
$TH breakdown "$RUN" --by component --db "$DB"
# Table II on this machine: every model's flash vs baseline pair.
$TH speedups --db "$DB"
if [ "${TRACEHOUSE_DEMO_SERVE:-1}" != "0" ]; then
    echo "serving on http://127.0.0.1:8000 (reads need no token here); try:"
    echo "  curl 'http://127.0.0.1:8000/v1/runs/$RUN/breakdown?by=seq_len'"
    echo "dashboard: http://127.0.0.1:8000/ui/ (this run: http://127.0.0.1:8000/ui/runs/$RUN)"
    exec $TH serve --db "$DB" --public-read
fi
echo "dashboard: run 'tracehouse serve --db $DB --public-read', then open http://127.0.0.1:8000/ui/"
