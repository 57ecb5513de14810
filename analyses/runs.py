"""Runs: list and filter, and one run's metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.frames import KERNEL_ROW_SCHEMA, FrameSchema
from tracehouse.schema.models import Hardware, Kernel, KernelRollup, Model, Run, RunTag, Symbol, Trace


class RunFilters(TypedDict, total=False):
    """The filters :func:`list_runs` takes, for functions that hand them on as ``**filters``."""

    model: str | None
    family: str | None
    hardware: str | None
    attention_backend: str | None
    tags: dict[str, str] | None
    since: datetime | None
    until: datetime | None
    run_id: int | None
    experiment: str | None


RUN_SCHEMA: FrameSchema = {
    "run_id": pl.Int64,
    "model": pl.String,
    "family": pl.String,
    "hardware": pl.String,
    "attention_backend": pl.String,
    "scale": pl.String,
    "batch": pl.Int64,
    "dtype": pl.String,
    "image_size": pl.Int64,
    "frames": pl.Int64,
    "denoising_steps": pl.Int64,
    "device_kind": pl.String,
    "rank": pl.Int64,
    "activity_count": pl.Int64,
    "total_ns": pl.Int64,
    "span_ns": pl.Int64,
    "source": pl.String,
    "format": pl.String,
    "created_at": pl.Datetime(time_zone="UTC"),
    "other_ns": pl.Int64,
    "graph_ns": pl.Int64,
    "experiment": pl.String,
    "git_commit": pl.String,
    "version": pl.String,
}


def list_runs(
    session: Session,
    *,
    model: str | None = None,
    family: str | None = None,
    hardware: str | None = None,
    attention_backend: str | None = None,
    tags: dict[str, str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: int | None = None,
    experiment: str | None = None,
) -> pl.DataFrame:
    """All runs matching the filters, one row each (``hardware`` matches a substring of the
    device name; ``since`` / ``until`` bound the ingest time, naive values meaning UTC).

    ``activity_count`` is every activity on the run's timeline (what ``total_ns`` sums);
    ``kernel_count``, ``memcpy_count`` and ``memset_count`` split it by kind (a CPU-only run's
    activities are its top-level host ops, counted as kernels)."""
    # A run's source is its first file: an Nsight Compute run has one trace row per CSV, and
    # counters attached to a timeline run come after the timeline trace.
    first_trace_query = select(Trace.run_id, func.min(Trace.id).label("trace_id")).group_by(Trace.run_id)
    if run_id is not None:  # one run's row: group its own traces, not every run's
        first_trace_query = first_trace_query.where(Trace.run_id == run_id)
    first_trace = first_trace_query.subquery()
    stmt = (
        select(
            Run.id,
            Model.name,
            Model.family,
            Hardware.name,
            Run.attention_backend,
            Run.scale,
            Run.batch,
            Run.dtype,
            Run.image_size,
            Run.frames,
            Run.denoising_steps,
            Run.device_kind,
            Run.rank,
            Run.kernel_count,
            Run.total_ns,
            Run.span_ns,
            Trace.original_name,
            Trace.format,
            Run.created_at,
            Run.other_ns,
            Run.graph_ns,
            Run.experiment,
            Run.git_commit,
            Run.version,
        )
        .outerjoin(Model, Model.id == Run.model_id)
        .outerjoin(Hardware, Hardware.id == Run.hardware_id)
        .outerjoin(first_trace, first_trace.c.run_id == Run.id)
        .outerjoin(Trace, Trace.id == first_trace.c.trace_id)
        .order_by(Run.id)
    )
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    if model:
        stmt = stmt.where(Model.name == model)
    if family:
        stmt = stmt.where(Model.family == family)
    if hardware:
        stmt = stmt.where(Hardware.name.contains(hardware))
    if attention_backend:
        stmt = stmt.where(Run.attention_backend == attention_backend)
    if experiment:
        stmt = stmt.where(Run.experiment == experiment)
    if since:
        stmt = stmt.where(Run.created_at >= _utc(since))
    if until:
        stmt = stmt.where(Run.created_at < _utc(until))
    for key, value in (tags or {}).items():
        tag = aliased(RunTag)
        stmt = stmt.join(tag, (tag.run_id == Run.id) & (tag.key == key) & (tag.value == value))
    frame = to_frame(session, stmt, RUN_SCHEMA)
    # How far the run's breakdown can be trusted: time no rule placed, and time in CUDA graphs.
    frame = frame.with_columns(
        pl.col("created_at").dt.replace_time_zone("UTC"),
        other_share=ratio("other_ns", "total_ns"),
        graph_share=ratio("graph_ns", "total_ns"),
    )
    counts = _counts_by_kind(session, frame)
    split = frame.join(counts, on="run_id", how="left").with_columns(pl.col(KIND_COUNTS).fill_null(0))
    at = frame.columns.index("activity_count") + 1
    return split.select(*frame.columns[:at], *KIND_COUNTS, *frame.columns[at:])


# The listing's split of a run's activities, from the kernel rollup's ``kind``.
KIND_COUNTS = ("kernel_count", "memcpy_count", "memset_count")
_KIND_COLUMN = {"kernel": "kernel_count", "cpu": "kernel_count", "memcpy": "memcpy_count", "memset": "memset_count"}


# Up to this many listed runs are looked up by id; more, by their id range.
_IN_LIST_MAX = 2000


def _counts_by_kind(session: Session, runs: pl.DataFrame) -> pl.DataFrame:
    """``run_id`` and :data:`KIND_COUNTS` of ``runs`` (``run_id``, ``activity_count``).  Only the
    few memcpy / memset rollup rows are read: the kernel count is the rest of the run's
    activities (the rollup sums to ``run.kernel_count``), so a listing of thousands of runs does
    not aggregate every kernel name of every run."""
    run_ids = runs["run_id"]
    which = (
        KernelRollup.run_id.in_(run_ids.to_list())
        if run_ids.len() <= _IN_LIST_MAX
        else KernelRollup.run_id.between(run_ids.min() or 0, run_ids.max() or 0)
    )
    stmt = (
        select(KernelRollup.run_id, KernelRollup.kind, func.sum(KernelRollup.kernel_count))
        .where(which, KernelRollup.kind.in_(["memcpy", "memset"]))
        .group_by(KernelRollup.run_id, KernelRollup.kind)
    )
    rows = to_frame(session, stmt, {"run_id": pl.Int64, "kind": pl.String, "count": pl.Int64})
    column = pl.col("kind").replace_strict(_KIND_COLUMN, default="kernel_count")
    copies = rows.group_by("run_id").agg(*(pl.col("count").filter(column == c).sum().alias(c) for c in KIND_COUNTS[1:]))
    return (
        runs.select("run_id", "activity_count")
        .join(copies, on="run_id", how="left")
        .with_columns(pl.col(KIND_COUNTS[1:]).fill_null(0))
        .select(
            "run_id",
            (pl.col("activity_count") - pl.col("memcpy_count") - pl.col("memset_count")).alias("kernel_count"),
            *KIND_COUNTS[1:],
        )
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run_row(session: Session, run_id: int) -> dict[str, object]:
    """One run's row of :func:`list_runs`, found by its key; 404 when there is none."""
    rows = list_runs(session, run_id=run_id).to_dicts()
    if not rows:
        raise NotFound(f"run {run_id} does not exist")
    return rows[0]


