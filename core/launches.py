"""Launch statistics of a group of kernel rows: the one computation behind the launch rollup
written at ingest and the launch overhead analysis, so the two always agree.

A CUDA graph is one launch call for many kernels: its host time is charged once, to the
graph's first kernel (by start), its kernels get no queue delay of their own and are never
launch-bound (see ``tracehouse.analyses.launches``).
"""

from __future__ import annotations

import polars as pl

LAUNCH_BY = ("operator", "kernel", "attention_type", "component")

# The columns :func:`launch_groups` reads besides the grouping column.
LAUNCH_INPUT = ("start_ns", "dur_ns", "launch_ns", "launch_dur_ns", "graph", "seq", "correlation")

# What :func:`launch_groups` adds to the grouping column, in this order.
LAUNCH_STATS: dict[str, type[pl.DataType] | pl.DataType] = {
    "kernels": pl.Int64,
    "graph_kernels": pl.Int64,
    "launches": pl.Int64,
    "gpu_ns": pl.Int64,
    "launch_ns": pl.Int64,
    "launch_bound": pl.Int64,
    "delay_median_ns": pl.Float64,
    "delay_p95_ns": pl.Float64,
    "delay_max_ns": pl.Int64,
}


def launch_groups(kernels: pl.DataFrame, by: str) -> pl.DataFrame:
    """One row per value of ``by`` (nulls are a group) over launched kernel rows (``launch_ns``
    not null), unsorted: ``kernels``, ``graph_kernels``, ``launches`` (launch calls, a graph's
    once), ``gpu_ns``, ``launch_ns`` (host time in the launch calls), ``launch_bound`` (direct
    launches that ran shorter than their call) and the queue delay's median, p95 and max
    (direct launches only)."""
    direct = ~pl.col("graph").fill_null(False)
    # A graph launch is one host call however many kernels it ran: charge it to its first kernel.
    call = pl.struct("correlation", "launch_ns")
    first_of_graph = ~direct & call.is_first_distinct()
    delay = pl.when(direct).then(
        (pl.col("start_ns") - pl.col("launch_ns") - pl.col("launch_dur_ns")).clip(lower_bound=0)
    )
    bound = direct & (pl.col("dur_ns") < pl.col("launch_dur_ns"))
    grouped = (
        kernels.sort("start_ns", "seq")
        .with_columns(delay_ns=delay, charged=direct | first_of_graph)
        .group_by(by)
        .agg(
            kernels=pl.len().cast(pl.Int64),
            graph_kernels=(~direct).sum().cast(pl.Int64),
            launches=pl.col("charged").sum().cast(pl.Int64),
            gpu_ns=pl.col("dur_ns").sum(),
            launch_ns=pl.col("launch_dur_ns").filter(pl.col("charged")).sum(),
            launch_bound=bound.sum().cast(pl.Int64),
            delay_median_ns=pl.col("delay_ns").median(),
            delay_p95_ns=pl.col("delay_ns").quantile(0.95, interpolation="nearest").cast(pl.Float64),
            delay_max_ns=pl.col("delay_ns").max(),
        )
    )
    return grouped.with_columns(pl.col(name).cast(dtype) for name, dtype in LAUNCH_STATS.items())
