"""Re-ingest: classify a run again from its kept raw trace with today's rules.

Raw files are kept (content-addressed) for exactly this: when attribution improves, stored
runs catch up without anyone re-uploading.  The run keeps its id, metadata and tags; its
kernels and rollups are replaced in one transaction (a failure changes nothing), and
Nsight Compute counters attached to it are linked to the new kernels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest import kineto_windows
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.kineto_memory import memory_rows
from tracehouse.ingest.kineto_sync import sync_rows
from tracehouse.ingest.ncu_load import relink
from tracehouse.ingest.pipeline import PARSERS, big_trace, parse_trace
from tracehouse.ingest.rows import kernel_totals
from tracehouse.ingest.window_load import store_after_windows, store_windowed_kernels
from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter
from tracehouse.schema.db import session_scope
from tracehouse.schema.launches import LaunchRollup
from tracehouse.schema.memory import MemoryEvent
from tracehouse.schema.models import Kernel, KernelRollup, OperatorRollup, Run, Symbol, Trace
from tracehouse.schema.sync import SyncEdge

if TYPE_CHECKING:
    from tracehouse.ingest.window_load import BigTrace

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReingestResult:
    run_id: int
    kernel_count: int
    reclassified: int  # kernels (matched by execution order) whose operator or attention type changed
    other_ns_before: int
    other_ns_after: int
    counters_linked: int
    # Per kernel name and change of class, the largest by time first (at most CHANGES_SHOWN):
    # {"kernel", "operator_before", "operator_after", "kernels", "total_ns"}.
    changes: tuple[dict, ...] = ()


CHANGES_SHOWN = 20


def reingest_run(
    engine: Engine, run_id: int, name_rules: Sequence[NameRule] = NAME_RULES, *, window_kernels: int | None = None
) -> ReingestResult:
    """Parse the run's raw timeline trace again and replace its kernels and rollups, classified
    with ``name_rules`` (today's, a lab's own first).  A trace the ingest reads in windows (big,
    or ``window_kernels`` asked for) is re-read the same way, its kernels replaced a window at
    a time: memory does not grow with its kernels and ranges (its memory events, if recorded,
    are spilled and attributed a window at a time, as the ingest does)."""
    with session_scope(engine) as session:
        trace_id, fmt, path = _timeline_trace(session, run_id)
    with kineto_windows.scratch() as folder:
        big = big_trace(path, fmt, Path(folder), window_kernels=window_kernels)
        if big is not None:
            return _reingest_windowed(engine, run_id, trace_id, big, name_rules)
    parsed = parse_trace(path, fmt)  # parse outside the transaction
    kernels = attribute(parsed, name_rules)
    # The profiler's [memory] events (a Kineto trace's only), attributed to today's ranges.
    memory = memory_rows(path, parsed.ranges) if fmt == "kineto" else None
    changes = _Changes()
    with session_scope(engine) as session:
        before = _keys(session, run_id)
        # Sync edges and memory events too: runs ingested before their tables existed get them here.
        for table in (Kernel, OperatorRollup, KernelRollup, LaunchRollup, SyncEdge, MemoryEvent):
            session.execute(delete(table).where(table.run_id == run_id))
        writer = SqlAlchemyWriter(engine, session)  # the ingest's own writes, in this transaction
        writer.insert_kernels(run_id, trace_id, kernels)
        writer.insert_sync(run_id, trace_id, sync_rows(parsed))
        if memory is not None:
            writer.insert_memory(run_id, trace_id, memory)
        session.execute(update(Run).where(Run.id == run_id).values(**kernel_totals(kernels)))
        changes.add(before, _keys(session, run_id))
        linked = relink(session, run_id)
    return changes.result(run_id, kernels.height, linked)


def _reingest_windowed(
    engine: Engine, run_id: int, trace_id: int, big: BigTrace, name_rules: Sequence[NameRule]
) -> ReingestResult:
    """The windowed ingest's writes for an existing run: each window's stored kernels (by
    ``seq``) are read for the comparison, deleted and written again before the next window is
    taken; like a windowed ingest, it keeps no launch rollup."""
    changes = _Changes()
    with session_scope(engine) as session:
        for table in (OperatorRollup, KernelRollup, LaunchRollup, SyncEdge, MemoryEvent):
            session.execute(delete(table).where(table.run_id == run_id))
        held: list[pl.DataFrame] = []

        def replace(first: int, last: int) -> None:
            held.append(_keys(session, run_id, first, last))
            session.execute(delete(Kernel).where(Kernel.run_id == run_id, Kernel.seq.between(first, last)))

        def compare(first: int, last: int) -> None:
            changes.add(held.pop(), _keys(session, run_id, first, last))

        writer = SqlAlchemyWriter(engine, session)
        count = store_windowed_kernels(
            writer, big, run_id, trace_id, name_rules, before_window=replace, after_window=compare
        )
        store_after_windows(writer, big, run_id, trace_id)
        # Stored kernels past today's last one (the trace read as fewer kernels today).
        changes.add(_keys(session, run_id, count, None), pl.DataFrame(schema=_KEYS_SCHEMA))
        session.execute(delete(Kernel).where(Kernel.run_id == run_id, Kernel.seq >= count))
        linked = relink(session, run_id)
    return changes.result(run_id, count, linked)


class _Changes:
    """What a re-ingest changed, summed over the parts it compares (the whole run, or window
    after window): kernels matched by ``seq``, and per kernel name and change of class."""

    def __init__(self) -> None:
        self.reclassified = self.other_ns_before = self.other_ns_after = 0
        self.grouped: pl.DataFrame | None = None

    def add(self, before: pl.DataFrame, after: pl.DataFrame) -> None:
        changed = before.join(after, on="seq", how="full", suffix="_new").filter(
            pl.col("operator").ne_missing(pl.col("operator_new"))
            | pl.col("attention_type").ne_missing(pl.col("attention_type_new"))
        )
        self.reclassified += changed.height
        self.other_ns_before += _other_ns(before)
        self.other_ns_after += _other_ns(after)
        grouped = changed.group_by(
            kernel=pl.coalesce("name_new", "name"), operator_before="operator", operator_after="operator_new"
        ).agg(kernels=pl.len().cast(pl.Int64), total_ns=pl.coalesce("dur_ns_new", "dur_ns").sum())
        if self.grouped is not None:  # summed as it goes: one row per (name, change), not per kernel
            grouped = (
                pl.concat([self.grouped, grouped])
                .group_by("kernel", "operator_before", "operator_after")
                .agg(pl.col("kernels").sum(), pl.col("total_ns").sum())
            )
        self.grouped = grouped

    def result(self, run_id: int, kernel_count: int, linked: int) -> ReingestResult:
        shown: tuple[dict, ...] = ()
        if self.grouped is not None:
            top = self.grouped.sort("total_ns", "kernel", descending=[True, False]).head(CHANGES_SHOWN)
            shown = tuple(top.to_dicts())
        return ReingestResult(
            run_id=run_id,
            kernel_count=kernel_count,
            reclassified=self.reclassified,
            other_ns_before=self.other_ns_before,
            other_ns_after=self.other_ns_after,
            counters_linked=linked,
            changes=shown,
        )


def _timeline_trace(session: Session, run_id: int) -> tuple[int, str, Path]:
    if session.get(Run, run_id) is None:
        raise NotFound(f"run {run_id} does not exist")
    rows = session.execute(
        select(Trace.id, Trace.format, Trace.raw_path).where(Trace.run_id == run_id).order_by(Trace.id)
    ).all()
    timeline = [r for r in rows if r.format in PARSERS]
    if not timeline:
        raise BadInput(
            f"run {run_id} has no timeline trace to re-ingest (Nsight Compute counters are stored as measured)"
        )
    path = Path(timeline[0].raw_path)
    if not path.is_file():
        log.warning("run %s: raw file missing at %s", run_id, path)  # the path is for the operator
        raise NotFound(f"run {run_id}: its raw file is gone from the store; ingest the trace again")
    return timeline[0].id, timeline[0].format, path


def _keys(session: Session, run_id: int, first: int | None = None, last: int | None = None) -> pl.DataFrame:
    """The stored kernels' keys, those with ``first <= seq <= last`` where given."""
    query = (
        select(Kernel.seq, Kernel.operator, Kernel.attention_type, Kernel.dur_ns, Symbol.text)
        .join(Symbol, Symbol.id == Kernel.name_id)
        .where(Kernel.run_id == run_id)
    )
    if first is not None:
        query = query.where(Kernel.seq >= first)
    if last is not None:
        query = query.where(Kernel.seq <= last)
    rows = session.execute(query).all()
    return pl.DataFrame([tuple(r) for r in rows], orient="row", schema=_KEYS_SCHEMA)


_KEYS_SCHEMA = {
    "seq": pl.Int64,
    "operator": pl.String,
    "attention_type": pl.String,
    "dur_ns": pl.Int64,
    "name": pl.String,
}


def _other_ns(keys: pl.DataFrame) -> int:
    return int(keys.filter(pl.col("operator") == "other")["dur_ns"].sum())


def reingest_candidates(engine: Engine) -> list[int]:
    """Every run with a timeline trace, oldest first."""
    with session_scope(engine) as session:
        ids = session.scalars(
            select(Trace.run_id)
            .where(Trace.format.in_(list(PARSERS)), Trace.run_id.is_not(None))
            .distinct()
            .order_by(Trace.run_id)
        ).all()
    return [i for i in ids if i is not None]
