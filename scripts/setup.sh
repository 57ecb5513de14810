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
# The scanner's fuzzer (tests/test_fuzz_scanner.py) builds it with clang's libFuzzer coverage.
if ! command -v clang >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq clang >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq clang >/dev/null 2>&1; } \
        || echo "setup: could not install clang; the scanner's fuzz tests will skip" >&2
fi
# The Kineto scanner (a C extension) is optional in the build: without a compiler ingest is
# only slower.  Where there is one, a failed build is a bug; removing the in-place copy first
# keeps a stale one from hiding it.
rm -f ingest/_kineto_scan.*.so
.venv/bin/python -m pip install --quiet -e ".[collect,hta,dev]"
if command -v cc >/dev/null 2>&1 && ! .venv/bin/python -c "import tracehouse.ingest._kineto_scan" 2>/dev/null; then
    echo "setup: the C Kineto scanner failed to build; see: .venv/bin/python -m pip install -v -e ." >&2
    exit 1
fi
