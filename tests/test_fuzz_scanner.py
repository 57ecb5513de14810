"""The C Kineto scanner against untrusted bytes: every fuzz seed agrees with the msgspec path;
the scanner's tests pass under AddressSanitizer + UBSan; a bounded coverage-guided fuzz run
(atheris / libFuzzer, ASan + UBSan, the msgspec path as oracle) finds nothing; and the same
fuzzer does find a planted over-read and a planted disagreement, so a quiet run means something.
Builds and runs go through ``scripts/fuzz.sh``, as a person would run them."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fuzz import seeds
from tests.fuzz.oracle import Oracle
from tracehouse.ingest import kineto_native

FUZZ = REPO / "scripts" / "fuzz.sh"
# Bounded by executions, not seconds: on a loaded 2-core machine 25 s gave 153 executions,
# 1,500 took about 25 s under the same load.  The time is only a ceiling.
BOUNDED_RUNS = 1500
CEILING_SECONDS = 300


def _script(*args: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FUZZ), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def _require_fuzzer() -> None:
    # Only a truly missing toolchain skips: scripts/setup.sh installs both.
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (scripts/setup.sh installs it with apt-get)")
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (the dev extra has it)")


def _require_gcc_asan() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    found = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(found):
        pytest.skip("gcc has no AddressSanitizer runtime (libasan)")


def test_every_seed_is_scanned_as_msgspec_decodes(tmp_path: Path) -> None:
    # The seed corpus itself: the scanner declines cleanly or gives the reference's parse.
    if not kineto_native.AVAILABLE:
        pytest.skip("the C scanner is not built here")
    oracle = Oracle(tmp_path)
    all_seeds = seeds.all_seeds()
    outcomes = [oracle.check(data) for data in all_seeds]
    assert oracle.accepted >= len(seeds.built_documents()) - 1, outcomes
    if any(seeds.TRACES.glob("*.json.gz")):
        # Slices of real traces are plain Kineto: the scanner must take (nearly) all of them.
        assert oracle.accepted > len(all_seeds) * 0.8, outcomes


@pytest.mark.slow
def test_the_scanner_tests_pass_under_address_and_undefined_sanitizers() -> None:
    _require_gcc_asan()
    done = _script("sanitize", timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
    assert "AddressSanitizer" not in done.stderr and "runtime error" not in done.stderr, done.stderr[-6000:]


def _fuzz(
    tmp_path: Path, seconds: int, *fuzzer_args: str, plant: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    findings = tmp_path / "findings"
    done = _script(
        "fuzz", str(seconds), *fuzzer_args, timeout=seconds + 600, FUZZ_ARTIFACTS=str(findings), FUZZ_PLANT=plant
    )
    return done, sorted(findings.glob("*")) if findings.is_dir() else []


@pytest.mark.slow
def test_a_bounded_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    _require_fuzzer()
    done, findings = _fuzz(tmp_path, CEILING_SECONDS, f"-runs={BOUNDED_RUNS}")
    log = done.stderr + done.stdout
    assert done.returncode == 0 and not findings, log[-8000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", log).group(1))  # type: ignore[union-attr]
    coverage = max(int(c) for c in re.findall(r"\bcov: (\d+)", log))
    # A run that did not execute, or saw no coverage of the C code, proves nothing.
    assert runs == BOUNDED_RUNS and coverage >= 300, (runs, coverage)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        ("plant-overread", "AddressSanitizer: heap-buffer-overflow"),
        ("plant-disagreement", "DataFrames are different"),
    ],
)
def test_the_fuzzer_catches_a_planted_bug(plant: str, expected: str, tmp_path: Path) -> None:
    _require_fuzzer()
    done, findings = _fuzz(tmp_path, 60, plant=plant)
    assert done.returncode != 0 and findings, (done.stdout + done.stderr)[-4000:]
    assert expected in done.stderr + done.stdout, (done.stdout + done.stderr)[-4000:]
