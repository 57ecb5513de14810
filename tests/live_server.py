"""A real ``tracehouse serve`` for the contract and bad-upload tests, with what they watch:
its log goes to a file (a pipe nobody reads fills up and stalls the server after a few
hundred requests), its system temp dir is a folder of its own (``TMPDIR``), and the database
can be dumped, every table's rows, to compare before and after."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import inspect, text

from tests.conftest import Database
from tracehouse.api.auth import create_token
from tracehouse.api.serve_process import ServeProcess
from tracehouse.schema.db import session_scope


class LiveServer:
    """``root`` holds the server's data dir, temp dir and log, and nothing else of it."""

    def __init__(self, db: Database, root: Path, **env: str) -> None:
        self.db, self.root = db, root
        self.data_dir, self.temp_dir, self.log = root / "data", root / "tmp", root / "server.log"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(self.data_dir), "TMPDIR": str(self.temp_dir), **env}
        self.process = ServeProcess(db.url, self.log, self.env)
        self.port, self.url = self.process.port, self.process.url

    def start(self) -> LiveServer:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def token(self, scope: str = "write") -> dict[str, str]:
        with session_scope(self.db.engine) as s:
            return {"Authorization": f"Bearer {create_token(s, f'test-{scope}-{time.monotonic_ns()}', scope)}"}


def dump_tables(db: Database) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: two dumps are equal when the database is row-identical.
    The table names are read each time and ``SELECT *`` reads whatever columns a table has now:
    a table or column that appeared would show, as with a reflection, at a tenth of its cost."""
    names = inspect(db.engine).get_table_names()
    with db.engine.connect() as conn:
        quote = conn.dialect.identifier_preparer.quote
        return {
            name: sorted((tuple(row) for row in conn.execute(text(f"SELECT * FROM {quote(name)}"))), key=repr)
            for name in names
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
