"""Loading: attributed kernel rows and run metadata into the database, inside the caller's
transaction (one per trace).  Bulk paths: ``COPY`` on PostgreSQL, ``executemany`` on SQLite.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import polars as pl
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert_stmt
from sqlalchemy.orm import Session

from tracehouse.core.device_specs import device_row
from tracehouse.core.errors import DatabaseError
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.meta import RunMeta
from tracehouse.core.model_catalog import family_and_architecture
from tracehouse.ingest.rows import (
    busiest_device,
    chunks,
    int32,
    kernel_rows,
    kernel_totals,
    now,
    rollups,
    sqlite_insert,
    symbol_digests,
    symbol_frame,
    without_null_columns,
)
from tracehouse.schema.models import (
    Base,
    Hardware,
    IngestJob,
    Kernel,
    KernelRollup,
    Model,
    OperatorRollup,
    Run,
    RunTag,
    Symbol,
    Trace,
)


def upsert(session: Session, table: Table, values: dict[str, Any], conflict: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert_stmt)(table).values(values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=conflict))


def hardware_id(session: Session, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    row = device_row(busiest_device(parsed, kernels), meta.hardware, parsed.cpu_only)
    upsert(session, Hardware.core_table(), row, ["name"])
    hardware = session.scalar(select(Hardware.id).where(Hardware.name == row["name"]))
    if hardware is None:  # the upsert above made or found the row in this transaction
        raise DatabaseError(f"hardware {row['name']!r} vanished while its run was being written")
    return hardware


def model_id(session: Session, meta: RunMeta) -> int | None:
    if not meta.model:
        return None
    family, architecture = family_and_architecture(meta.model)
    row = {
        "name": meta.model,
        "family": meta.family or family,
        "architecture": meta.architecture or architecture,
        "param_count": meta.param_count,
    }
    upsert(session, Model.core_table(), row, ["name"])
    model = session.scalars(select(Model).where(Model.name == meta.model)).one()
    # A later run may know more (a collector computes param counts); fill gaps, never overwrite.
    for key in ("family", "architecture", "param_count"):
        if getattr(model, key) is None and row[key] is not None:
            setattr(model, key, row[key])
    return model.id


def symbol_ids(session: Session, names: pl.Series) -> pl.DataFrame:
    """``text → symbol id`` for every distinct non-null name, inserting the new ones."""
    digests = symbol_digests(names)
    found: dict[str, int] = {}
    for chunk in chunks(list(digests)):
        found.update(dict(session.execute(select(Symbol.digest, Symbol.id).where(Symbol.digest.in_(chunk))).all()))
    missing = [{"digest": d, "text": digests[d]} for d in digests if d not in found]
    if missing:
        dialect = session.get_bind().dialect.name
        stmt = (pg_insert if dialect == "postgresql" else sqlite_insert_stmt)(Symbol.core_table())
        session.execute(stmt.on_conflict_do_nothing(index_elements=["digest"]), missing)
        for chunk in chunks([m["digest"] for m in missing]):
            found.update(dict(session.execute(select(Symbol.digest, Symbol.id).where(Symbol.digest.in_(chunk))).all()))
    return symbol_frame(digests, found)


def insert_run(session: Session, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    run = Run(
        model_id=model_id(session, meta),
        hardware_id=hardware_id(session, parsed, kernels, meta),
        attention_backend=meta.attention_backend,
        scale=meta.scale,
        batch=meta.batch,
        dtype=meta.dtype,
        image_size=meta.image_size,
        frames=meta.frames,
        denoising_steps=meta.denoising_steps,
        decode_tokens=meta.decode_tokens,
        text_length=meta.text_length,
        param_count=meta.param_count,
        peak_memory_bytes=meta.peak_memory_bytes,
        rank=int32(parsed.rank),
        world_size=int32(parsed.world_size),
        host=meta.host,
        experiment=meta.experiment,
        git_commit=meta.git_commit,
        version=meta.version,
        device_kind="cpu" if parsed.cpu_only else "gpu",
        **kernel_totals(kernels),
        created_at=now(),
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
    trace = Trace(
        run_id=run_id,
        format=parsed.format,
        sha256=sha256,
        size_bytes=size,
        content_sha256=content_sha256 or sha256,
        event_count=parsed.event_count,
        original_name=original_name,
        raw_path=raw_path,
        status="ingested",
        warning_count=sum(parsed.warnings.values()),
        warnings=orjson.dumps(parsed.warnings).decode() if parsed.warnings else None,
        ingested_at=now(),
    )
    session.add(trace)
    session.flush()
    return trace.id


def insert_kernels(session: Session, run_id: int, trace_id: int, kernels: pl.DataFrame) -> None:
    rows = kernel_rows(kernels, run_id, trace_id, lambda names: symbol_ids(session, names))
    bulk_insert(session, Kernel.__tablename__, rows)
    insert_rollups(session, run_id, rows)


def insert_rollups(session: Session, run_id: int, rows: pl.DataFrame) -> None:
    by_op, by_name = rollups(run_id, rows)
    bulk_insert(session, OperatorRollup.__tablename__, by_op)
    bulk_insert(session, KernelRollup.__tablename__, by_name)


def bulk_insert(session: Session, table: str, rows: pl.DataFrame) -> None:
    if rows.is_empty():
        return
    declared = Base.metadata.tables.get(table)
    defaults = frozenset(c.name for c in declared.c if c.server_default is not None) if declared is not None else None
    rows = without_null_columns(rows, None if declared is None else set(declared.c.keys()), defaults or frozenset())
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
    sqlite_insert(dbapi, table, rows)


def delete_run(session: Session, run_id: int) -> None:
    """Remove a run; kernels, rollups, tags and traces go by cascade.  Its raw file stays in
    the content-addressed store (another upload of the same bytes may want it)."""
    session.execute(delete(IngestJob).where(IngestJob.run_id == run_id))
    session.execute(delete(Run).where(Run.id == run_id))
