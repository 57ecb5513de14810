"""Shared test helpers and fixtures, loaded by ``pytest_plugins`` in conftest.py (so no test
module imports a fixture from another, which ruff's F811 reports as a redefinition).

Most HTTP tests talk to the service in this process (``AppServer``: FastAPI's TestClient over
``create_app``, the same app ``tracehouse serve`` runs, worker thread included) and most CLI
tests run ``main()`` in this process (``run_cli``): starting a Python process that imports
polars, SQLAlchemy and FastAPI costs seconds per call on a busy 2-core machine.  Real
``tracehouse serve`` processes (``Server``) stay for what only they show: start-up, signals,
SIGKILL, the installed entry point, streaming limits over raw sockets, the upload client.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, Database
from tracehouse.api.auth import create_token
from tracehouse.api.serve_process import ServeProcess, free_port
from tracehouse.schema.db import session_scope

ERROR_KEYS = {"ok", "error", "code", "status"}


def assert_error(reply: httpx.Response, status: int, *, code: str | None = None, contains: str | None = None) -> dict:
    """The one JSON error shape (``{"ok": false, "error", "code", "status"}``) with ``status``
    both as the HTTP status and in the body; returns the body for further checks."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    body = reply.json()
    assert set(body) == ERROR_KEYS, body
    assert body["ok"] is False and body["status"] == status, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["code"], str) and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    if contains is not None:
        assert contains in body["error"], body
    return body


# ---- the command line, in this process ---------------------------------------------------------


@dataclass
class CliResult:
    """What ``subprocess.run(..., capture_output=True, text=True)`` gives, for ``main()`` run here."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
    """``tracehouse ARGS`` through ``main()`` (so exit codes are main's), with stdout and stderr
    captured apart by click's CliRunner and ``env`` set for the call only."""
    from click.testing import CliRunner

    from tracehouse.api.cli import main

    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        argv, sys.argv = sys.argv, ["tracehouse", *args]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
        return CliResult(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))


# ---- the service ---------------------------------------------------------------------------------


_INGEST_PEAK = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def ingest_peak(trace: Path, db: Path, timeout: float) -> tuple[int, tuple[int, int]]:
    """``tracehouse ingest TRACE`` into a SQLite file as a user runs it (a process of its own):
    its peak RSS in bytes (from its parent, so the whole process counts), and the stored
    kernels' ``(count, max(seq))``."""
    tracehouse = [sys.executable, "-m", "tracehouse.api.cli"]
    out = subprocess.run(
        [sys.executable, "-c", _INGEST_PEAK, *tracehouse, "ingest", str(trace), "--db", f"sqlite:///{db}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    con = sqlite3.connect(db)
    try:
        stored = con.execute("SELECT count(*), max(seq) FROM kernel").fetchone()
    finally:
        con.close()
    return int(out.stdout.split()[-1]) * 1024, stored


def _settings_from(data_dir: Path, db: Database, flags: tuple[str, ...], env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The Settings ``tracehouse serve FLAGS`` would build with ``env`` set."""
    from tracehouse.core.settings import load_settings

    overrides: dict[str, object] = {
        k.removeprefix("TRACEHOUSE_").lower(): v for k, v in env.items() if k.startswith("TRACEHOUSE_")
    }
    assert set(flags) <= {"--public-read"}, flags
    overrides.update(database_url=db.url, data_dir=data_dir, public_read=True if flags else None)
    return load_settings(**overrides)


class AppServer:
    """The service in this process: ``http`` is a TestClient over ``create_app(settings)``,
    entered so the lifespan (schema check, ingest worker thread) runs as under uvicorn."""

    url = "http://testserver"

    def __init__(self, db: Database, data_dir: Path, *flags: str, **env: str) -> None:
        self.db, self.flags = db, flags
        self.env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(data_dir), **env}
        self.settings = _settings_from(data_dir, db, flags, env)
        self.http: httpx.Client

    def start(self) -> AppServer:
        from fastapi.testclient import TestClient

        from tracehouse.api.app import create_app

        # Server errors come back as 500 replies, as a client of uvicorn would see them.
        self.http = TestClient(create_app(self.settings), raise_server_exceptions=False)
        self.http.__enter__()
        return self

    def stop(self) -> None:
        self.http.__exit__(None, None, None)

    def token(self, scope: str) -> dict[str, str]:
        with session_scope(self.db.engine) as s:
            return {"Authorization": f"Bearer {create_token(s, f'test-{scope}-{time.monotonic_ns()}', scope)}"}


class Server(AppServer):
    """A real ``tracehouse serve`` process on a free localhost port (``api/serve_process.py``,
    shared with the store benchmark); ``http`` is an httpx client."""

    def __init__(self, db: Database, data_dir: Path, *flags: str, **env: str) -> None:
        self.db, self.flags = db, flags
        self.env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(data_dir), **env}
        port = free_port()
        log = Path(self.env["TRACEHOUSE_DATA_DIR"]).parent / f"serve-{port}.log"
        self.process = ServeProcess(db.url, log, self.env, *flags, port=port)
        self.port, self.url = port, self.process.url
        self.http = httpx.Client(timeout=120)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc

    def start(self) -> Server:
        self.process.start()
        return self

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def _serve(kind: type[AppServer], backend: str, tmp: Path, **env: str) -> Iterator[AppServer]:
    db = Database(backend, tmp).migrate()
    srv = kind(db, tmp / "data", **env).start()
    yield srv
    srv.stop()
    db.drop()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory) -> Iterator[AppServer]:  # type: ignore[no-untyped-def]
    """The service in this process over a migrated database, one per module and backend."""
    yield from _serve(AppServer, request.param, tmp_path_factory.mktemp(f"app-{request.param}"))


@pytest.fixture(scope="session", params=BACKENDS)
def live_server(request, tmp_path_factory) -> Iterator[AppServer]:  # type: ignore[no-untyped-def]
    """A real ``tracehouse serve`` process, for what a client in another process must reach
    (the upload client); one per session and backend, so its tests upload bytes of their own."""
    yield from _serve(Server, request.param, tmp_path_factory.mktemp(f"svc-{request.param}"))


# The upload-safety servers (tests/test_upload_safety.py, tests/test_upload_bad_values.py): real
# processes, since those tests watch the server over raw sockets before a body ends.
TIGHT_LIMIT = 8 << 20  # the small server's max_trace_bytes
ROOMY_LIMIT = 256 << 20  # its inflated cap is the default one, 1 GiB


def _safety_server(backend: str, tmp: Path, limit: int) -> Iterator[tuple[Server, Path]]:
    (tmp / "systmp").mkdir()
    db = Database(backend, tmp).migrate()
    srv = Server(db, tmp / "data", TRACEHOUSE_MAX_TRACE_BYTES=str(limit), TMPDIR=str(tmp / "systmp")).start()
    yield srv, tmp
    srv.stop()
    db.drop()


@pytest.fixture(scope="module", params=BACKENDS)
def tight(request, tmp_path_factory) -> Iterator[tuple[Server, Path]]:  # type: ignore[no-untyped-def]
    yield from _safety_server(request.param, tmp_path_factory.mktemp(f"safety-{request.param}"), TIGHT_LIMIT)


@pytest.fixture(scope="module", params=BACKENDS)
def roomy(request, tmp_path_factory) -> Iterator[tuple[Server, Path]]:  # type: ignore[no-untyped-def]
    yield from _safety_server(request.param, tmp_path_factory.mktemp(f"safety-{request.param}"), ROOMY_LIMIT)
