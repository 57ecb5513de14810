"""Where the time went in one run (paper Fig 7): by operator, attention type, sequence length,
component or kernel.  Reads only the rollup tables, never the kernel rows.

``share`` is the fraction of the run's summed kernel time (GPU busy time, not wall time;
for CPU-only runs, the top-level host ops' time).
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.errors import BadInput
from tracehouse.schema.models import KernelRollup, OperatorRollup, Symbol

GROUPINGS: dict[str, tuple[str, ...]] = {
    "operator": ("operator",),
    "attention_type": ("attention_type",),
    "seq_len": ("attention_type", "seq_q", "seq_kv"),
    "component": ("component",),
}
BY_CHOICES = (*GROUPINGS, "kernel")
_KEY_TYPES = {
    "operator": pl.String,
    "attention_type": pl.String,
    "seq_q": pl.Int64,
    "seq_kv": pl.Int64,
    "component": pl.String,
}


def breakdown(session: Session, run_id: int, by: str = "operator") -> pl.DataFrame:
    """Rows ``<keys>, kernel_count, total_ns, share, other_share`` sorted by time, largest
    first; ``other_share`` is the part of the group's time no rule placed (``other``)."""
    if by not in BY_CHOICES:
        raise BadInput(f"unknown breakdown {by!r}; choose one of {', '.join(BY_CHOICES)}")
    run = get_run(session, run_id)
    frame = _by_kernel(session, run_id) if by == "kernel" else _by_rollup(session, run_id, GROUPINGS[by])
    total = run.total_ns or 1
    return frame.with_columns(share=pl.col("total_ns") / total).sort(
        "total_ns", *frame.columns[:1], descending=[True, False], nulls_last=True
    )


def _by_rollup(session: Session, run_id: int, keys: tuple[str, ...]) -> pl.DataFrame:
    cols = [getattr(OperatorRollup, k) for k in keys]
    other = case((OperatorRollup.operator == "other", OperatorRollup.total_ns), else_=0)
    stmt = (
        select(*cols, func.sum(OperatorRollup.kernel_count), func.sum(OperatorRollup.total_ns), func.sum(other))
        .where(OperatorRollup.run_id == run_id)
        .group_by(*cols)
    )
    if "seq_q" in keys:
        stmt = stmt.where(OperatorRollup.seq_q.is_not(None))
    schema = {k: _KEY_TYPES[k] for k in keys} | {"kernel_count": pl.Int64, "total_ns": pl.Int64, "other_ns": pl.Int64}
    frame = to_frame(session, stmt, schema)
    return frame.with_columns(other_share=ratio("other_ns", "total_ns")).drop("other_ns")


def _by_kernel(session: Session, run_id: int) -> pl.DataFrame:
    stmt = (
        select(
            Symbol.text,
            KernelRollup.kind,
            KernelRollup.operator,
            KernelRollup.kernel_count,
            KernelRollup.total_ns,
            KernelRollup.min_ns,
            KernelRollup.max_ns,
        )
        .join(Symbol, Symbol.id == KernelRollup.name_id)
        .where(KernelRollup.run_id == run_id)
    )
    schema = {
        "kernel": pl.String,
        "kind": pl.String,
        "operator": pl.String,
        "kernel_count": pl.Int64,
        "total_ns": pl.Int64,
        "min_ns": pl.Int64,
        "max_ns": pl.Int64,
    }
    frame = to_frame(session, stmt, schema)
    return frame.with_columns(other_share=(pl.col("operator") == "other").cast(pl.Float64))
