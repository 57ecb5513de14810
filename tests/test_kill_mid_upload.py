"""kill -9 of the server while an upload's body is still arriving, three times: no job, no run
and no row come of a body that never ended, the half-written spool is reclaimed at the next
start, and the service takes the next upload as if nothing had happened.

The client is a raw socket, so the kill lands at a known point: the headers and half the
multipart body sent, the rest held back.
"""

from __future__ import annotations

import gzip
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import BACKENDS, Database
from tests.robust_server import SD, SD_KERNELS, LoggedServer, post
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run, Trace

KILLS = 3  # each kill lands at the same point (half the body sent); three leave several spools


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    db = Database(request.param, tmp_path).migrate()
    yield db
    db.drop()


def _multipart(path: Path) -> tuple[bytes, bytes]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/gzip\r\n\r\n"
    ).encode()
    return boundary.encode(), head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def _send_half(srv: LoggedServer, path: Path, token: str) -> socket.socket:
    """Headers and half the body of an upload, then nothing: the server is mid-upload."""
    boundary, body = _multipart(path)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    sock.sendall(body[: len(body) // 2])
    return sock


def _spooled(data: Path) -> list[Path]:
    uploads = data / "uploads"
    return sorted(uploads.iterdir()) if uploads.is_dir() else []


@pytest.mark.slow
def test_kill_9_mid_upload_three_times_leaves_nothing_behind(database: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Plain JSON (2.7 MB): half of it is past the 1 MiB the server hands its parser at a time.
    trace = tmp_path / "sd.json"
    trace.write_bytes(gzip.decompress(SD.read_bytes()))
    for _ in range(KILLS):
        srv = LoggedServer(database, data).start()
        token = srv.token("write")["Authorization"].split()[1]
        sock = _send_half(srv, trace, token)
        try:
            deadline = time.monotonic() + 30  # the server has begun spooling what it was sent
            while not _spooled(data) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _spooled(data), "the upload never reached the spool"
        finally:
            srv.kill()
            sock.close()
    assert _spooled(data)  # the kills left half-written spools behind ...
    with session_scope(database.engine) as s:
        assert s.scalar(select(func.count()).select_from(IngestJob)) == 0
        assert s.scalar(select(func.count()).select_from(Run)) == 0
    srv = LoggedServer(database, data, TRACEHOUSE_GC_GRACE_SECONDS="0").start()
    try:
        assert _spooled(data) == []  # ... and the next start reclaimed them
        reply = post(srv, trace, srv.token("write"), wait=60)
        assert reply.status_code == 200 and reply.json()["status"] == "done", reply.text
    finally:
        srv.stop()
    with session_scope(database.engine) as s:
        runs = s.execute(select(Run.kernel_count)).scalars().all()
        traces = s.scalar(select(func.count()).select_from(Trace))
    assert runs == [SD_KERNELS] and traces == 1
