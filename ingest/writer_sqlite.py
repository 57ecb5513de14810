"""The writer for a SQLite file already at the schema head, through the standard library's
``sqlite3``: ``tracehouse ingest FILE`` into such a database imports no SQLAlchemy.

The same rows as ``writer_sqlalchemy`` (both take them from ``ingest/rows.py``, and
``tests/test_writers.py`` compares every table), the same connection settings as
``schema.db.make_engine`` (foreign keys, WAL, busy timeout, synchronous NORMAL), the same
transaction (``BEGIN`` ... ``COMMIT``, rolled back on anything) and the same one-line errors as
``session_scope``.  ``open_at_head`` declines (None: the caller takes SQLAlchemy's way) anything
but a plain ``sqlite:///PATH`` of an existing file (or, with ``create``, of one it has just made
from the migrations' snapshot, ``schema/sqlite_head.py``) whose ``alembic_version`` is the head
the migration files name: an older, newer or foreign database is Alembic's to judge.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from tracehouse.core.errors import DatabaseError, DatabaseUnavailable
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.meta import RunMeta
from tracehouse.ingest import rows as table_rows
from tracehouse.ingest.ncu_link import link_launches
from tracehouse.ingest.writer import Writer
from tracehouse.schema.migrate import head_from_files
from tracehouse.schema.sqlite_head import create_at_head, sqlite_path

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)
_PRAGMAS = (
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA synchronous=NORMAL",
)


def open_at_head(url: str, *, create: bool = False) -> SqliteWriter | None:
    """The writer for ``url`` when it names an existing SQLite file at the schema head, else
    None; ``create``: a file that does not exist yet is made at the head first, from the
    migrations' snapshot (``schema/sqlite_head.py``), where the snapshot is at the head."""
    path = sqlite_path(url)
    if path is None:
        return None
    if create:
        create_at_head(path)
    if not path.is_file():
        return None
    head = head_from_files()
    if head is None:
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        stored = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
        if stored != [head]:
            conn.close()
            return None
        for pragma in _PRAGMAS:
            conn.execute(pragma)
    except sqlite3.Error:
        conn.close()
        return None  # not a database, no version table, locked: SQLAlchemy's way says which
    return SqliteWriter(conn, url)


