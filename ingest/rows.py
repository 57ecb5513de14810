"""The rows an ingest writes, computed from the frames once for every writer.

Both writers (``writer_sqlalchemy``, ``writer_sqlite``) take their run, trace, kernel, rollup,
memory and sync rows from here and differ only in how they send them, so the two cannot drift
apart; ``tests/test_writers.py`` compares every table both ways.  Nothing here imports
SQLAlchemy: the facts this module needs from the models (which kernel columns are 32-bit,
which columns have a server default, the column order of two tables) are constants, and
``tests/test_writers.py::test_the_constants_are_the_models`` checks them against the models.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl

from tracehouse.core.device_specs import device_row
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.launches import LAUNCH_BY, LAUNCH_INPUT, LAUNCH_STATS, launch_groups
from tracehouse.core.meta import RunMeta
from tracehouse.core.model_catalog import family_and_architecture

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
# The kernel table's 32-bit INTEGER columns (not the key): a value past them becomes null.
# (The id columns are never in an attributed frame; they are listed as the model has them.)
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
# Columns with a server default: always sent, even when null in every row (see without_null_columns).
SERVER_DEFAULTS = {"run": ("memcpy_count", "memset_count"), "kernel": ("graph",)}
MEMORY_EVENT_COLUMNS = (
    "run_id",
    "seq",
    "trace_id",
    "ts_ns",
    "device_type",
    "device_id",
    "bytes",
    "total_allocated",
    "total_reserved",
    "addr",
    "component",
    "operator",
    "attention_type",
    "step",
    "cpu_op_id",
)
SYNC_EDGE_COLUMNS = ("run_id", "seq", "trace_id", "tid", "call_ns", "dst_correlation")
SYMBOL_CHUNK = 500
_ROWS_PER_INSERT = 200
INT32 = (-(2**31), 2**31 - 1)


def int32(value: int | None) -> int | None:
    return value if value is not None and INT32[0] <= value <= INT32[1] else None


def symbol_digests(names: pl.Series) -> dict[str, str]:
    """``sha1 digest -> text`` of every distinct non-null name, in digest order.

    Every ingest inserts its new symbols in this order, so it takes their rows' locks in the
    same order as any other: two PostgreSQL ingests adding the same new names (two A100 traces
    share most of their kernels) queue behind each other.  In the order each trace first used
    them, one would wait for a name the other holds while holding one the other waits for, and
    PostgreSQL ends that deadlock by failing one ingest.  The order also makes symbol ids come
    out the same, run after run and writer after writer."""
    texts = names.drop_nulls().unique().to_list()
    return dict(sorted((hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest(), t) for t in texts))


def symbol_frame(digests: dict[str, str], found: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"text": [digests[d] for d in found], "symbol_id": list(found.values())},
        schema={"text": pl.String, "symbol_id": pl.Int64},
    )


def busiest_device_row(parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> dict[str, object]:
    """The ``hardware`` row of the run: the device its kernels spent most time on."""
    device = None
    if parsed.devices and not parsed.cpu_only:
        busiest = kernels.group_by("device").agg(pl.col("dur_ns").sum()).sort("dur_ns", descending=True)
        used = busiest["device"][0] if busiest.height else None
        device = next((d for d in parsed.devices if d.device == used), parsed.devices[0])
    return device_row(device, meta.hardware, parsed.cpu_only)


def model_row(meta: RunMeta) -> dict[str, Any] | None:
    if not meta.model:
        return None
    family, architecture = family_and_architecture(meta.model)
    return {
        "name": meta.model,
        "family": meta.family or family,
        "architecture": meta.architecture or architecture,
        "param_count": meta.param_count,
    }


MODEL_GAPS = ("family", "architecture", "param_count")  # a later run may fill these, never overwrite


def run_values(parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> dict[str, Any]:
    """The run row, but for its model and hardware ids."""
    return {
        "attention_backend": meta.attention_backend,
        "scale": meta.scale,
        "batch": meta.batch,
        "dtype": meta.dtype,
        "image_size": meta.image_size,
        "frames": meta.frames,
        "denoising_steps": meta.denoising_steps,
        "decode_tokens": meta.decode_tokens,
        "text_length": meta.text_length,
        "param_count": meta.param_count,
        "peak_memory_bytes": meta.peak_memory_bytes,
        "rank": int32(parsed.rank),
        "world_size": int32(parsed.world_size),
        "host": meta.host,
        "experiment": meta.experiment,
        "git_commit": meta.git_commit,
        "version": meta.version,
        "device_kind": "cpu" if parsed.cpu_only else "gpu",
        **kernel_totals(kernels),
        "created_at": datetime.now(UTC),
    }


def trace_values(
    run_id: int,
    parsed: ParsedTrace,
    *,
    sha256: str,
    size: int,
    original_name: str,
    raw_path: str,
    content_sha256: str | None = None,
) -> dict[str, Any]:
    """The trace row; ``content_sha256`` defaults to the file's (the same for a plain file)."""
    return {
        "run_id": run_id,
        "format": parsed.format,
        "sha256": sha256,
        "size_bytes": size,
        "content_sha256": content_sha256 or sha256,
        "event_count": parsed.event_count,
        "original_name": original_name,
        "raw_path": raw_path,
        "status": "ingested",
        "warning_count": sum(parsed.warnings.values()),
        "warnings": orjson.dumps(parsed.warnings).decode() if parsed.warnings else None,
        "ingested_at": datetime.now(UTC),
    }


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


