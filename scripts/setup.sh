#!/usr/bin/env bash
# Create .venv and install tracehouse with every extra. Idempotent.
# torch is pinned first: this machine serves torch==2.13.0 (CPU) from local disk, while a
# looser spec would pull a multi-GB CUDA build. The project itself only asks for a range.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[collect,hta,dev]"
