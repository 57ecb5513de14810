"""A new SQLite file made from the migrations' snapshot (``schema/sqlite_head.py``) is the file
the migrations make: the same DDL, the same revision, the models agree with it; the snapshot
is used only at the migrations' head, never over an existing file, and racing makers leave
one whole database."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from tracehouse.schema import migrate, sqlite_head
from tracehouse.schema.migrate import current_revision, head_revision
from tracehouse.schema.models import Base


def test_a_file_made_from_the_snapshot_is_a_migrated_one(tmp_path: Path) -> None:
    """Fails when a migration changes the schema and the snapshot was not made again (the
    message says how); the snapshot's revision is the head, or it would not be used at all."""
    made = tmp_path / "new" / "made.sqlite3"
    assert sqlite_head.create_at_head(made)
    snapshot = sqlite_head.read_snapshot()
    assert snapshot is not None and snapshot[0] == head_revision()
    migrated = sqlite_head.canonical_schema(sqlite_head.migrated_file(tmp_path / "migrated.sqlite3"))
    assert sqlite_head.canonical_schema(made) == migrated, (
        "migrations/sqlite_head.sql is out of date: python -m tracehouse.schema.sqlite_head"
    )
    engine = create_engine(f"sqlite:///{made}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert [p.name for p in made.parent.iterdir()] == ["made.sqlite3"]  # nothing left beside it
    with sqlite3.connect(made) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_snapshot_behind_the_migrations_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate, "head_from_files", lambda: "9999_a_newer_migration")
    assert not sqlite_head.create_at_head(tmp_path / "db.sqlite3")
    assert not (tmp_path / "db.sqlite3").exists()


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"not a database")
    assert not sqlite_head.create_at_head(path)
    assert path.read_bytes() == b"not a database"


def test_makers_racing_for_one_file_leave_one_whole_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    start = threading.Barrier(8)
    results: list[bool] = []

    def make() -> None:
        start.wait()
        results.append(sqlite_head.create_at_head(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any(results)
    assert os.listdir(tmp_path) == ["db.sqlite3"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]


def test_any_command_makes_a_new_sqlite_file_from_the_snapshot(tmp_path: Path) -> None:
    """The first command on a new database (here ``tracehouse runs``) makes the file at head
    without Alembic; ``db upgrade`` and an existing file still go Alembic's way."""
    from tests.test_cli_errors import _modules_after

    new = tmp_path / "data" / "new.sqlite3"
    loaded = _modules_after("runs", "--db", f"sqlite:///{new}")
    assert "alembic" not in {name.split(".")[0] for name in loaded}
    assert "tracehouse.schema.sqlite_head" in loaded
    engine = create_engine(f"sqlite:///{new}")
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_a_folder_that_cannot_be_made_is_left_to_alembics_way(tmp_path: Path) -> None:
    """A file where the folder should be, or a folder it may not write: no snapshot file, no
    exception (``make_engine`` then names what is wrong, in one line)."""
    (tmp_path / "a_file").write_text("x")
    assert not sqlite_head.create_at_head(tmp_path / "a_file" / "deeper" / "db.sqlite3")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        made = sqlite_head.create_at_head(locked / "db.sqlite3")
        assert made == (os.geteuid() == 0)  # root writes anywhere
    finally:
        locked.chmod(0o700)
