"""The schema check without Alembic: a database at head is recognised from the migration
files and one plain query, and every other state still goes Alembic's way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Database
from tracehouse.core.errors import SchemaOutOfDate
from tracehouse.schema import migrate
from tracehouse.schema.migrate import ensure_schema, head_from_files, head_revision, upgrade


def test_head_read_from_the_files_is_alembics_head() -> None:
    assert head_from_files() == head_revision()


def test_a_second_head_in_the_files_is_left_to_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    for name in migrate.migrations_dir().joinpath("versions").glob("*.py"):
        (versions / name.name).write_text(name.read_text())
    head = head_revision()
    monkeypatch.setattr(migrate, "migrations_dir", lambda: tmp_path)
    assert head_from_files() == head  # the copied files: the same head
    (versions / "9999_branch.py").write_text("revision: str = 'zz_branch'\ndown_revision = '0001'  # a second head\n")
    assert head_from_files() is None


_CHECK_WITHOUT_ALEMBIC = """
import sys
from tracehouse.schema.db import make_engine
from tracehouse.schema.migrate import ensure_schema
ensure_schema(make_engine(sys.argv[1]), sys.argv[1])
print("alembic" in sys.modules)
"""


def test_database_at_head_is_checked_without_importing_alembic(db: Database) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHECK_WITHOUT_ALEMBIC, db.url], check=False, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]


def test_database_behind_head_still_refuses(db: Database) -> None:
    with db.engine.begin() as conn:  # one revision back, as far as the version table says
        conn.execute(text("UPDATE alembic_version SET version_num = '0009_run_data'"))
    with pytest.raises(SchemaOutOfDate, match="out of date"):
        ensure_schema(db.engine, db.url)


def test_empty_database_is_still_migrated(empty_db: Database) -> None:
    ensure_schema(empty_db.engine, empty_db.url)
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    upgrade(empty_db.engine)  # idempotent at head
