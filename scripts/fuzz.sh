#!/usr/bin/env bash
# The Kineto scanner (ingest/_kineto_scan.c) reads every uploaded byte, so it gets what C
# parsers of untrusted input get: sanitizer builds and a coverage-guided fuzzer.
#
#   bash scripts/fuzz.sh sanitize [pytest args]   the scanner's agreement tests under a gcc
#                                                 AddressSanitizer + UBSan build
#   bash scripts/fuzz.sh fuzz [SECONDS] [libFuzzer args]
#                                                 atheris + libFuzzer over a clang ASan + UBSan
#                                                 build with coverage, seeded from the shared
#                                                 traces; the oracle is the msgspec path
#                                                 FUZZ_CORPUS=DIR keeps the corpus between runs,
#                                                 FUZZ_ARTIFACTS=DIR is where findings go,
#                                                 FUZZ_PLANT=plant-overread|plant-disagreement
#                                                 plants a bug (the tests check it is caught)
#   bash scripts/fuzz.sh build-asan DIR | build-fuzz DIR [PLANT]   only the build
#
# Each build goes to a temporary folder and is loaded in place of the installed module by
# tests/fuzz/instrumented.py: the installed extension is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SRC=ingest/_kineto_scan.c
HEADERS=(ingest/_kineto_json.h ingest/_kineto_arrow.h ingest/_kineto_table.h)
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
# Every finding stops the run: a sanitizer report is a failure, never a warning.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Copy the sources; for the fuzzer, scan on two threads from 1 KiB instead of 4 MiB so that
# small inputs reach the split path too (a split must never change the result, which the
# oracle checks).  A planted bug proves the fuzzer and its oracle catch one.
stage() {
    local dir=$1 split=$2 plant=${3:-}
    mkdir -p "$dir/src"
    cp "$SRC" "${HEADERS[@]}" "$dir/src/"
    local c="$dir/src/_kineto_scan.c"
    if [ -n "$split" ]; then
        sed -i "s/^#define SPLIT_MIN_BYTES (4 << 20)$/#define SPLIT_MIN_BYTES ($split)/" "$c"
        grep -q "^#define SPLIT_MIN_BYTES ($split)$" "$c" || { echo "fuzz.sh: SPLIT_MIN_BYTES not found in $SRC" >&2; exit 2; }
    fi
    case "$plant" in
        "") ;;
        plant-overread)  # read one byte past the end of the input while skipping whitespace
            sed -i 's/while (p < end && (\*p == /while (p <= end \&\& (*p == /' "$dir/src/_kineto_json.h" ;;
        plant-disagreement)  # every grid's x axis one too big
            sed -i 's/put_int(t, col + i, x.ival);/put_int(t, col + i, x.ival + (i == 0));/' "$c" ;;
        *) echo "fuzz.sh: unknown plant $plant" >&2; exit 2 ;;
    esac
    if [ -n "$plant" ] && cmp -s "$SRC" "$c" && cmp -s ingest/_kineto_json.h "$dir/src/_kineto_json.h"; then
        echo "fuzz.sh: could not plant $plant" >&2; exit 2
    fi
}

build_asan() {  # gcc, the compiler the package itself is built with
    local dir=$1
    stage "$dir" "" "${FUZZ_PLANT:-}"
    gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
        -I"$INCLUDE" -pthread "$dir/src/_kineto_scan.c" -o "$dir/_kineto_scan$SUFFIX"
    echo "$dir/_kineto_scan$SUFFIX"
}

build_fuzz() {  # clang: libFuzzer's coverage counters, with ASan and UBSan
    local dir=$1 plant=${2:-}
    command -v clang >/dev/null || { echo "fuzz.sh: clang not found (apt-get install clang)" >&2; exit 3; }
    stage "$dir" 1024 "$plant"
    clang -shared -fPIC -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
        -fno-omit-frame-pointer -I"$INCLUDE" -pthread "$dir/src/_kineto_scan.c" -o "$dir/_kineto_scan$SUFFIX"
    echo "$dir/_kineto_scan$SUFFIX"
}

# The runtime must come first in the process: CPython itself is not instrumented.
asan_runtime() { gcc -print-file-name=libasan.so; }
atheris_runtime() { "$PY" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))'; }

cmd=${1:-}
shift || true
case "$cmd" in
    build-asan) build_asan "$1" ;;
    build-fuzz) build_fuzz "$@" ;;
    sanitize)
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        so=$(build_asan "$tmp")
        TRACEHOUSE_KINETO_SCAN_SO=$so LD_PRELOAD=$(asan_runtime) \
            "$PY" -m pytest -p tests.fuzz.instrumented -q -p no:cacheprovider --capture=sys -m "not slow" \
            tests/test_kineto_native.py tests/test_fuzz_scanner.py "$@"  # sys: a report on fd 2 is seen
        ;;
    fuzz)
        seconds=${1:-60}
        shift || true
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        so=$(build_fuzz "$tmp" "${FUZZ_PLANT:-}")  # a planted bug only where a test asks
        "$PY" -m tests.fuzz.seeds "$tmp/seeds"
        # Findings outlive the run; FUZZ_CORPUS keeps what one run learnt for the next.
        findings=${FUZZ_ARTIFACTS:-$(mktemp -d "${TMPDIR:-/tmp}/kineto-scan-findings.XXXXXX")}
        corpus=${FUZZ_CORPUS:-$tmp/corpus}
        mkdir -p "$corpus" "$findings"
        rc=0
        TRACEHOUSE_KINETO_SCAN_SO=$so LD_PRELOAD=$(atheris_runtime) TMPDIR=$tmp \
            "$PY" -m tests.fuzz.kineto_scan_fuzz -max_total_time="$seconds" -max_len=16384 -timeout=30 \
            -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$findings/" \
            "$@" "$corpus" "$tmp/seeds" || rc=$?
        if [ -z "${FUZZ_ARTIFACTS:-}" ] && ! rmdir "$findings" 2>/dev/null; then
            echo "fuzz.sh: findings kept in $findings" >&2
        fi
        exit "$rc"
        ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
