"""Launch overhead (HTA's kernel launch statistics): how long the host spent in each launch
call, how long the kernel then waited in the queue, and which operators' kernels run for less
time than it took to launch them: the sign of a launch-bound workload, such as an LLM decode
step's small matrix-vector kernels.

Per kernel: ``launch_dur_ns`` is the host call (``cudaLaunchKernel``, ``cudaMemcpyAsync``,
``hipLaunchKernel``, ``cuLaunchKernel``...); queue delay is the kernel's start minus the end of
that call, clipped at 0, as HTA computes it.  CPU-only runs have no launches.

A CUDA graph is one launch call (``cudaGraphLaunch``) for many kernels.  Its host time is
counted once, in the group of the graph's first kernel; its kernels get no queue delay of their
own (they wait on each other, not on the host) and are never launch-bound.  ``graph_kernels``
says how many of a group's kernels a graph launched.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.errors import BadInput
from tracehouse.core.launches import LAUNCH_BY, LAUNCH_STATS, launch_groups
from tracehouse.schema.launches import LaunchRollup
from tracehouse.schema.models import Kernel, Symbol

__all__ = ["LAUNCH_BY", "launch_overhead"]

_SCHEMA = {
    "operator": pl.String,
    "kernel": pl.String,
    "attention_type": pl.String,
    "component": pl.String,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "launch_ns": pl.Int64,
    "launch_dur_ns": pl.Int64,
    "graph": pl.Boolean,
    "seq": pl.Int64,
    "correlation": pl.Int64,
}


def launch_overhead(session: Session, run_id: int, by: str = "operator") -> pl.DataFrame:
    """One row per ``by`` group of launched kernels: ``kernels``, ``graph_kernels``,
    ``launches`` (launch calls, a graph's once), ``gpu_ns`` (their run time), ``launch_ns``
    (host time in their launch calls), ``launch_per_gpu`` (launch_ns / gpu_ns), ``launch_bound``
    (directly launched kernels that ran for less time than their launch call took) and its
    share, and the queue delay's ``delay_median_ns``, ``delay_p95_ns`` and ``delay_max_ns``
    (directly launched kernels only; null for a group of graph kernels).

    Read from the launch rollup written at ingest; a run without one (ingested before it
    existed, or without launches) is computed from its kernel rows, the same way."""
    if by not in LAUNCH_BY:
        raise BadInput(f"unknown grouping {by!r}; expected one of {', '.join(LAUNCH_BY)}")
    get_run(session, run_id)
    grouped = _from_rollup(session, run_id, by)
    if grouped.is_empty():
        grouped = launch_groups(launched_kernels(session, run_id), by)
    return grouped.with_columns(
        launch_per_gpu=ratio("launch_ns", "gpu_ns"),
        launch_bound_share=ratio("launch_bound", pl.col("kernels") - pl.col("graph_kernels")),
    ).sort("launch_ns", by, descending=[True, False], nulls_last=True)


def _from_rollup(session: Session, run_id: int, by: str) -> pl.DataFrame:
    r = LaunchRollup
    key = Symbol.text if by == "kernel" else r.group_key
    stmt = (
        select(key, *(getattr(r, name) for name in LAUNCH_STATS))
        .outerjoin(Symbol, Symbol.id == r.name_id)
        .where(r.run_id == run_id, r.dimension == by)
    )
    return to_frame(session, stmt, {by: pl.String, **LAUNCH_STATS})


def launched_kernels(session: Session, run_id: int) -> pl.DataFrame:
    """The run's kernels that have a launch call, with what ``launch_groups`` groups by and sums:
    the rows the launch rollup is made of, read back for a run that has none."""
    k = Kernel
    return to_frame(
        session,
        select(
            k.operator,
            Symbol.text,
            k.attention_type,
            k.component,
            k.start_ns,
            k.dur_ns,
            k.launch_ns,
            k.launch_dur_ns,
            k.graph,
            k.seq,
            k.correlation,
        )
        .join(Symbol, Symbol.id == k.name_id)
        .where(k.run_id == run_id, k.launch_ns.is_not(None)),
        _SCHEMA,
    )
