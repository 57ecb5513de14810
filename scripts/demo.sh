#!/usr/bin/env bash
# Set up, then the main job on the default database (the SQLite file tracehouse.sqlite3 in the
# data directory, the one every plain `tracehouse` command uses; no server to start by hand):
# profile the tiny model suite on this machine (baseline and flash attention), ingest every
# trace, print where Stable Diffusion's time went and each model's flash speedup (Table II),
# then serve the results.
# The data directory is $TRACEHOUSE_DATA_DIR, else the platform's user data directory
# (~/.local/share/tracehouse on Linux); $TRACEHOUSE_DATABASE_URL names another database.
# TRACEHOUSE_DEMO_SERVE=0 stops before serving; TRACEHOUSE_DEMO_SETUP=0 skips the install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TRACEHOUSE_DEMO_SETUP:-1}" != "0" ]; then
    bash scripts/setup.sh
fi
VENV=${VENV:-.venv}  # the environment scripts/setup.sh made
TH=$VENV/bin/tracehouse
DATA_DIR=$("$VENV/bin/python" -c "from tracehouse.core.settings import load_settings; print(load_settings().data_dir)")
# No --db anywhere: the demo's runs are what `tracehouse runs` shows afterwards.
$TH collect --suite tiny --attention both --device cpu --out "$DATA_DIR/traces" --ingest
$TH runs
RUN=$($TH runs --model stable-diffusion --json | "$VENV/bin/python" -c \
  "import json,sys; print([r['run_id'] for r in json.load(sys.stdin) if r['attention_backend']=='baseline'][-1])")
$TH breakdown "$RUN" --by operator
$TH breakdown "$RUN" --by seq_len
$TH breakdown "$RUN" --by component
# Table II on this machine: every model's flash vs baseline pair.
$TH speedups
if [ "${TRACEHOUSE_DEMO_SERVE:-1}" != "0" ]; then
    echo "serving on http://127.0.0.1:8000 (reads need no token here); try:"
    echo "  curl 'http://127.0.0.1:8000/v1/runs/$RUN/breakdown?by=seq_len'"
    echo "dashboard: http://127.0.0.1:8000/ui/ (this run: http://127.0.0.1:8000/ui/runs/$RUN)"
    exec $TH serve --public-read
fi
echo "dashboard: run '$TH serve --public-read', then open http://127.0.0.1:8000/ui/"
