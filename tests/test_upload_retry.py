"""An upload sent while the team server's database is away (a restart, a fail-over) waits for
it and lands: the service answers 503 with ``Retry-After``, and ``tracehouse upload`` sends the
same request again after that long, for as long as ``--retry-for`` allows.

PostgreSQL only: the outage is a TCP proxy in front of it, shut and then opened again on the
same port.  (A SQLite file has no outage short of its removal.)"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from tests.conftest import PG_ENV, Database
from tests.robust_server import CLI, SD, LoggedServer
from tests.tcp_proxy import TcpProxy
from tracehouse.client.upload import retry_after_s
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[tuple[LoggedServer, TcpProxy, Database]]:
    """A real server whose database connections all go through a proxy this test can shut."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"a database outage needs the PostgreSQL server; {PG_ENV} not set")
    db = Database("postgresql", tmp_path).migrate()
    target = db.engine.url
    proxy = TcpProxy(target.port or 5432)
    proxied = db.reached_through(db.url.replace(f"{target.host}:{target.port or 5432}", f"127.0.0.1:{proxy.port}"))
    srv = LoggedServer(proxied, tmp_path / "data").start()
    try:
        yield srv, proxy, db
    finally:
        srv.stop()
        db.drop()


def _counts(db: Database) -> tuple[int, int]:
    """Runs and ingest jobs, read past the proxy."""
    with session_scope(db.engine) as s:
        return s.scalar(select(func.count()).select_from(Run)) or 0, s.scalar(
            select(func.count()).select_from(IngestJob)
        ) or 0


def _upload(srv: LoggedServer, token: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "upload", str(SD), "--server", srv.url, "--token", token, "--json", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines_of(stream: object) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()  # type: ignore[attr-defined]
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
    assert waiting.stderr is not None
    said = _lines_of(waiting.stderr)
    first = said.get(timeout=60)
    assert "upload of" in first and "database_unavailable" in first and "trying again in 5 s" in first, first
    assert waiting.poll() is None  # still waiting, not failed
    proxy = proxy.reopen()
    try:
        out, _ = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, list(said.queue)
        (job,) = orjson.loads(out)
        assert job["status"] == "done" and job["run_id"] is not None, job
        assert _counts(db) == (1, 1)  # the refused tries left nothing: one job, one run
    finally:
        proxy.close()


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
