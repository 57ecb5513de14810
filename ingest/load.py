"""Loading: attributed kernel rows and run metadata into the database, inside the caller's
transaction (one per trace).  Bulk paths: ``COPY`` on PostgreSQL, ``executemany`` on SQLite.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
from sqlalchemy import Integer, Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tracehouse.core.device_specs import device_row
from tracehouse.core.errors import DatabaseError
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.launches import LAUNCH_BY, LAUNCH_INPUT, LAUNCH_STATS, launch_groups
from tracehouse.core.meta import RunMeta
from tracehouse.core.model_catalog import family_and_architecture
from tracehouse.schema.launches import LaunchRollup
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

KERNEL_TABLE_COLUMNS = (
    "run_id",
    "trace_id",
    "seq",
    "kind",
    "device",
    "stream",
    "start_ns",
    "dur_ns",
    "name_id",
    "correlation",
    "grid_x",
    "grid_y",
    "grid_z",
    "block_x",
    "block_y",
    "block_z",
    "bytes",
    "operator",
    "operator_source",
    "attention_type",
    "seq_q",
    "seq_kv",
    "batch",
    "heads",
    "head_dim",
    "component",
    "step",
    "cpu_op_id",
    "annotation_id",
    "op_flops",
    "op_bytes",
    "launch_ns",
    "launch_dur_ns",
    "graph",
    "rule_id",
    "deciding_op_id",
)
_SYMBOL_CHUNK = 500
_ROWS_PER_INSERT = 200


def upsert(session: Session, table: Table, values: dict[str, Any], conflict: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=conflict))


def hardware_id(session: Session, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    device = None
    if parsed.devices and not parsed.cpu_only:
        busiest = kernels.group_by("device").agg(pl.col("dur_ns").sum()).sort("dur_ns", descending=True)
        used = busiest["device"][0] if busiest.height else None
        device = next((d for d in parsed.devices if d.device == used), parsed.devices[0])
    row = device_row(device, meta.hardware, parsed.cpu_only)
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
    texts = names.drop_nulls().unique().to_list()
    digests = {hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest(): t for t in texts}
    found: dict[str, int] = {}
    keys = list(digests)
    for i in range(0, len(keys), _SYMBOL_CHUNK):
        chunk = keys[i : i + _SYMBOL_CHUNK]
        found.update(dict(session.execute(select(Symbol.digest, Symbol.id).where(Symbol.digest.in_(chunk))).all()))
    missing = [{"digest": d, "text": digests[d]} for d in keys if d not in found]
    if missing:
        dialect = session.get_bind().dialect.name
        stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(Symbol.core_table())
        session.execute(stmt.on_conflict_do_nothing(index_elements=["digest"]), missing)
        for i in range(0, len(missing), _SYMBOL_CHUNK):
            chunk = [m["digest"] for m in missing[i : i + _SYMBOL_CHUNK]]
            found.update(dict(session.execute(select(Symbol.digest, Symbol.id).where(Symbol.digest.in_(chunk))).all()))
    return pl.DataFrame(
        {"text": [digests[d] for d in found], "symbol_id": list(found.values())},
        schema={"text": pl.String, "symbol_id": pl.Int64},
    )


def kernel_totals(kernels: pl.DataFrame) -> dict[str, int]:
    """The run's ``kernel_count``, ``total_ns`` (summed kernel time), ``span_ns`` (first
    kernel start to last kernel end), ``other_ns`` (time no rule attributed) and ``graph_ns``
    (time in kernels a CUDA graph launched) from its kernel rows."""
    if kernels.is_empty():
        return {"kernel_count": 0, "total_ns": 0, "span_ns": 0, "other_ns": 0, "graph_ns": 0} | kind_counts(kernels)
    totals = kernels.select(
        end=(pl.col("start_ns") + pl.col("dur_ns")).max(),
        start=pl.col("start_ns").min(),
        total=pl.col("dur_ns").sum(),
        other=pl.col("dur_ns").filter(pl.col("operator") == "other").sum(),
        graph=pl.col("dur_ns").filter(pl.col("graph")).sum(),
    ).row(0, named=True)
    return {
        "kernel_count": kernels.height,
        "total_ns": int(totals["total"]),
        "span_ns": int(totals["end"] - totals["start"]),
        "other_ns": int(totals["other"]),
        "graph_ns": int(totals["graph"]),
    } | kind_counts(kernels)


def kind_counts(kernels: pl.DataFrame) -> dict[str, int]:
    """``memcpy_count`` and ``memset_count``: kept on the run row so the runs listing splits
    ``kernel_count`` by kind without reading any rollup."""
    kinds = kernels["kind"] if "kind" in kernels.columns else pl.Series([], dtype=pl.String)
    return {"memcpy_count": int((kinds == "memcpy").sum()), "memset_count": int((kinds == "memset").sum())}


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
        rank=_int32(parsed.rank),
        world_size=_int32(parsed.world_size),
        host=meta.host,
        experiment=meta.experiment,
        git_commit=meta.git_commit,
        version=meta.version,
        device_kind="cpu" if parsed.cpu_only else "gpu",
        **kernel_totals(kernels),
        created_at=datetime.now(UTC),
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
        ingested_at=datetime.now(UTC),
    )
    session.add(trace)
    session.flush()
    return trace.id


INT32 = (-(2**31), 2**31 - 1)


def _int32(value: int | None) -> int | None:
    return value if value is not None and INT32[0] <= value <= INT32[1] else None


def within_integer_columns(kernels: pl.DataFrame) -> pl.DataFrame:
    """A number from a trace (a grid size, an annotation's ``sq=``) past a 32-bit INTEGER
    column becomes null: PostgreSQL would refuse the whole trace, SQLite store it as given."""
    narrow = [
        c.name
        for c in Kernel.__table__.columns
        if type(c.type) is Integer and c.name in kernels.columns and not c.primary_key
    ]
    return kernels.with_columns(
        pl.when(pl.col(c).is_between(*INT32)).then(pl.col(c)).otherwise(None).alias(c) for c in narrow
    )


def insert_kernels(session: Session, run_id: int, trace_id: int, kernels: pl.DataFrame) -> None:
    insert_rollups(session, run_id, insert_kernel_rows(session, run_id, trace_id, kernels))


def insert_kernel_rows(session: Session, run_id: int, trace_id: int, kernels: pl.DataFrame) -> pl.DataFrame:
    """The kernel table's rows of ``kernels``, inserted; returned for the rollups (a big trace
    inserts its kernels a window at a time and sums the rollups at the end)."""
    kernels = within_integer_columns(kernels)
    named = ("name", "cpu_op", "annotation", "deciding_op")
    symbols = symbol_ids(session, pl.concat([kernels[c] for c in named]))
    # A hash lookup per name column: a third of the time of three left joins on the text.
    text, ids = symbols["text"], symbols["symbol_id"]
    rows = kernels.with_columns(
        **{f"{c}_id": pl.col(c).replace_strict(text, ids, default=None, return_dtype=pl.Int64) for c in named},
        run_id=pl.lit(run_id, pl.Int64),
        trace_id=pl.lit(trace_id, pl.Int64),
        rule_id=pl.col("rule"),
    ).select(KERNEL_TABLE_COLUMNS)
    bulk_insert(session, Kernel.__tablename__, rows)
    return rows


def insert_rollups(session: Session, run_id: int, rows: pl.DataFrame) -> None:
    """The operator, kernel and launch rollups of a run's kernel table rows (all of them)."""
    by_op, by_name = rollups(run_id, rows)
    bulk_insert(session, OperatorRollup.__tablename__, by_op)
    bulk_insert(session, KernelRollup.__tablename__, by_name)
    bulk_insert(session, LaunchRollup.__tablename__, launch_rollup(run_id, rows))


