"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``TRACEHOUSE_TEST_POSTGRES_URL`` (``.ci/run`` sets it); each test gets
its own schema there, so tests never see each other's rows.  Without the variable the
PostgreSQL half is skipped with that reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tracehouse.schema.db import make_engine
from tracehouse.schema.migrate import upgrade

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED_TRACES = REPO.parent / "shared" / "traces"
KINETO_DIR = SHARED_TRACES / "kineto"
PG_ENV = "TRACEHOUSE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def kineto_traces() -> list[Path]:
    return sorted(KINETO_DIR.glob("*.json.gz")) if KINETO_DIR.is_dir() else []


def require_shared() -> None:
    if not KINETO_DIR.is_dir():
        pytest.skip(f"shared traces not found at {KINETO_DIR}")


def _postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} not set: PostgreSQL half skipped")
    return url


class Database:
    """A fresh, migrated database on one backend; ``url`` is what a CLI would be given."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.schema: str | None = None
        self.raw_dir = tmp / "raw"  # where ingest keeps the raw files of this database's runs
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp / 'tracehouse.sqlite3'}"
        else:
            self.schema = f"t_{uuid.uuid4().hex[:12]}"
            admin = make_engine(_postgres_url())
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            admin.dispose()
            sep = "&" if "?" in _postgres_url() else "?"
            self.url = f"{_postgres_url()}{sep}options=-csearch_path%3D{self.schema}"
        self.engine: Engine = make_engine(self.url)

    def migrate(self) -> Database:
        upgrade(self.engine)
        return self

    def drop(self) -> None:
        self.engine.dispose()
        if self.schema:
            admin = make_engine(_postgres_url())
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()


@pytest.fixture(params=BACKENDS)
def empty_db(request, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    db = Database(request.param, tmp_path)
    yield db
    db.drop()


@pytest.fixture
def db(empty_db: Database) -> Database:
    return empty_db.migrate()


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return tmp_path / "raw"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never write into the user's real data directory from a test.
    monkeypatch.setenv("TRACEHOUSE_DATA_DIR", str(tmp_path / "data"))
