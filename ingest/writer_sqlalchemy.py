"""The writer for any engine: SQLAlchemy sessions, ``COPY`` on PostgreSQL (``load.bulk_insert``),
the ORM for the run and trace rows.  The service, the tests and every database the plain-sqlite3
writer does not take go this way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from tracehouse.core.errors import DatabaseError
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.meta import RunMeta
from tracehouse.ingest import load
from tracehouse.ingest.writer import Writer
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Run, Trace


class SqlAlchemyWriter(Writer):
    """Writes through ``engine``; ``session``: an open session to write in instead (its owner
    commits), for code that already holds one (re-ingest)."""

    def __init__(self, engine: Engine, session: Session | None = None) -> None:
        self._engine = engine
        self._session = session

    @property
    def session(self) -> Session:
        if self._session is None:
            raise DatabaseError("an ingest wrote outside its transaction")
        return self._session

    def existing(self, sha256: str) -> tuple[int, int] | None:
        with session_scope(self._engine) as session:
            row = session.execute(
                select(Trace.run_id, Trace.id)
                .where(or_(Trace.sha256 == sha256, Trace.content_sha256 == sha256))
                .limit(1)
            ).first()
        return None if row is None or row[0] is None else (row[0], row[1])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with session_scope(self._engine) as session:
            self._session = session
            try:
                yield
            finally:
                self._session = None

    def symbol_ids(self, names: pl.Series) -> pl.DataFrame:
        return load.symbol_ids(self.session, names)

    def insert_run(self, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
        return load.insert_run(self.session, parsed, kernels, meta)

    def insert_trace(self, run_id: int, parsed: ParsedTrace, **trace_row: Any) -> int:
        return load.insert_trace(self.session, run_id, parsed, **trace_row)

    def insert_rows(self, table: str, rows: pl.DataFrame) -> None:
        load.bulk_insert(self.session, table, rows)

    def update_run(self, run_id: int, values: dict[str, Any]) -> None:
        self.session.execute(update(Run).where(Run.id == run_id).values(**values))

    def relink_counters(self, run_id: int) -> int:
        from tracehouse.ingest.ncu_load import relink  # it imports the pipeline, which imports writers

        return relink(self.session, run_id)

    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()
