#!/usr/bin/env bash
# The paper's Table II and Fig 7 on this machine: profile the suite at paper scale on the GPU
# with baseline and flash attention (fp16; the first steps of each denoising / decode loop
# profiled, the rest run unprofiled), ingest every trace into its own SQLite file, then print
# Table II, each model's operator breakdown and the GPU's busy / idle split.
#   SUITE=tiny DEVICE=cpu DTYPE=float32 bash scripts/paper_suite.sh   # the same on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SUITE=${SUITE:-paper} DEVICE=${DEVICE:-cuda} DTYPE=${DTYPE:-float16} STEPS=${MAX_PROFILED_STEPS:-2}
OUT=${OUT:-$PWD/data/$SUITE-$DEVICE}
DB=sqlite:///$OUT/tracehouse.sqlite3
VENV=${VENV:-.venv}  # the environment scripts/setup.sh made
TH=$VENV/bin/tracehouse
mkdir -p "$OUT"
$TH collect --suite "$SUITE" --attention both --device "$DEVICE" --dtype "$DTYPE" \
    --max-profiled-steps "$STEPS" --out "$OUT/traces" --ingest --db "$DB"
$TH speedups --db "$DB"
for RUN in $($TH runs --db "$DB" --json | "$VENV/bin/python" -c \
        "import json,sys; print(' '.join(str(r['run_id']) for r in json.load(sys.stdin)))"); do
    $TH breakdown "$RUN" --by operator --db "$DB"
    $TH utilization "$RUN" --db "$DB"
done
