"""An upload sent while the team server's database is away (a restart, a fail-over) waits for
it and lands: the service answers 503 with ``Retry-After``, and ``tracehouse upload`` sends the
same request again after that long, for as long as ``--retry-for`` allows.

The database outages are PostgreSQL only: the outage is a TCP proxy in front of it, shut and
then opened again on the same port.  (A SQLite file has no outage short of its removal.)  So
is a restart of the server itself after it took the upload (it begins as an API-only replica,
which needs PostgreSQL): the upload polls its job until the server answers again."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from tests.conftest import PG_ENV, Database
from tests.fixtures import run_cli
from tests.robust_server import CLI, SD, LoggedServer, post, served_behind_proxy, wait_until
from tests.tcp_proxy import TcpProxy
from tracehouse.api.serve_process import ServeProcess
from tracehouse.client.upload import retry_after_s, send_until_taken
from tracehouse.core.errors import BadInput
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[tuple[LoggedServer, TcpProxy, Database]]:
    with served_behind_proxy(tmp_path) as served:
        yield served


def _counts(db: Database) -> tuple[int, int]:
    """Runs and ingest jobs, read past the proxy."""
    with session_scope(db.engine) as s:
        runs = s.scalar(select(func.count()).select_from(Run))
        jobs = s.scalar(select(func.count()).select_from(IngestJob))
    return runs or 0, jobs or 0


def _upload(srv: LoggedServer, token: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "upload", str(SD), "--server", srv.url, "--token", token, "--json", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines_of(stream: IO[str]) -> queue.Queue[str]:
    """Each line of ``stream`` as it comes (the reader ends with the stream)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_an_upload_during_a_database_outage_lands_once_the_database_is_back(
    behind_proxy: tuple[LoggedServer, TcpProxy, Database],
) -> None:
    srv, proxy, db = behind_proxy
    token = srv.token("write")["Authorization"].removeprefix("Bearer ")
    proxy.close()

    # Told not to wait, the upload fails at once with the server's 503, and nothing is written.
    at_once = _upload(srv, token, "--retry-for", "0")
    out, err = at_once.communicate(timeout=60)
    assert at_once.returncode == 1 and err.startswith("error: server said 503: "), err
    assert "trying again" not in err
    assert _counts(db) == (0, 0)

    # By default it waits what the server asks, and lands once the database is back.
    waiting = _upload(srv, token)
    assert waiting.stdout is not None and waiting.stderr is not None
    try:
        said = _lines_of(waiting.stderr)
        first = said.get(timeout=60)
        assert "upload of" in first and "database_unavailable" in first and "trying again in 5 s" in first, first
        assert waiting.poll() is None  # still waiting, not failed
        proxy = proxy.reopen()
        out = waiting.stdout.read()  # to its end: the upload's exit
        assert waiting.wait(120) == 0, [first, *said.queue]
        (job,) = orjson.loads(out)
        assert job["status"] == "done" and job["run_id"] is not None, job
        assert _counts(db) == (1, 1)  # the refused tries left nothing: one job, one run
    finally:
        waiting.kill()
        proxy.close()


