"""A big trace's kernels loaded a window at a time, inside the ingest's one transaction.

The run row is written first (its kernel rows point at it) from stand-in totals and corrected
at the end; each window's rows are inserted as they come, and its rollups summed into the
run's: the counts and times add, the minimum and maximum of minima and maxima are the whole
run's, and a FLOP or byte sum stays null when no window had a costed kernel (as
``load.rollups`` has it for the run at once).  What is held is one window and the rollups.
The launch rollup is not written: its medians and percentiles do not add up over windows, and
``analyses.launches`` answers a run without one from its kernel rows (the same answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import polars as pl

from tracehouse.core.meta import RunMeta
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest.jsonchunks import prefetched
from tracehouse.ingest.rows import kind_counts, rollups
from tracehouse.ingest.writer import Writer

if TYPE_CHECKING:
    from typing import TypeAlias

    from tracehouse.ingest.kineto_windows import Windowed
    from tracehouse.ingest.nsys_windows import NsysWindowed

    # A trace stored by windows: both present ``header``, ``stand_in_kernels()``, ``windows()``,
    # ``sync_rows()`` and ``memory_windows()``.
    BigTrace: TypeAlias = Windowed | NsysWindowed

_OP_KEYS = ["operator", "attention_type", "seq_q", "seq_kv", "component", "run_id"]
_NAME_KEYS = ["name_id", "operator", "kind", "run_id"]


def _nullable_sum(column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_not_null().any()).then(pl.col(column).sum()).alias(column)


def _summed(by_op: pl.DataFrame, by_name: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    added = (pl.col("kernel_count").sum(), pl.col("total_ns").sum())
    ops = by_op.group_by(_OP_KEYS, maintain_order=True).agg(
        *added, *(_nullable_sum(c) for c in ("op_flops", "op_bytes", "costed_ns"))
    )
    names = by_name.group_by(_NAME_KEYS, maintain_order=True).agg(
        *added, pl.col("min_ns").min(), pl.col("max_ns").max()
    )
    return ops, names


class _Run:
    """The run's totals and rollups, summed window by window."""

    def __init__(self) -> None:
        self.count = self.total = self.other = self.graph = self.memcpy = self.memset = 0
        self.start: int | None = None
        self.end: int | None = None
        self.by_op: pl.DataFrame | None = None
        self.by_name: pl.DataFrame | None = None

    def add(self, run_id: int, kernels: pl.DataFrame, rows: pl.DataFrame) -> None:
        t = kernels.select(
            start=pl.col("start_ns").min(),
            end=(pl.col("start_ns") + pl.col("dur_ns")).max(),
            total=pl.col("dur_ns").sum(),
            other=pl.col("dur_ns").filter(pl.col("operator") == "other").sum(),
            graph=pl.col("dur_ns").filter(pl.col("graph")).sum(),
        ).row(0, named=True)
        self.count += kernels.height
        kinds = kind_counts(kernels)
        self.memcpy, self.memset = self.memcpy + kinds["memcpy_count"], self.memset + kinds["memset_count"]
        self.total, self.other, self.graph = self.total + t["total"], self.other + t["other"], self.graph + t["graph"]
        self.start = t["start"] if self.start is None else min(self.start, t["start"])
        self.end = t["end"] if self.end is None else max(self.end, t["end"])
        by_op, by_name = rollups(run_id, rows)
        if self.by_op is not None and self.by_name is not None:
            by_op, by_name = (
                pl.concat([self.by_op, by_op], how="diagonal_relaxed"),
                pl.concat([self.by_name, by_name], how="diagonal_relaxed"),
            )
        self.by_op, self.by_name = _summed(by_op, by_name)

    def totals(self) -> dict[str, int]:
        span = (self.end or 0) - (self.start or 0)
        return {
            "kernel_count": self.count,
            "total_ns": self.total,
            "span_ns": span,
            "other_ns": self.other,
            "graph_ns": self.graph,
            "memcpy_count": self.memcpy,
            "memset_count": self.memset,
        }


def store_windowed(
    writer: Writer,
    big: BigTrace,
    meta: RunMeta,
    trace_row: dict[str, str | int],
    name_rules: Sequence[NameRule] = NAME_RULES,
) -> tuple[int, int, int]:
    """Run, trace, kernel, rollup, sync edge and (a Kineto trace's) memory rows of ``big`` through
    ``writer``, inside its open transaction: its run id, trace id and kernel count.
    ``trace_row``: ``insert_trace``'s keyword arguments."""
    run_id = writer.insert_run(big.header, big.stand_in_kernels(), meta)
    trace_id = writer.insert_trace(run_id, big.header, **trace_row)
    count = store_windowed_kernels(writer, big, run_id, trace_id, name_rules)
    store_after_windows(writer, big, run_id, trace_id)
    return run_id, trace_id, count


def store_after_windows(writer: Writer, big: BigTrace, run_id: int, trace_id: int) -> None:
    """What ``big`` stores once its kernels' windows are in: its sync edges (known only when
    every window has been read) and (a Kineto trace's) memory events, a window at a time."""
    writer.insert_sync(run_id, trace_id, big.sync_rows())
    for memory in big.memory_windows():
        writer.insert_memory(run_id, trace_id, memory)


def store_windowed_kernels(
    writer: Writer,
    big: BigTrace,
    run_id: int,
    trace_id: int,
    name_rules: Sequence[NameRule] = NAME_RULES,
    *,
    before_window: Callable[[int, int], None] | None = None,
    after_window: Callable[[int, int], None] | None = None,
) -> int:
    """The kernel and rollup rows of ``big`` for an existing run and trace, and the run's
    totals, inside ``writer``'s open transaction: the kernel count.  ``before_window`` and
    ``after_window`` are called with each window's first and last ``seq`` around its insert
    (``reingest`` replaces a stored run's kernels a window at a time with them)."""
    run = _Run()
    # The next window is attributed (polars, off the GIL) while this one is inserted.
    for kernels in prefetched(big.windows(name_rules), depth=1, name="tracehouse-windows"):
        seqs = kernels["seq"]
        first, last = (int(seqs.min()), int(seqs.max())) if len(seqs) else (0, -1)  # type: ignore[arg-type]
        if before_window is not None:
            before_window(first, last)
        rows = writer.insert_kernel_rows(run_id, trace_id, kernels)
        run.add(run_id, kernels, rows)
        if after_window is not None:
            after_window(first, last)
    if run.by_op is not None and run.by_name is not None:
        writer.insert_rows("operator_rollup", run.by_op)
        writer.insert_rows("kernel_rollup", run.by_name)
    writer.update_run(run_id, run.totals())
    return run.count
