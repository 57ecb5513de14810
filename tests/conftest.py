"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``TRACEHOUSE_TEST_POSTGRES_URL`` (``.ci/run`` sets it); each test gets
a database of its own there, so tests never see each other's rows.  Without the variable the
PostgreSQL half is skipped with that reason.

Migrating takes a second or two per database, more than most tests, so each test process
migrates once per backend, into a template, and every migrated test database is a copy of
it: SQLite copies the template's file, PostgreSQL runs ``CREATE DATABASE ... TEMPLATE``.
``tests/test_schema.py`` still migrates empty databases step by step (``empty_db``).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tracehouse.schema.db import make_engine, normalize_url
from tracehouse.schema.migrate import upgrade

# Fixtures and helpers shared across modules (servers, the in-process CLI, the error shape).
pytest_plugins = ["tests.fixtures"]

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED_TRACES = REPO.parent / "shared" / "traces"
KINETO_DIR = SHARED_TRACES / "kineto"
PG_ENV = "TRACEHOUSE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]
# Every database this suite makes on the server starts so; a test process drops only its own.
PG_PREFIX = "th_test_"


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


def with_database(url: str, name: str) -> str:
    """``url`` pointed at the database ``name`` on the same server."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def with_query(url: str, **query: str) -> str:
    """``url`` with more query parameters (``application_name=...``), whatever it already has."""
    parsed = make_url(url)
    return parsed.update_query_dict(query).render_as_string(hide_password=False)


class _Templates:
    """This process's migrated templates, one per backend, made on first use."""

    def __init__(self) -> None:
        self.sqlite: Path | None = None
        self.postgresql: str | None = None  # the template database's name
        self._admin: Engine | None = None
        self._folder: Path | None = None

    def admin(self) -> Engine:
        if self._admin is None:  # autocommit: CREATE/DROP DATABASE refuse to run in a transaction
            self._admin = create_engine(
                normalize_url(_postgres_url()), poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        return self._admin

    def sqlite_file(self) -> Path:
        if self.sqlite is None:
            self._folder = Path(tempfile.mkdtemp(prefix="tracehouse-template-"))
            path = self._folder / "template.sqlite3"
            engine = make_engine(f"sqlite:///{path}")
            upgrade(engine)
            with engine.connect() as conn:  # everything into the main file: only it is copied
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()
            self.sqlite = path
        return self.sqlite

    def postgresql_name(self) -> str:
        if self.postgresql is None:
            name = f"{PG_PREFIX}tmpl_{uuid.uuid4().hex[:12]}"
            create_database(self.admin(), name)
            engine = make_engine(with_database(_postgres_url(), name))
            try:
                upgrade(engine)
            finally:
                engine.dispose()  # a template with a connection open cannot be copied
            self.postgresql = name
        return self.postgresql

    def close(self) -> None:
        if self.postgresql:
            drop_database(self.admin(), self.postgresql)
        if self._admin is not None:
            self._admin.dispose()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


TEMPLATES = _Templates()


def create_database(admin: Engine, name: str, template: str = "template0") -> None:
    # template0 rather than the default template1: nobody connects to it, and CREATE DATABASE
    # refuses a template that has a connection open.  WAL_LOG (PostgreSQL 15's default) copies
    # a small database without the checkpoint that FILE_COPY forces.
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))


def drop_database(admin: Engine, name: str) -> None:
    # FORCE: a server a test started and failed to stop must not keep its database alive.
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_sessionfinish(session: pytest.Session) -> None:
    TEMPLATES.close()


class Database:
    """A database of its own on one backend; ``url`` is what a CLI would be given.

    It is empty until ``migrate()``, which copies this process's migrated template (the same
    schema as running every migration, in a fraction of the time).  On PostgreSQL the
    database itself is made on first use of ``url`` or ``engine``, so that ``migrate()``
    can make it as a copy straight away."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.schema: str | None = None  # kept for callers; every test now has a database, not a schema
        self.raw_dir = tmp / "raw"  # where ingest keeps the raw files of this database's runs
        self.name: str | None = None
        self._engine: Engine | None = None
        self._made = backend == "sqlite"  # SQLite makes the file on first connect
        if backend == "sqlite":
            self._path: Path | None = tmp / "tracehouse.sqlite3"
            self._url = f"sqlite:///{self._path}"
        else:
            self._path = None
            self.name = f"{PG_PREFIX}{uuid.uuid4().hex[:16]}"
            self._url = with_database(_postgres_url(), self.name)

    def _make(self, template: str | None = None) -> None:
        if not self._made:
            create_database(TEMPLATES.admin(), self.name or "", template or "template0")
            self._made = True

    @property
    def url(self) -> str:
        self._make()
        return self._url

    @property
    def engine(self) -> Engine:
        self._make()
        if self._engine is None:
            self._engine = make_engine(self._url)
        return self._engine

    def migrate(self) -> Database:
        if self.backend == "sqlite" and self._engine is None and self._path and not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(TEMPLATES.sqlite_file(), self._path)
        elif self.backend == "postgresql" and not self._made:
            self._make(TEMPLATES.postgresql_name())
        else:  # already in use: migrate it for real, from wherever it is
            upgrade(self.engine)
        return self

    def reached_through(self, url: str) -> Database:
        """This database under another URL (through a proxy, with an ``application_name``):
        the copy shares the engine, and dropping it leaves the database alone."""
        view = copy.copy(self)
        view._engine, view._url, view.name = self.engine, url, None
        return view

    def drop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self.backend == "postgresql" and self._made and self.name:
            drop_database(TEMPLATES.admin(), self.name)


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
