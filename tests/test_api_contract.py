"""The served API contract, checked by a machine: schemathesis generates requests from the
OpenAPI of a real ``tracehouse serve`` (read + write token, one real run uploaded first so
links reach real data) on SQLite and on PostgreSQL, and no answer may be a 5xx.

Bounded: a fixed seed, at most ``MAX_EXAMPLES`` cases per operation per phase, and
``MAX_SECONDS`` for the whole run of one backend.

The 5xx answers known today are issue 12 item 8's (an id past the column's integer range, a
NUL or an over-long name reaching the database): while they are found, the test xfails
(strict) with ``KnownServerErrors``.  Any other 5xx, or a request that errs or times out, is
a plain failure.  Once item 8 is fixed the run is clean, the strict xfail turns into a
failure, and the mark comes off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, Database
from tests.live_server import LiveServer

MAX_EXAMPLES = 20
MAX_SECONDS = 75
SEED = 12
ITEM_8 = "issue 12 item 8: ids past the integer range, NUL / long names answer 5xx"


class KnownServerErrors(AssertionError):
    """Every 5xx the run found is one issue 12 item 8 names (fixed on another branch)."""


def _integer_limit(backend: str) -> int:
    # SQLite's integers are int64; the PostgreSQL id columns are int4.
    return 2**63 if backend == "sqlite" else 2**31


def known_cause(request: str, backend: str) -> str | None:
    """Which known item explains a 5xx answered to ``request`` (a reproducing curl line)."""
    text = re.sub(r"https?://127\.0\.0\.1:\d+", "", request)
    if any(abs(int(n)) >= _integer_limit(backend) for n in re.findall(r"-?\d+", text)):
        return "item 8: integer past the column's range"
    if "\\u0000" in text or "%00" in text:
        return "item 8: NUL in a name"
    if backend == "postgresql" and re.search(r'"name": "[^"]{256,}"', text):
        return "item 8: over-long name"
    return None


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
        uploaded = httpx.post(f"{srv.url}/v1/traces", params={"wait": 60}, files={"file": ("sd.json.gz", fh)},
                              headers={"Authorization": token}, timeout=120)
    assert uploaded.status_code == 202 and uploaded.json()["status"] == "done", uploaded.text
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{srv.url}/openapi.json", "-H", f"Authorization: {token}",
         "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_SECONDS),
         "--seed", str(SEED), "--workers", "1", "--request-timeout", "30", "--output-truncate", "false",
         "--report", "json", "--report-json-path", str(report_dir / "report.json")],
        capture_output=True, text=True, timeout=MAX_SECONDS + 300, cwd=report_dir)  # its cache stays there
    report = json.loads((report_dir / "report.json").read_text())
    return done, report


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=KnownServerErrors, reason=ITEM_8)
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
    unknown = [r for r in requests if known_cause(r, served.db.backend) is None]
    assert not unknown, "5xx not explained by a known item:\n" + "\n".join(unknown)
    if requests:
        causes = sorted({f"{known_cause(r, served.db.backend)}: {r}" for r in requests})
        raise KnownServerErrors(f"{len(requests)} known 5xx:\n" + "\n".join(causes))
    assert done.returncode == 0, output[-4000:]


@pytest.mark.parametrize(("request_line", "backend", "cause"), [
    ("curl -X GET http://127.0.0.1:1/v1/jobs/9223372036854775808", "sqlite", "integer"),
    ("curl -X GET http://127.0.0.1:1/v1/jobs/9223372036854775807", "sqlite", None),
    ("curl -X GET http://127.0.0.1:1/v1/jobs/2147483648", "postgresql", "integer"),
    ("curl -X POST -d '{\"name\": \"a\\u0000b\"}' http://127.0.0.1:1/v1/models", "postgresql", "NUL"),
    ("curl -X GET 'http://127.0.0.1:1/v1/runs?format=csv'", "postgresql", None),
])
def test_only_the_known_causes_excuse_a_5xx(request_line: str, backend: str, cause: str | None) -> None:
    # The classifier that lets the xfail through must not excuse an unrelated 5xx.
    found = known_cause(request_line, backend)
    assert (found is None) if cause is None else (found is not None and cause in found)
