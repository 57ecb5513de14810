"""A new SQLite database at the schema head, made from the DDL the migrations give one.

A user's first ``tracehouse ingest`` makes the default SQLite file, and running the Alembic
migrations for it (with SQLAlchemy and Alembic's imports) cost ~0.9 s of a ~1.7 s ingest of
the largest shared trace.  ``migrations/sqlite_head.sql`` holds what those migrations leave
in a new SQLite file (its ``sqlite_master`` DDL in creation order, and the revision), so a new
file is made with one ``executescript`` instead.  The migrations stay the only way the schema
changes: the snapshot is used only while its revision is the migrations' head (a new migration
without a new snapshot goes Alembic's way), and ``tests/test_sqlite_head.py`` checks, on
every run, that it is exactly what migrating a new file gives.  Regenerate it with
``python -m tracehouse.schema.sqlite_head``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import sys
import tempfile
from pathlib import Path

from tracehouse.schema import migrate

SNAPSHOT_NAME = "sqlite_head.sql"
_REVISION_LINE = "-- revision: "
_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL; None for anything SQLAlchemy would read
    more into (a driver, a query, escapes, ``:memory:``, ``~``)."""
    if not url.startswith(_PREFIX):
        return None
    path = url[len(_PREFIX) :]
    if not path or any(ch in path for ch in "?%#~") or path == ":memory:":
        return None
    return Path(path)


def snapshot_path() -> Path:
    return migrate.migrations_dir() / SNAPSHOT_NAME


def read_snapshot(path: Path | None = None) -> tuple[str, str] | None:
    """The snapshot's revision and DDL script; None where there is none."""
    try:
        text = (path or snapshot_path()).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    revision = next(
        (line[len(_REVISION_LINE) :].strip() for line in text.splitlines() if line.startswith(_REVISION_LINE)), None
    )
    return (revision, text) if revision else None


def create_at_head(path: Path) -> bool:
    """Make the SQLite file ``path`` at the schema head from the snapshot, unless it exists;
    False where the snapshot is missing or behind the migrations (the caller then migrates),
    or the folder cannot be made (``make_engine`` makes it too, and names what is wrong).
    The file appears whole or not at all: it is built beside ``path`` and linked into place,
    so a second process making the same file at the same time finds one complete database."""
    if path.exists():  # first: every CLI command asks, and nearly always the file is there
        return False
    snapshot = read_snapshot()
    if snapshot is None or snapshot[0] != migrate.head_from_files():
        return False
    revision, script = snapshot
    # Made by sqlite3 itself (not mkstemp's 0600), so the file has the mode SQLite gives any
    # database it creates; the name is this process's own.
    built = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a file where a folder should be, no permission ...: make_engine says which
        return False
    try:
        _build(built, script, revision)
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile: theirs is whole
            os.link(built, path)
    except (OSError, sqlite3.Error):
        return False
    finally:
        with contextlib.suppress(OSError):  # never made, or its folder is not writable
            built.unlink(missing_ok=True)
    return True


def _build(path: Path, script: str, revision: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(f"BEGIN;\n{script}\nCOMMIT;")
        conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (revision,))
    finally:
        conn.close()


def schema_of(path: Path) -> list[str]:
    """A SQLite file's schema as the DDL of its objects in creation order (SQLite's own
    objects, which it makes itself, left out)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
        return [row[0] for row in rows]
    finally:
        conn.close()


def canonical_schema(path: Path) -> list[tuple[str, ...]]:
    """``schema_of`` with each statement's lines (a column or constraint each, as SQLAlchemy
    writes DDL) in sorted order: Alembic's batch rebuilds list a table's constraints in an
    order that varies from run to run, and the order means nothing to SQLite."""
    return sorted(
        tuple(sorted(line.strip().rstrip(",").strip() for line in ddl.splitlines())) for ddl in schema_of(path)
    )


def migrated_file(path: Path) -> Path:
    """``path``, a new SQLite file, brought to head by the Alembic migrations."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return path


def snapshot_of(db: Path) -> str:
    """The snapshot text of ``db``, a file the migrations brought to head (``migrated_file``)."""
    lines = [
        "-- What the Alembic migrations leave in a new SQLite file: schema/sqlite_head.py makes new",
        "-- files from it while this revision is the head.  Generated: python -m tracehouse.schema.sqlite_head",
        f"{_REVISION_LINE}{migrate.head_revision()}",
    ]
    return "\n".join([*lines, *(f"{ddl};" for ddl in schema_of(db))]) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        text = snapshot_of(migrated_file(Path(folder) / "migrated.sqlite3"))
    snapshot_path().write_text(text, encoding="utf-8")
    print(f"wrote {snapshot_path()}", file=sys.stderr)


if __name__ == "__main__":
    main()
