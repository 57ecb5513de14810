"""Every case of the bad-upload corpus (tests/bad_uploads.py), sent to a real server on SQLite
and on PostgreSQL: a 4xx in the one error shape (never a 5xx), the database row-identical
(every table; the job queue may only gain this upload's failed job), no raw copy kept, no
spool left, and nothing written outside the data dir: not beside it, where a hostile name
points, and not in the server's system temp dir.

Multipart bodies are written here byte for byte, so a file name reaches the server exactly
as a hostile client would send it (an HTTP library would escape NUL, quotes and newlines)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.bad_uploads import FOREIGN_NSYS, BadUpload, corpus
from tests.conftest import BACKENDS, Database
from tests.fixtures import assert_error
from tests.live_server import LiveServer, dump_tables, tree

CASES = corpus()
BOUNDARY = "th-corpus-7f3a9c"
JOBS = "ingest_job"
# What only a library says: an error the user gets must be the service's own sentence.
RAW_TEXT = re.compile(
    r"\b(DataError|IntegrityError|OperationalError|ProgrammingError|psycopg|sqlalchemy|"
    r"sqlite3|RecursionError|Traceback)\b|\[SQL:"
)
WAIT_SECONDS = 30  # every job of the corpus ends in a second or two; a stalled one fails


def test_the_corpus_has_at_least_fifty_cases() -> None:
    assert len(CASES) >= 50


@contextmanager
def _serving(backend: str, tmp: Path) -> Iterator[LiveServer]:
    db = Database(backend, tmp).migrate()
    srv = LiveServer(db, tmp / "srv").start()
    # Where item 1's traversal points: a file the server must never read.
    (srv.root / "foreign.sqlite").write_bytes(FOREIGN_NSYS())
    srv.headers = srv.token("write")  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()
        db.drop()


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _serving(request.param, tmp_path_factory.mktemp(f"corpus-{request.param}")) as srv:
        yield srv


def _quoted(value: str) -> bytes:
    # Only what the multipart grammar needs escaped; everything else goes as the client wrote it.
    return b'"' + value.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def multipart(case: BadUpload) -> bytes:
    out = []
    for name, value in case.form:
        out += [
            f"--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="',
            name.encode(),
            b'"\r\n\r\n',
            value.encode(),
            b"\r\n",
        ]
    for part in case.parts:
        out += [
            f"--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename=',
            _quoted(part.filename),
            b"\r\n",
            f"Content-Type: {part.content_type}\r\n\r\n".encode(),
            part.content(),
            b"\r\n",
        ]
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


def send(srv: LiveServer, case: BadUpload) -> httpx.Response:
    headers = dict(srv.headers)  # type: ignore[attr-defined]
    if case.raw_body is not None:
        body = case.raw_body()
        if case.content_type:
            headers["Content-Type"] = case.content_type
    else:
        body = multipart(case)
        headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
    return httpx.post(f"{srv.url}/v1/traces", params={"wait": WAIT_SECONDS}, content=body, headers=headers, timeout=180)


def _outside(srv: LiveServer) -> dict[str, tuple[int, int]]:
    """Everything under the server's root but its data dir and log: the temp dir, the
    foreign file and anything a hostile name could create beside them."""
    return tree(srv.root, skip=(srv.data_dir, srv.log))


def _settled(srv: LiveServer, raw_before: dict, spool_before: dict) -> tuple[dict, dict]:
    # The worker removes a failed job's spool just after it records the failure.
    for _ in range(50):
        raw, spool = tree(srv.data_dir / "raw"), tree(srv.data_dir / "uploads")
        if raw == raw_before and spool == spool_before:
            break
        time.sleep(0.1)
    return raw, spool


def _check(srv: LiveServer, case: BadUpload) -> None:
    before, outside = dump_tables(srv.db), _outside(srv)
    raw_before, spool_before = tree(srv.data_dir / "raw"), tree(srv.data_dir / "uploads")
    reply = send(srv, case)
    assert reply.status_code < 500, f"{reply.status_code}: {reply.text[:500]}"
    assert 400 <= reply.status_code < 500, f"accepted: {reply.status_code} {reply.text[:500]}"
    body = assert_error(reply, reply.status_code)
    assert not RAW_TEXT.search(body["error"]), f"raw library text in the answer: {body['error']}"
    assert str(srv.root) not in reply.text, "the answer names a server path"
    after = dump_tables(srv.db)
    new_jobs = [row for row in after[JOBS] if row not in before[JOBS]]
    assert all(row in after[JOBS] for row in before[JOBS]), "a job row changed"
    assert len(new_jobs) <= 1 and all("failed" in row for row in new_jobs), new_jobs
    assert {k: v for k, v in after.items() if k != JOBS} == {k: v for k, v in before.items() if k != JOBS}
    raw, spool = _settled(srv, raw_before, spool_before)
    assert raw == raw_before, "a raw copy of a refused upload was kept"
    assert spool == spool_before, "the upload's spool was left behind"
    assert _outside(srv) == outside, "something was written outside the data dir"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_upload_is_refused_and_leaves_no_trace(served: LiveServer, case: BadUpload, tmp_path: Path) -> None:
    if not case.own_server:
        _check(served, case)
        return
    with _serving(served.db.backend, tmp_path) as own:
        _check(own, case)
