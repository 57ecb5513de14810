"""Coverage-guided fuzzing of the C Kineto scanner with atheris (libFuzzer).  Run through
``scripts/fuzz.sh fuzz``, which builds the scanner with libFuzzer's coverage, ASan and UBSan,
preloads the runtime and names the build in ``TRACEHOUSE_KINETO_SCAN_SO``.  Arguments are
libFuzzer's.  Coverage is the C scanner's (Python is not instrumented: it is the oracle)."""

from __future__ import annotations

import sys

import atheris

from tests.fuzz.instrumented import ENV, SCANNER

if SCANNER is None:
    sys.exit(f"{ENV} must name an instrumented scanner build (scripts/fuzz.sh fuzz)")

from tests.fuzz.oracle import Oracle

ORACLE = Oracle()


def test_one_input(data: bytes) -> None:
    ORACLE.check(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
