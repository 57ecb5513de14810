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

import polars as pl
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.kineto_memory import memory_rows
from tracehouse.ingest.kineto_sync import sync_rows
from tracehouse.ingest.ncu_load import relink
from tracehouse.ingest.pipeline import PARSERS, parse_trace
from tracehouse.ingest.rows import kernel_totals
from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter
from tracehouse.schema.db import session_scope
from tracehouse.schema.launches import LaunchRollup
from tracehouse.schema.memory import MemoryEvent
from tracehouse.schema.models import Kernel, KernelRollup, OperatorRollup, Run, Symbol, Trace
from tracehouse.schema.sync import SyncEdge

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


def reingest_run(engine: Engine, run_id: int, name_rules: Sequence[NameRule] = NAME_RULES) -> ReingestResult:
    """Parse the run's raw timeline trace again and replace its kernels and rollups, classified
    with ``name_rules`` (today's, a lab's own first)."""
    with session_scope(engine) as session:
        trace_id, fmt, path = _timeline_trace(session, run_id)
    parsed = parse_trace(path, fmt)  # parse outside the transaction
    kernels = attribute(parsed, name_rules)
    # The profiler's [memory] events (a Kineto trace's only), attributed to today's ranges.
    memory = memory_rows(path, parsed.ranges) if fmt == "kineto" else None
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
        after = _keys(session, run_id)
        linked = relink(session, run_id)
    changed = before.join(after, on="seq", how="full", suffix="_new").filter(
        pl.col("operator").ne_missing(pl.col("operator_new"))
        | pl.col("attention_type").ne_missing(pl.col("attention_type_new"))
    )
    return ReingestResult(
        run_id=run_id,
        kernel_count=kernels.height,
        reclassified=changed.height,
        other_ns_before=_other_ns(before),
        other_ns_after=_other_ns(after),
        counters_linked=linked,
        changes=_changes(changed),
    )


def _changes(changed: pl.DataFrame) -> tuple[dict, ...]:
    """The changed kernels by name and (old, new) class, largest by time first."""
    grouped = changed.group_by(
        kernel=pl.coalesce("name_new", "name"), operator_before="operator", operator_after="operator_new"
    ).agg(kernels=pl.len().cast(pl.Int64), total_ns=pl.coalesce("dur_ns_new", "dur_ns").sum())
    return tuple(grouped.sort("total_ns", "kernel", descending=[True, False]).head(CHANGES_SHOWN).to_dicts())


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


def _keys(session: Session, run_id: int) -> pl.DataFrame:
    rows = session.execute(
        select(Kernel.seq, Kernel.operator, Kernel.attention_type, Kernel.dur_ns, Symbol.text)
        .join(Symbol, Symbol.id == Kernel.name_id)
        .where(Kernel.run_id == run_id)
    ).all()
    return pl.DataFrame(
        [tuple(r) for r in rows],
        orient="row",
        schema={
            "seq": pl.Int64,
            "operator": pl.String,
            "attention_type": pl.String,
            "dur_ns": pl.Int64,
            "name": pl.String,
        },
    )


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
