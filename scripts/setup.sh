#!/usr/bin/env bash
# Create the virtual environment and install tracehouse with every extra. Idempotent.
#
# Versions come from requirements.lock (every transitive package, pinned), so a fresh machine
# gets exactly what the suite last passed with.  TRACEHOUSE_LOCK=none installs the newest
# versions pyproject.toml's ranges allow instead (scripts/test-latest.sh): that is how drift is
# found on purpose.  VENV picks the environment's folder (default .venv).
# torch is pinned first: this machine serves torch==2.13.0 (CPU) from local disk, while a
# looser spec would pull a multi-GB CUDA build. The project itself only asks for a range.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=${TRACEHOUSE_LOCK:-requirements.lock}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
fi
if [ "$LOCK" = none ]; then
    # The newest of everything but torch: a newer torch here is a multi-GB CUDA build.
    torch_pin=$(mktemp)
    trap 'rm -f "$torch_pin"' EXIT
    echo "torch==2.13.0" > "$torch_pin"
    pins=(--upgrade --upgrade-strategy eager --constraint "$torch_pin")
else
    pins=(--constraint "$LOCK")
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
# setuptools' notice on every editable install (a note, not a problem) stays out of the output.
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation"
"$VENV/bin/python" -m pip install --quiet "${pins[@]}" -e ".[collect,hta,dev]"
if command -v cc >/dev/null 2>&1 && ! "$VENV/bin/python" -c "import tracehouse.ingest._kineto_scan" 2>/dev/null; then
    echo "setup: the C Kineto scanner failed to build; see: $VENV/bin/python -m pip install -v -e ." >&2
    exit 1
fi
# The dashboard's browser tests drive Debian's chromium through Playwright (which never downloads
# a browser build here); installed only where it is missing and we may.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "setup: chromium did not install; the dashboard's browser tests will skip" >&2
fi