def within_integer_columns(kernels: pl.DataFrame) -> pl.DataFrame:
    """A number from a trace (a grid size, an annotation's ``sq=``) past a 32-bit INTEGER
    column becomes null: PostgreSQL would refuse the whole trace, SQLite store it as given."""
    narrow = [c for c in KERNEL_INT32_COLUMNS if c in kernels.columns]
    return kernels.with_columns(
        pl.when(pl.col(c).is_between(*INT32)).then(pl.col(c)).otherwise(None).alias(c) for c in narrow
    )


def kernel_table_rows(kernels: pl.DataFrame, symbols: pl.DataFrame, run_id: int, trace_id: int) -> pl.DataFrame:
    """The kernel table's rows of ``kernels`` (after ``within_integer_columns``), their names
    replaced by ``symbols``' ids (``text, symbol_id``)."""
    named = ("name", "cpu_op", "annotation", "deciding_op")
    # A hash lookup per name column: a third of the time of three left joins on the text.
    text, ids = symbols["text"], symbols["symbol_id"]
    return kernels.with_columns(
        **{f"{c}_id": pl.col(c).replace_strict(text, ids, default=None, return_dtype=pl.Int64) for c in named},
        run_id=pl.lit(run_id, pl.Int64),
        trace_id=pl.lit(trace_id, pl.Int64),
        rule_id=pl.col("rule"),
    ).select(KERNEL_TABLE_COLUMNS)


def kernel_names(kernels: pl.DataFrame) -> pl.Series:
    """Every name ``kernel_table_rows`` looks up."""
    return pl.concat([kernels[c] for c in ("name", "cpu_op", "annotation", "deciding_op")])


def memory_table_rows(rows: pl.DataFrame, symbols: pl.DataFrame, run_id: int, trace_id: int) -> pl.DataFrame:
    return rows.with_columns(
        cpu_op_id=pl.col("cpu_op").replace_strict(
            symbols["text"], symbols["symbol_id"], default=None, return_dtype=pl.Int64
        ),
        run_id=pl.lit(run_id, pl.Int64),
        trace_id=pl.lit(trace_id, pl.Int64),
    ).select(MEMORY_EVENT_COLUMNS)


def sync_table_rows(rows: pl.DataFrame, run_id: int, trace_id: int) -> pl.DataFrame:
    out = rows.with_columns(run_id=pl.lit(run_id, pl.Int64), trace_id=pl.lit(trace_id, pl.Int64))
    return out.select(SYNC_EDGE_COLUMNS)


def counter_table_rows(counters: pl.DataFrame, symbols: pl.DataFrame, run_id: int) -> pl.DataFrame:
    """Counters by launch (``kernel_id, kernel_name, metric_name, metric_unit, metric_value``: a
    CUPTI range-profiler trace's, ``counter_ranges.COUNTER_SCHEMA``, or an Nsight Compute CSV's)
    as ``ncu_metric`` rows, their names as ``symbols``' ids."""
    return counters.join(symbols, left_on="kernel_name", right_on="text", how="left").select(
        run_id=pl.lit(run_id, pl.Int64),
        kernel_id="kernel_id",
        name_id="symbol_id",
        metric_name="metric_name",
        metric_unit="metric_unit",
        value="metric_value",
    )


def rollups(run_id: int, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The operator and kernel rollup rows of ``rows`` (kernel table rows)."""
    keys = ["operator", "attention_type", "seq_q", "seq_kv", "component"]
    costed = pl.col("op_flops").is_not_null()
    run = pl.lit(run_id, pl.Int64)
    # One collect for both: polars computes the two group-bys side by side.  Groups in
    # first-seen order: the rows (and their ids) come out the same every time.
    by_op, by_name = pl.collect_all(
        [
            rows.lazy()
            .group_by(keys, maintain_order=True)
            .agg(
                kernel_count=pl.len().cast(pl.Int64),
                total_ns=pl.col("dur_ns").sum(),
                op_flops=pl.when(costed.any()).then(pl.col("op_flops").sum()),
                op_bytes=pl.when(costed.any()).then(pl.col("op_bytes").sum()),
                costed_ns=pl.when(costed.any()).then(pl.col("dur_ns").filter(costed).sum()),
            )
            .with_columns(run_id=run),
            rows.lazy()
            .group_by("name_id", "operator", "kind", maintain_order=True)
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
        # Sorted: the rows (and their ids) come out the same every time.
        groups = launch_groups(launched.select(by, *LAUNCH_INPUT), by).sort(by, nulls_last=True)
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


def without_null_columns(rows: pl.DataFrame, table: str) -> pl.DataFrame:
    """Leave out columns that are null in every row and have no default, so they get NULL
    from the database: binding values is most of what an insert costs, and a kernel row's
    attention and annotation keys are null in most runs."""
    defaults = SERVER_DEFAULTS.get(table, ())
    keep = [c for c in rows.columns if c in defaults or rows[c].null_count() < rows.height]
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
