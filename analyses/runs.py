"""Runs: list and filter, and one run's metadata."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import polars as pl
from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, aliased

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.frames import KERNEL_ROW_SCHEMA, FrameSchema
from tracehouse.schema.models import Hardware, Kernel, Model, Run, RunTag, Symbol, Trace


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
    "kernel_count": pl.Int64,
    "memcpy_count": pl.Int64,
    "memset_count": pl.Int64,
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
    run_ids: Collection[int] | None = None,
    sort: str = "run_id",
    descending: bool = False,
    offset: int = 0,
    limit: int | None = None,
) -> pl.DataFrame:
    """Runs matching the filters, one row each (``hardware`` matches a substring of the
    device name; ``since`` / ``until`` bound the ingest time, naive values meaning UTC;
    ``run_ids`` keeps only those runs), ordered by ``sort`` (any column of the listing, nulls
    last, then run id), rows ``offset`` to ``offset + limit`` cut in the database: a page of a
    10,000-run store reads a page of run rows (:func:`count_runs` gives the total).

    ``activity_count`` is every activity on the run's timeline (what ``total_ns`` sums);
    ``kernel_count``, ``memcpy_count`` and ``memset_count`` split it by kind (a CPU-only run's
    activities are its top-level host ops, counted as kernels), from counts kept on the run row."""
    order = _SORTABLE.get(sort)
    if order is None:
        raise BadInput(f"cannot sort by {sort!r}")
    key = order.desc() if descending else order.asc()
    # The run id is never null: a plain order lets PostgreSQL walk the primary key for a page.
    ordering = (key if sort == "run_id" else key.nulls_last(), Run.id)
    filters = RunFilters(
        model=model,
        family=family,
        hardware=hardware,
        attention_backend=attention_backend,
        tags=tags,
        since=since,
        until=until,
        run_id=run_id,
        experiment=experiment,
    )
    # The page's run ids first (filters, order, offset and limit over the run rows), then
    # their rows: each listed run's first file is looked up for the page only, not joined
    # for every run of the store before the page is cut.
    page = _filtered(select(Run.id), **filters, run_ids=run_ids)
    if sort in ("source", "format"):
        page = page.outerjoin(Trace, Trace.id == _first_trace())
    ids = page.order_by(*ordering).offset(offset).limit(limit).subquery()
    stmt = (
        select(*_LISTED.values())
        .select_from(Run)
        .join(ids, ids.c.id == Run.id)
        .outerjoin(Model, Model.id == Run.model_id)
        .outerjoin(Hardware, Hardware.id == Run.hardware_id)
        .outerjoin(Trace, Trace.id == _first_trace())
        .order_by(*ordering)
    )
    frame = to_frame(session, stmt, RUN_SCHEMA)
    # How far the run's breakdown can be trusted: time no rule placed, and time in CUDA graphs.
    return frame.with_columns(
        pl.col("created_at").dt.replace_time_zone("UTC"),
        other_share=ratio("other_ns", "total_ns"),
        graph_share=ratio("graph_ns", "total_ns"),
    )


def _first_trace() -> Any:
    """A run's source is its first file: an Nsight Compute run has one trace row per CSV, and
    counters attached to a timeline run come after the timeline trace.  Looked up per listed
    run (the trace table's run_id index)."""
    return select(func.min(Trace.id)).where(Trace.run_id == Run.id).correlate(Run).scalar_subquery()


def count_runs(session: Session, **filters: Any) -> int:
    """How many runs :func:`list_runs` lists with the same filters, over all its pages."""
    stmt = _filtered(select(func.count(Run.id)), **filters)
    return int(session.scalar(stmt) or 0)


def run_ids_query(**filters: Any) -> Select[Any]:
    """The ids of the runs :func:`list_runs` lists with the same filters, as a statement to join
    or use in ``IN (SELECT ...)`` instead of sending thousands of ids."""
    return _filtered(select(Run.id), **filters)


def run_choices(session: Session) -> dict[str, list[str]]:
    """The distinct models, families, attention backends and device names of the stored runs
    (a listing's filter choices) without listing the runs."""
    columns: dict[str, Any] = {"model": Model.name, "family": Model.family, "hardware": Hardware.name}
    columns["attention_backend"] = Run.attention_backend
    out: dict[str, list[str]] = {}
    for name, column in columns.items():
        stmt = _filtered(select(column).where(column.is_not(None)).distinct())
        out[name] = sorted(str(v) for v in session.scalars(stmt))
    return out


# The listing's columns, in RUN_SCHEMA's order; the shares are computed on the frame.
_LISTED: dict[str, Any] = {
    "run_id": Run.id,
    "model": Model.name,
    "family": Model.family,
    "hardware": Hardware.name,
    **{c: getattr(Run, c) for c in ("attention_backend", "scale", "batch", "dtype", "image_size", "frames")},
    **{c: getattr(Run, c) for c in ("denoising_steps", "device_kind", "rank")},
    "activity_count": Run.kernel_count,
    # The kernel rows' kinds: every activity but the memory copies and sets is a kernel.
    "kernel_count": Run.kernel_count - Run.memcpy_count - Run.memset_count,
    "memcpy_count": Run.memcpy_count,
    "memset_count": Run.memset_count,
    "total_ns": Run.total_ns,
    "span_ns": Run.span_ns,
    "source": Trace.original_name,
    "format": Trace.format,
    **{c: getattr(Run, c) for c in ("created_at", "other_ns", "graph_ns", "experiment", "git_commit", "version")},
}


def model_spread(session: Session, column: str) -> pl.DataFrame:
    """Per model: how many distinct values of a listed run column (a knob, ``hardware``) its
    runs take, and how many runs it has; the widest spread first, then the most runs, then by
    name.  What a page opened without a model choice picks (``model``, ``values``, ``runs``)."""
    if column not in _LISTED or column in ("model", "source", "format"):  # the last two are the trace's
        raise BadInput(f"unknown run column {column!r}")
    value = _LISTED[column]
    counted: list[Any] = [
        Model.name.label("model"),
        func.count(func.distinct(value)).label("values"),
        func.count(func.distinct(Run.id)).label("runs"),
    ]
    stmt = _filtered(select(*counted).where(Model.name.is_not(None)).group_by(Model.name))
    rows = session.execute(stmt).all()
    frame = pl.DataFrame(
        [tuple(r) for r in rows], schema={"model": pl.String, "values": pl.Int64, "runs": pl.Int64}, orient="row"
    )
    return frame.sort(["values", "runs", "model"], descending=[True, True, False])


_SORTABLE: dict[str, Any] = {
    **_LISTED,
    "other_share": case((Run.total_ns > 0, Run.other_ns * 1.0 / Run.total_ns)),
    "graph_share": case((Run.total_ns > 0, Run.graph_ns * 1.0 / Run.total_ns)),
}


def _filtered(
    stmt: Select[Any],
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
    run_ids: Collection[int] | None = None,
) -> Select[Any]:
    """``stmt`` over runs with their model and hardware joined, kept to those matching."""
    stmt = stmt.select_from(Run).outerjoin(Model, Model.id == Run.model_id)
    stmt = stmt.outerjoin(Hardware, Hardware.id == Run.hardware_id)
    conditions = [
        (run_id is not None, Run.id == run_id),
        (run_ids is not None, Run.id.in_(list(run_ids or ()))),
        (bool(model), Model.name == model),
        (bool(family), Model.family == family),
        (bool(hardware), Hardware.name.contains(hardware or "")),
        (bool(attention_backend), Run.attention_backend == attention_backend),
        (bool(experiment), Run.experiment == experiment),
    ]
    stmt = stmt.where(*(condition for wanted, condition in conditions if wanted))
    if since:
        stmt = stmt.where(Run.created_at >= _utc(since))
    if until:
        stmt = stmt.where(Run.created_at < _utc(until))
    for key, value in (tags or {}).items():
        tag = aliased(RunTag)
        stmt = stmt.join(tag, (tag.run_id == Run.id) & (tag.key == key) & (tag.value == value))
    return stmt


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
