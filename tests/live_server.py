"""A real ``tracehouse serve`` for the contract and bad-upload tests, with what they watch:
its log goes to a file (a pipe nobody reads fills up and stalls the server after a few
hundred requests), its system temp dir is a folder of its own (``TMPDIR``), and the database
can be dumped, every table's rows, to compare before and after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import MetaData, select

from tests.conftest import Database
from tracehouse.api.auth import create_token
from tracehouse.schema.db import session_scope


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``root`` holds the server's data dir, temp dir and log, and nothing else of it."""

    def __init__(self, db: Database, root: Path, **env: str) -> None:
        self.db, self.root, self.port = db, root, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.temp_dir, self.log = root / "data", root / "tmp", root / "server.log"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(self.data_dir), "TMPDIR": str(self.temp_dir), **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracehouse.api.cli", "serve", "--db", self.db.url, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def token(self, scope: str = "write") -> dict[str, str]:
        with session_scope(self.db.engine) as s:
            return {"Authorization": f"Bearer {create_token(s, f'test-{scope}-{time.monotonic_ns()}', scope)}"}


def dump_tables(db: Database) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: two dumps are equal when the database is row-identical."""
    meta = MetaData()
    meta.reflect(db.engine)
    with db.engine.connect() as conn:
        return {
            name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for name, table in meta.tables.items()
        }


def tree(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (outside ``skip``) with its size and mtime."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            path = here / name
            if path in skip:
                continue
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found