def test_collect_upload_takes_the_same_retry_for(
    behind_proxy: tuple[LoggedServer, TcpProxy, Database], tmp_path: Path
) -> None:
    """``collect --upload --retry-for 0`` during the outage: the trace is written, and its
    upload fails at once with the server's 503 (the default would wait 120 s)."""
    pytest.importorskip("torch")
    srv, proxy, db = behind_proxy
    token = srv.token("write")["Authorization"].removeprefix("Bearer ")
    proxy.close()
    out = tmp_path / "traces"
    collect = [*CLI, "collect", "--model", "sd", "--device", "cpu", "--steps", "1", "--out", str(out)]
    collected = subprocess.run(
        [*collect, "--upload", srv.url, "--token", token, "--retry-for", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = collected.stderr.strip().splitlines()[-1]
    assert collected.returncode == 1 and last.startswith("error: server said 503: "), collected.stderr
    assert "trying again" not in collected.stderr and list(out.glob("*.json.gz"))
    assert _counts(db) == (0, 0)


def test_a_wait_that_loses_the_database_answers_the_queued_job_not_503(tmp_path: Path) -> None:
    """``POST /v1/traces?wait=`` whose job was queued before the database went away: a 503 with
    Retry-After would have the client send it again (a second job); it gets the 202 and the job
    to poll instead.  An API-only replica, so nothing takes the job while the test looks."""
    with served_behind_proxy(tmp_path, "--no-worker") as (srv, proxy, db):
        headers = srv.token("write")
        answer: list[httpx.Response] = []
        sender = threading.Thread(target=lambda: answer.append(post(srv, SD, headers, wait=30)))
        sender.start()
        try:
            wait_until(lambda: _counts(db)[1] > 0, 60, "the upload's job to be queued")
            assert _counts(db) == (0, 1)  # queued, and the upload is waiting on it
        finally:
            proxy.close()
            sender.join(60)
        (reply,) = answer
        assert reply.status_code == 202 and "Retry-After" not in reply.headers, reply.text
        assert reply.json()["status"] == "queued" and reply.json()["job_id"] > 0
        assert _counts(db) == (0, 1)


def test_an_upload_waits_for_its_job_across_a_restart_of_the_server(tmp_path: Path) -> None:
    """The job is queued in the database when the server that took it goes down: the upload's
    polls cannot reach it, and try again until it is back (an API-only replica first, so the
    job is still queued at the kill; it comes back with its worker and ingests it)."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"an API-only replica needs the PostgreSQL server; {PG_ENV} not set")
    db = Database("postgresql", tmp_path).migrate()
    srv = LoggedServer(db, tmp_path / "data", "--no-worker").start()
    token = srv.token("write")["Authorization"].removeprefix("Bearer ")
    waiting = _upload(srv, token)
    assert waiting.stdout is not None and waiting.stderr is not None
    again = ServeProcess(db.url, srv.process.log, srv.env, port=srv.port)  # the same address
    try:
        wait_until(lambda: _counts(db)[1] > 0 or waiting.poll() is not None, 60, "the upload's job to be queued")
        assert _counts(db) == (0, 1), waiting.stderr.read() if waiting.poll() is not None else ""
        srv.kill()
        said = _lines_of(waiting.stderr)
        first = said.get(timeout=60)
        assert "job " in first and "cannot reach the server" in first and "trying again in 1 s" in first, first
        assert waiting.poll() is None  # still polling, not failed
        again.start()
        out = waiting.stdout.read()
        assert waiting.wait(120) == 0, [first, *said.queue]
        (job,) = orjson.loads(out)
        assert job["status"] == "done" and job["run_id"] is not None, job
        assert _counts(db) == (1, 1)
    finally:
        waiting.kill()
        srv.stop()  # nothing to do once killed; a test failing before the kill leaves no server
        again.stop()
        db.drop()


def test_only_a_503_with_retry_after_is_tried_again() -> None:
    """The header decides, bounded: an error that will not pass by itself carries none."""
    request = httpx.Request("POST", "http://127.0.0.1/v1/traces")

    def reply(status: int, **headers: str) -> httpx.Response:
        return httpx.Response(status, headers=headers, request=request)

    assert retry_after_s(reply(503, **{"Retry-After": "5"})) == 5
    assert retry_after_s(reply(503, **{"Retry-After": "0"})) == 0.5  # never a loop at full speed
    assert retry_after_s(reply(503, **{"Retry-After": "86400"})) == 30  # at most 30 s a wait
    assert retry_after_s(reply(503)) is None  # schema out of date, worker dead: trying again won't help
    assert retry_after_s(reply(503, **{"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) is None
    assert retry_after_s(reply(503, **{"Retry-After": "nan"})) is None
    assert retry_after_s(reply(429, **{"Retry-After": "5"})) is None
    assert retry_after_s(reply(500, **{"Retry-After": "5"})) is None


def test_a_retry_time_that_is_not_a_number_is_refused_before_anything_is_sent() -> None:
    """NaN compares false with everything: as a deadline it would never pass."""
    out = run_cli("upload", str(SD), "--server", "http://127.0.0.1:9", "--token", "t", "--retry-for", "nan")
    assert out.returncode == 2 and "--retry-for" in out.stderr, out.stderr
    sent: list[int] = []
    with pytest.raises(BadInput, match="0 or more seconds"):
        send_until_taken(lambda: httpx.Response(sent.append(1) or 503), "upload", float("nan"))
    assert sent == []