def rollups(run_id: int, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The operator and kernel rollup rows of ``rows`` (kernel table rows)."""
    keys = ["operator", "attention_type", "seq_q", "seq_kv", "component"]
    costed = pl.col("op_flops").is_not_null()
    run = pl.lit(run_id, pl.Int64)
    # One collect for both: polars computes the two group-bys side by side.
    by_op, by_name = pl.collect_all(
        [
            rows.lazy()
            .group_by(keys)
            .agg(
                kernel_count=pl.len().cast(pl.Int64),
                total_ns=pl.col("dur_ns").sum(),
                op_flops=pl.when(costed.any()).then(pl.col("op_flops").sum()),
                op_bytes=pl.when(costed.any()).then(pl.col("op_bytes").sum()),
                costed_ns=pl.when(costed.any()).then(pl.col("dur_ns").filter(costed).sum()),
            )
            .with_columns(run_id=run),
            rows.lazy()
            .group_by("name_id", "operator", "kind")
            .agg(
                kernel_count=pl.len().cast(pl.Int64),
                total_ns=pl.col("dur_ns").sum(),
                min_ns=pl.col("dur_ns").min(),
                max_ns=pl.col("dur_ns").max(),
            )
            .with_columns(run_id=run),
        ],
        engine="in-memory",
    )
    return by_op, by_name


def launch_rollup(run_id: int, rows: pl.DataFrame) -> pl.DataFrame:
    """The launch rollup rows of a run's kernel rows: every grouping of ``LAUNCH_BY`` whole
    (medians do not add up), the kernel grouping by name id.  None for a run without launches."""
    launched = rows.filter(pl.col("launch_ns").is_not_null()).rename({"name_id": "kernel"})
    if launched.is_empty():
        return pl.DataFrame()
    parts = []
    for by in LAUNCH_BY:
        groups = launch_groups(launched.select(by, *LAUNCH_INPUT), by)
        parts.append(
            groups.select(
                pl.lit(run_id, pl.Int64).alias("run_id"),
                pl.lit(by).alias("dimension"),
                (pl.col(by) if by == "kernel" else pl.lit(None, pl.Int64)).alias("name_id"),
                (pl.lit(None, pl.String) if by == "kernel" else pl.col(by).cast(pl.String)).alias("group_key"),
                *LAUNCH_STATS,
            )
        )
    return pl.concat(parts)


def bulk_insert(session: Session, table: str, rows: pl.DataFrame) -> None:
    if rows.is_empty():
        return
    rows = _without_null_columns(rows, table)
    dbapi = session.connection().connection.driver_connection
    if dbapi is None:  # SQLAlchemy invalidated the connection under us
        raise DatabaseError(f"lost the database connection while writing {table}")
    columns = ", ".join(f'"{c}"' for c in rows.columns)
    if session.get_bind().dialect.name == "postgresql":
        buf = io.BytesIO()
        rows.write_csv(buf, include_header=False)
        with dbapi.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf.getvalue())
        return
    _sqlite_insert(dbapi, f"INSERT INTO {table} ({columns}) VALUES ", rows)


def _sqlite_insert(dbapi: sqlite3.Connection, insert: str, rows: pl.DataFrame) -> None:
    """Many rows per ``INSERT ... VALUES`` (up to SQLite's bound-variable limit): executing
    one statement per row is a fifth of ``executemany``'s time for kernel rows."""
    width = rows.width
    per = max(1, min(_ROWS_PER_INSERT, dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    # Flat values in row order.  One strided slice assignment per whole column interleaves
    # them at C speed: a third of the time of zip + chain over every value.
    values: list = [None] * (rows.height * width)
    for j, column in enumerate(rows.get_columns()):
        values[j::width] = column.to_list()
    step = per * width
    full = len(values) - len(values) % step
    row = f"({', '.join('?' * width)})"
    if full:
        dbapi.executemany(insert + ", ".join([row] * per), (values[i : i + step] for i in range(0, full, step)))
    if full < len(values):
        dbapi.execute(insert + ", ".join([row] * ((len(values) - full) // width)), values[full:])


def _without_null_columns(rows: pl.DataFrame, table: str) -> pl.DataFrame:
    """Leave out columns that are null in every row and have no default, so they get NULL
    from the database: binding values is most of what an insert costs, and a kernel row's
    attention and annotation keys are null in most runs."""
    declared = Base.metadata.tables.get(table)
    if declared is None:
        return rows
    keep = [
        c
        for c in rows.columns
        if c not in declared.c or declared.c[c].server_default is not None or rows[c].null_count() < rows.height
    ]
    return rows.select(keep) if keep else rows


def delete_run(session: Session, run_id: int) -> None:
    """Remove a run; kernels, rollups, tags and traces go by cascade.  Its raw file stays in
    the content-addressed store (another upload of the same bytes may want it)."""
    session.execute(delete(IngestJob).where(IngestJob.run_id == run_id))
    session.execute(delete(Run).where(Run.id == run_id))