def _stored(value: object) -> object:
    """A value as SQLAlchemy's SQLite dialect stores it: a datetime as its text, no zone."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class SqliteWriter(Writer):
    def __init__(self, conn: sqlite3.Connection, url: str) -> None:
        self._conn = conn
        self.url = url
        self._engine: Engine | None = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """sqlite3's errors as ``session_scope`` words SQLAlchemy's (no file, no value named)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            log.info("database unavailable (%s): %s", self.url, exc)
            raise DatabaseUnavailable("database unavailable") from exc
        except sqlite3.Error as exc:
            log.info("database error (%s): %s", self.url, exc)
            raise DatabaseError(f"database error: {exc.__class__.__name__}") from exc

    def existing(self, sha256: str) -> tuple[int, int] | None:
        with self._errors():
            row = self._conn.execute(
                "SELECT run_id, id FROM trace WHERE sha256 = ? OR content_sha256 = ? LIMIT 1", (sha256, sha256)
            ).fetchone()
        return None if row is None or row[0] is None else (row[0], row[1])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    with suppress(sqlite3.Error):  # the error to report is the one that got us here
                        self._conn.execute("ROLLBACK")
                raise

    def _insert(self, table: str, values: dict[str, Any], conflict: str | None = None) -> int:
        columns = ", ".join(f'"{c}"' for c in values)
        marks = ", ".join("?" * len(values))
        tail = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
        cur = self._conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}){tail}", [_stored(v) for v in values.values()]
        )
        return cur.lastrowid or 0

    def _id_of(self, table: str, name: object) -> int:
        row = self._conn.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()
        if row is None:  # the upsert made or found the row in this transaction
            raise DatabaseError(f"{table} {name!r} vanished while its run was being written")
        return int(row[0])

    def _model_id(self, meta: RunMeta) -> int | None:
        row = table_rows.model_row(meta)
        if row is None:
            return None
        self._insert("model", row, conflict="name")
        found = self._conn.execute(
            "SELECT id, family, architecture, param_count FROM model WHERE name = ?", (row["name"],)
        ).fetchone()
        if found is None:
            raise DatabaseError(f"model {row['name']!r} vanished while its run was being written")
        # A later run may know more (a collector computes param counts); fill gaps, never overwrite.
        gaps = {k: row[k] for k, stored in zip(table_rows.MODEL_GAPS, found[1:], strict=True) if stored is None}
        gaps = {k: v for k, v in gaps.items() if v is not None}
        if gaps:
            sets = ", ".join(f"{k} = ?" for k in gaps)
            self._conn.execute(f"UPDATE model SET {sets} WHERE id = ?", [*gaps.values(), found[0]])
        return int(found[0])

    def symbol_ids(self, names: pl.Series) -> pl.DataFrame:
        digests = table_rows.symbol_digests(names)
        keys = list(digests)
        found = self._symbols(keys)
        missing = [(d, digests[d]) for d in keys if d not in found]
        if missing:
            self._conn.executemany(
                "INSERT INTO symbol (digest, text) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING", missing
            )
            found.update(self._symbols([d for d, _ in missing]))
        return table_rows.symbol_frame(digests, found)

    def _symbols(self, digests: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        size = table_rows.SYMBOL_CHUNK
        for i in range(0, len(digests), size):
            chunk = digests[i : i + size]
            marks = ", ".join("?" * len(chunk))
            found.update(self._conn.execute(f"SELECT digest, id FROM symbol WHERE digest IN ({marks})", chunk))
        return found

    def insert_run(self, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
        model = self._model_id(meta)
        hardware = table_rows.busiest_device_row(parsed, kernels, meta)
        self._insert("hardware", hardware, conflict="name")
        values = {"model_id": model, "hardware_id": self._id_of("hardware", hardware["name"])}
        run_id = self._insert("run", values | table_rows.run_values(parsed, kernels, meta))
        if meta.tags:
            self._conn.executemany(
                "INSERT INTO run_tag (run_id, key, value) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in meta.tags.items()],
            )
        return run_id

    def insert_trace(self, run_id: int, parsed: ParsedTrace, **trace_row: Any) -> int:
        return self._insert("trace", table_rows.trace_values(run_id, parsed, **trace_row))

    def insert_rows(self, table: str, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        table_rows.sqlite_insert(self._conn, table, table_rows.without_null_columns(rows, table))

    def update_run(self, run_id: int, values: dict[str, Any]) -> None:
        sets = ", ".join(f'"{k}" = ?' for k in values)
        self._conn.execute(f"UPDATE run SET {sets} WHERE id = ?", [*map(_stored, values.values()), run_id])

    def relink_counters(self, run_id: int) -> int:
        """``ncu_load.relink``'s matching, in SQL of its own (no SQLAlchemy here)."""
        launches = self._frame(
            "SELECT ncu_metric.kernel_id, symbol.text FROM ncu_metric JOIN symbol ON symbol.id = ncu_metric.name_id"
            " WHERE ncu_metric.run_id = ?",
            run_id,
            {"kernel_id": pl.Int64, "kernel_name": pl.String},
        ).unique("kernel_id")
        timeline = self._frame(
            "SELECT kernel.id, symbol.text FROM kernel JOIN symbol ON symbol.id = kernel.name_id"
            " WHERE kernel.run_id = ? AND kernel.kind = 'kernel'"
            " ORDER BY kernel.correlation IS NULL, kernel.correlation, kernel.seq",
            run_id,
            {"kernel_ref": pl.Int64, "name": pl.String},
        )
        links = link_launches(launches, timeline)
        self._conn.execute("UPDATE ncu_metric SET kernel_ref = NULL WHERE run_id = ?", (run_id,))
        self._conn.executemany(
            "UPDATE ncu_metric SET kernel_ref = ? WHERE run_id = ? AND kernel_id = ?",
            [(ref, run_id, launch) for launch, ref in links.iter_rows()],
        )
        return links.height

    def _frame(self, sql: str, run_id: int, schema: dict[str, Any]) -> pl.DataFrame:
        return pl.DataFrame(self._conn.execute(sql, (run_id,)).fetchall(), schema=schema, orient="row")

    def engine(self) -> Engine:
        if self._engine is None:
            from tracehouse.schema.db import make_engine

            self._engine = make_engine(self.url)
        return self._engine

    def close(self) -> None:
        # The last connection to close checkpoints the WAL: the SQLAlchemy engine's first.
        if self._engine is not None:
            self._engine.dispose()
        self._conn.close()
