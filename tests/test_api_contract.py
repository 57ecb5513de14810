"""The served API contract, checked by a machine: schemathesis generates requests from the
OpenAPI of a real ``tracehouse serve`` (read + write token, one real run uploaded first so
links reach real data) on SQLite and on PostgreSQL, and no answer may be a 5xx.

Bounded: a fixed seed, at most ``MAX_EXAMPLES`` cases per operation per phase, and
``MAX_SECONDS`` for the whole run of one backend."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, Database
from tests.live_server import LiveServer

MAX_EXAMPLES = 20
MAX_SECONDS = 30
SEED = 12


def failing_requests(output: str) -> list[str]:
    """The request that got each 5xx, from schemathesis's report: the last curl line of each
    ``Reproduce with:`` block (a stateful case's earlier lines only set it up)."""
    found = []
    for block in output.split("Reproduce with:")[1:]:
        curls = [line.strip() for line in block.splitlines() if line.strip().startswith("curl ")]
        if curls:
            found.append(curls[-1])
    return found


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    db = Database(request.param, tmp_path).migrate()
    srv = LiveServer(db, tmp_path / "srv").start()
    try:
        yield srv
    finally:
        srv.stop()
        db.drop()


def _schemathesis(srv: LiveServer, report_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    token = srv.token("write")["Authorization"]
    with (DATA / "sd_tiny_cpu_baseline.json.gz").open("rb") as fh:  # a real run to link to
        uploaded = httpx.post(
            f"{srv.url}/v1/traces",
            params={"wait": 60},
            files={"file": ("sd.json.gz", fh)},
            headers={"Authorization": token},
            timeout=120,
        )
    assert uploaded.status_code == 200 and uploaded.json()["status"] == "done", uploaded.text
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{srv.url}/openapi.json",
            "-H",
            f"Authorization: {token}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_SECONDS),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--output-truncate",
            "false",
            "--report",
            "json",
            "--report-json-path",
            str(report_dir / "report.json"),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 300,
        cwd=report_dir,
    )  # its cache stays there
    report = json.loads((report_dir / "report.json").read_text())
    return done, report


@pytest.mark.slow
@pytest.mark.parametrize("served", ["sqlite", "postgresql"], indirect=True)
def test_schemathesis_finds_no_server_error(served: LiveServer, tmp_path: Path) -> None:
    done, report = _schemathesis(served, tmp_path)
    output = done.stdout + done.stderr
    # Every operation was tried, and nothing errored (a timeout is a stall, not a pass).
    assert report["operations"]["tested"] == report["operations"]["total"] >= 25, output[-4000:]
    assert not report["errors"] and report["test_cases"]["errored"] == 0, output[-6000:]
    assert report["test_cases"]["generated"] >= 200, report["test_cases"]
    requests = failing_requests(output)
    assert len(requests) == report["test_cases"]["unique_failures"], output[-6000:]
    assert not requests, f"{len(requests)} 5xx:\n" + "\n".join(requests)
    assert done.returncode == 0, output[-4000:]