def run_traces(session: Session, run_id: int) -> list[dict[str, object]]:
    """The files a run was made from, oldest first (an ncu run has one per CSV)."""
    rows = session.execute(
        select(Trace.id, Trace.format, Trace.original_name, Trace.size_bytes)
        .where(Trace.run_id == run_id)
        .order_by(Trace.id)
    ).all()
    return [{"trace_id": r[0], "format": r[1], "original_name": r[2], "size_bytes": r[3]} for r in rows]


def raw_trace(session: Session, run_id: int, trace_id: int | None = None) -> tuple[Path, str, str]:
    """``(kept raw file, original name, format)`` of one of a run's files: ``trace_id``, else
    its timeline trace, else its only file."""
    get_run(session, run_id)
    files = session.execute(
        select(Trace.id, Trace.raw_path, Trace.original_name, Trace.format)
        .where(Trace.run_id == run_id)
        .order_by(Trace.id)
    ).all()
    if trace_id is not None:
        files = [f for f in files if f.id == trace_id]
        if not files:
            raise NotFound(f"run {run_id} has no trace {trace_id}")
    elif len(files) > 1:
        files = [f for f in files if f.format != "ncu"][:1] or files
    if not files:
        raise NotFound(f"run {run_id} has no trace file")
    if len(files) != 1:
        raise BadInput(
            f"run {run_id} was made from {len(files)} files; name one with trace_id (the run's 'traces' list them)"
        )
    path = Path(files[0].raw_path)
    if not path.is_file():
        raise NotFound(f"run {run_id}: its raw file is gone from the store")
    return path, files[0].original_name, files[0].format


def run_tags(session: Session, run_id: int) -> dict[str, str]:
    get_run(session, run_id)
    return dict(session.execute(select(RunTag.key, RunTag.value).where(RunTag.run_id == run_id)).all())


def run_kernels(session: Session, run_id: int, offset: int = 0, limit: int | None = None) -> pl.DataFrame:
    """A run's kernel rows in execution order, names spelled out (the export of a run);
    ``offset`` / ``limit`` page it in the database (a page of a 10,000-kernel run reads 100 rows
    through the ``(run_id, seq)`` index instead of the whole run)."""
    get_run(session, run_id)
    name, cpu_op, annotation = aliased(Symbol), aliased(Symbol), aliased(Symbol)
    columns = [
        name.text
        if c == "name"
        else cpu_op.text
        if c == "cpu_op"
        else annotation.text
        if c == "annotation"
        else getattr(Kernel, c)
        for c in KERNEL_ROW_SCHEMA
    ]
    stmt = (
        select(*columns)
        .join(name, name.id == Kernel.name_id)
        .outerjoin(cpu_op, cpu_op.id == Kernel.cpu_op_id)
        .outerjoin(annotation, annotation.id == Kernel.annotation_id)
        .where(Kernel.run_id == run_id)
        .order_by(Kernel.seq)
        .offset(offset)
        .limit(limit)
    )
    return to_frame(session, stmt, KERNEL_ROW_SCHEMA)


def run_kernel_count(session: Session, run_id: int) -> int:
    """How many rows :func:`run_kernels` has in all (an index-only count)."""
    return session.scalar(select(func.count()).select_from(Kernel).where(Kernel.run_id == run_id)) or 0
