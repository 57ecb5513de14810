"""SQLAlchemy's inserts, inside the caller's transaction (one per trace): the run and trace rows
(ORM), symbols, and bulk rows (``COPY`` on PostgreSQL, multi-row ``INSERT`` on SQLite).  What
the rows are comes from ``ingest/rows.py``; an ingest sends them through
``writer_sqlalchemy.SqlAlchemyWriter`` (or the plain-sqlite3 writer), the Nsight Compute loader
and the fleet import call these directly.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tracehouse.core.errors import DatabaseError
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.meta import RunMeta
from tracehouse.ingest import rows as table_rows
from tracehouse.schema.models import (
    Hardware,
    IngestJob,
    Model,
    Run,
    RunTag,
    Symbol,
    Trace,
)


def upsert(session: Session, table: Table, values: dict[str, Any], conflict: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=conflict))


def hardware_id(session: Session, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    row = table_rows.busiest_device_row(parsed, kernels, meta)
    upsert(session, Hardware.core_table(), row, ["name"])
    hardware = session.scalar(select(Hardware.id).where(Hardware.name == row["name"]))
    if hardware is None:  # the upsert above made or found the row in this transaction
        raise DatabaseError(f"hardware {row['name']!r} vanished while its run was being written")
    return hardware


def model_id(session: Session, meta: RunMeta) -> int | None:
    row = table_rows.model_row(meta)
    if row is None:
        return None
    upsert(session, Model.core_table(), row, ["name"])
    model = session.scalars(select(Model).where(Model.name == row["name"])).one()
    # A later run may know more (a collector computes param counts); fill gaps, never overwrite.
    for key in table_rows.MODEL_GAPS:
        if getattr(model, key) is None and row[key] is not None:
            setattr(model, key, row[key])
    return model.id


def symbol_ids(session: Session, names: pl.Series) -> pl.DataFrame:
    """``text → symbol id`` for every distinct non-null name, inserting the new ones."""
    digests = table_rows.symbol_digests(names)
    found: dict[str, int] = {}
    keys = list(digests)
    chunk_size = table_rows.SYMBOL_CHUNK
    for i in range(0, len(keys), chunk_size):
        chunk = keys[i : i + chunk_size]
        found.update(dict(session.execute(select(Symbol.digest, Symbol.id).where(Symbol.digest.in_(chunk))).all()))
    missing = [{"digest": d, "text": digests[d]} for d in keys if d not in found]
    if missing:
        dialect = session.get_bind().dialect.name
        stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(Symbol.core_table())
        session.execute(stmt.on_conflict_do_nothing(index_elements=["digest"]), missing)
        for i in range(0, len(missing), chunk_size):
            chunk = [m["digest"] for m in missing[i : i + chunk_size]]
            found.update(dict(session.execute(select(Symbol.digest, Symbol.id).where(Symbol.digest.in_(chunk))).all()))
    return table_rows.symbol_frame(digests, found)


def insert_run(session: Session, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    run = Run(
        model_id=model_id(session, meta),
        hardware_id=hardware_id(session, parsed, kernels, meta),
        **table_rows.run_values(parsed, kernels, meta),
    )
    session.add(run)
    session.flush()
    if meta.tags:
        session.execute(
            insert(RunTag.core_table()), [{"run_id": run.id, "key": k, "value": v} for k, v in meta.tags.items()]
        )
    return run.id


def insert_trace(
    session: Session,
    run_id: int,
    parsed: ParsedTrace,
    *,
    sha256: str,
    size: int,
    original_name: str,
    raw_path: str,
    content_sha256: str | None = None,
) -> int:
    """``content_sha256`` defaults to the file's: the same thing for an uncompressed file."""
    values = table_rows.trace_values(
        run_id,
        parsed,
        sha256=sha256,
        size=size,
        original_name=original_name,
        raw_path=raw_path,
        content_sha256=content_sha256,
    )
    trace = Trace(**values)
    session.add(trace)
    session.flush()
    return trace.id


def bulk_insert(session: Session, table: str, rows: pl.DataFrame) -> None:
    if rows.is_empty():
        return
    rows = table_rows.without_null_columns(rows, table)
    dbapi = session.connection().connection.driver_connection
    if dbapi is None:  # SQLAlchemy invalidated the connection under us
        raise DatabaseError(f"lost the database connection while writing {table}")
    if session.get_bind().dialect.name == "postgresql":
        columns = ", ".join(f'"{c}"' for c in rows.columns)
        buf = io.BytesIO()
        rows.write_csv(buf, include_header=False)
        with dbapi.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf.getvalue())
        return
    table_rows.sqlite_insert(dbapi, table, rows)


def delete_run(session: Session, run_id: int) -> None:
    """Remove a run; kernels, rollups, tags and traces go by cascade.  Its raw file stays in
    the content-addressed store (another upload of the same bytes may want it)."""
    session.execute(delete(IngestJob).where(IngestJob.run_id == run_id))
    session.execute(delete(Run).where(Run.id == run_id))
