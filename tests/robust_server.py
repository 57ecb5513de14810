"""What the service-robustness tests share: a real ``tracehouse serve`` that counts as up on any
``/healthz`` answer, uploads over HTTP, job rows read back, waiting for a condition, and a job
put on the queue by hand with its spooled upload."""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, PG_ENV, Database
from tests.fixtures import Server
from tests.tcp_proxy import TcpProxy
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob

SD = DATA / "sd_tiny_cpu_baseline.json.gz"
SD_KERNELS = 1341  # kernel rows of one complete ingest of SD (a partial run has fewer)
CLI = [sys.executable, "-m", "tracehouse.api.cli"]


class LoggedServer(Server):
    """A ``tracehouse serve`` process that counts as started on any ``/healthz`` answer (its
    database may be away on purpose), with its output read back by ``log()`` and a SIGKILL."""

    def start(self) -> LoggedServer:
        self.process.start(any_answer=True)  # a /healthz 503 (database away) is a started server
        return self

    def log(self) -> str:
        return self.process.log_text()

    def kill(self) -> None:
        self.process.kill()


@contextmanager
def served_behind_proxy(tmp: Path, *flags: str) -> Iterator[tuple[LoggedServer, TcpProxy, Database]]:
    """A real server on a PostgreSQL database of its own whose connections all go through a
    proxy the test can shut (an outage) and open again; the database itself, past the proxy."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"a database outage needs the PostgreSQL server; {PG_ENV} not set")
    db = Database("postgresql", tmp).migrate()
    target = db.engine.url
    proxy = TcpProxy(target.port or 5432)
    proxied = db.reached_through(db.url.replace(f"{target.host}:{target.port or 5432}", f"127.0.0.1:{proxy.port}"))
    assert proxied.url != db.url
    srv = LoggedServer(proxied, tmp / "data", *flags).start()
    try:
        yield srv, proxy, db
    finally:
        srv.stop()
        db.drop()


def variant(tmp: Path, i: int) -> Path:
    """SD with ``i`` trailing blanks: the same kernels, new bytes (so a new run, not a dedupe)."""
    path = tmp / f"sd_{i}.json.gz"
    path.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b" " * (i + 1), compresslevel=1))
    return path


def post(srv: Server, path: Path, headers: dict, wait: float = 0, timeout: float = 120) -> httpx.Response:
    with path.open("rb") as fh:
        return httpx.post(
            f"{srv.url}/v1/traces",
            params={"wait": wait} if wait else None,
            files={"file": (path.name, fh)},
            headers=headers,
            timeout=timeout,
        )


def job_row(db: Database, job_id: int) -> IngestJob:
    with session_scope(db.engine) as s:
        job = s.get(IngestJob, job_id)
        assert job is not None
        return job


def wait_until(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def spooled_job(db: Database, data_dir: Path, name: str, status: str, attempts: int, src: Path) -> int:
    folder = data_dir / "uploads" / name
    folder.mkdir(parents=True)
    target = folder / src.name
    target.write_bytes(src.read_bytes())
    with session_scope(db.engine) as s:
        job = IngestJob(
            status=status,
            original_name=src.name,
            upload_path=str(target),
            sha256="x",
            size_bytes=target.stat().st_size,
            meta=None,
            attempts=attempts,
            created_at=datetime.now(UTC),
        )
        s.add(job)
        s.flush()
        return job.id
