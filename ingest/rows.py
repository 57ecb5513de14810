"""The rows one trace's ingest writes, computed from its frames: shared by the SQLAlchemy loader
(``load.py``, both backends) and the CLI's SQLite loader (``load_sqlite.py``), so both write
the same rows.  No SQLAlchemy here: what the loaders need from the models is kept as constants
below, and tests/test_load_sqlite.py checks them against the models."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import polars as pl

from tracehouse.core.frames import DeviceInfo, ParsedTrace

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
# The kernel table's 32-bit INTEGER columns (the models' ``Integer``, primary key aside).
KERNEL_INT32_COLUMNS = (
    "run_id",
    "trace_id",
    "seq",
    "device",
    "name_id",
    "grid_x",
    "grid_y",
    "grid_z",
    "block_x",
    "block_y",
    "block_z",
    "seq_q",
    "seq_kv",
    "batch",
    "heads",
    "head_dim",
    "step",
    "cpu_op_id",
    "annotation_id",
    "deciding_op_id",
)
# Columns of the tables the ingest bulk-writes that have a server default: never left out.
SERVER_DEFAULTS = {"kernel": frozenset({"graph"}), "operator_rollup": frozenset(), "kernel_rollup": frozenset()}
NAMED_COLUMNS = ("name", "cpu_op", "annotation", "deciding_op")  # kernel columns stored as symbol ids
SYMBOL_CHUNK = 500
_ROWS_PER_INSERT = 200
INT32 = (-(2**31), 2**31 - 1)


def int32(value: int | None) -> int | None:
    return value if value is not None and INT32[0] <= value <= INT32[1] else None


def stored_time(moment: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite ``DateTime`` stores it (UTC, no offset)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def now() -> datetime:
    return datetime.now(UTC)


def busiest_device(parsed: ParsedTrace, kernels: pl.DataFrame) -> DeviceInfo | None:
    """The device a run is filed under: the one its kernels spent most time on."""
    if not parsed.devices or parsed.cpu_only:
        return None
    busiest = kernels.group_by("device").agg(pl.col("dur_ns").sum()).sort("dur_ns", descending=True)
    used = busiest["device"][0] if busiest.height else None
    return next((d for d in parsed.devices if d.device == used), parsed.devices[0])


def symbol_digests(names: pl.Series) -> dict[str, str]:
    """``sha1 digest → text`` for every distinct non-null name (the symbol table's key)."""
    texts = names.drop_nulls().unique().to_list()
    return {hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest(): t for t in texts}


def chunks(items: list[str]) -> Iterable[list[str]]:
    return (items[i : i + SYMBOL_CHUNK] for i in range(0, len(items), SYMBOL_CHUNK))


def symbol_frame(digests: dict[str, str], found: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"text": [digests[d] for d in found], "symbol_id": list(found.values())},
        schema={"text": pl.String, "symbol_id": pl.Int64},
    )


def kernel_totals(kernels: pl.DataFrame) -> dict[str, int]:
    """The run's ``kernel_count``, ``total_ns`` (summed kernel time), ``span_ns`` (first
    kernel start to last kernel end), ``other_ns`` (time no rule attributed) and ``graph_ns``
    (time in kernels a CUDA graph launched) from its kernel rows."""
    if kernels.is_empty():
        return {"kernel_count": 0, "total_ns": 0, "span_ns": 0, "other_ns": 0, "graph_ns": 0}
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
    }


def within_integer_columns(kernels: pl.DataFrame) -> pl.DataFrame:
    """A number from a trace (a grid size, an annotation's ``sq=``) past a 32-bit INTEGER
    column becomes null: PostgreSQL would refuse the whole trace, SQLite store it as given."""
    narrow = [c for c in KERNEL_INT32_COLUMNS if c in kernels.columns]
    return kernels.with_columns(
        pl.when(pl.col(c).is_between(*INT32)).then(pl.col(c)).otherwise(None).alias(c) for c in narrow
    )


def kernel_rows(
    kernels: pl.DataFrame, run_id: int, trace_id: int, symbols: Callable[[pl.Series], pl.DataFrame]
) -> pl.DataFrame:
    """The kernel table's rows; ``symbols`` maps names to symbol ids (inserting new ones)."""
    kernels = within_integer_columns(kernels)
    found = symbols(pl.concat([kernels[c] for c in NAMED_COLUMNS]))
    # A hash lookup per name column: a third of the time of three left joins on the text.
    text, ids = found["text"], found["symbol_id"]
    return kernels.with_columns(
        **{f"{c}_id": pl.col(c).replace_strict(text, ids, default=None, return_dtype=pl.Int64) for c in NAMED_COLUMNS},
        run_id=pl.lit(run_id, pl.Int64),
        trace_id=pl.lit(trace_id, pl.Int64),
        rule_id=pl.col("rule"),
    ).select(KERNEL_TABLE_COLUMNS)


def rollups(run_id: int, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The operator rollup and the kernel-name rollup of a run's kernel rows."""
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


def without_null_columns(rows: pl.DataFrame, declared: set[str] | None, defaults: frozenset[str]) -> pl.DataFrame:
    """Leave out columns that are null in every row and have no default, so they get NULL
    from the database: binding values is most of what an insert costs, and a kernel row's
    attention and annotation keys are null in most runs.  ``declared``: the table's columns
    (None: not a table we know, everything is kept); ``defaults``: those with a server default."""
    if declared is None:
        return rows
    keep = [c for c in rows.columns if c not in declared or c in defaults or rows[c].null_count() < rows.height]
    return rows.select(keep) if keep else rows


def sqlite_insert(dbapi: sqlite3.Connection, table: str, rows: pl.DataFrame) -> None:
    """Many rows per ``INSERT ... VALUES`` (up to SQLite's bound-variable limit): executing
    one statement per row is a fifth of ``executemany``'s time for kernel rows."""
    columns = ", ".join(f'"{c}"' for c in rows.columns)
    insert = f"INSERT INTO {table} ({columns}) VALUES "
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
