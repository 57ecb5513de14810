"""Runs: list and filter, and one run's metadata."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.schema.models import Hardware, Model, Run, RunTag, Trace

RUN_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.Int64, "model": pl.String, "family": pl.String, "hardware": pl.String,
    "attention_backend": pl.String, "scale": pl.String, "batch": pl.Int64, "dtype": pl.String,
    "image_size": pl.Int64, "frames": pl.Int64, "denoising_steps": pl.Int64,
    "device_kind": pl.String, "rank": pl.Int64, "kernel_count": pl.Int64, "total_ns": pl.Int64,
    "span_ns": pl.Int64, "source": pl.String, "format": pl.String,
    "created_at": pl.Datetime(time_zone="UTC"), "other_ns": pl.Int64, "graph_ns": pl.Int64,
}


def list_runs(session: Session, *, model: str | None = None, family: str | None = None,
              hardware: str | None = None, attention_backend: str | None = None,
              tags: dict[str, str] | None = None, since: datetime | None = None,
              until: datetime | None = None) -> pl.DataFrame:
    """All runs matching the filters (``hardware`` matches a substring of the device name;
    ``since`` / ``until`` bound the ingest time, naive values meaning UTC)."""
    stmt = (select(Run.id, Model.name, Model.family, Hardware.name, Run.attention_backend, Run.scale,
                   Run.batch, Run.dtype, Run.image_size, Run.frames, Run.denoising_steps,
                   Run.device_kind, Run.rank, Run.kernel_count, Run.total_ns, Run.span_ns,
                   Trace.original_name, Trace.format, Run.created_at, Run.other_ns, Run.graph_ns)
            .outerjoin(Model, Model.id == Run.model_id)
            .outerjoin(Hardware, Hardware.id == Run.hardware_id)
            .outerjoin(Trace, Trace.run_id == Run.id)
            .order_by(Run.id))
    if model:
        stmt = stmt.where(Model.name == model)
    if family:
        stmt = stmt.where(Model.family == family)
    if hardware:
        stmt = stmt.where(Hardware.name.contains(hardware))
    if attention_backend:
        stmt = stmt.where(Run.attention_backend == attention_backend)
    if since:
        stmt = stmt.where(Run.created_at >= _utc(since))
    if until:
        stmt = stmt.where(Run.created_at < _utc(until))
    for key, value in (tags or {}).items():
        tag = aliased(RunTag)
        stmt = stmt.join(tag, (tag.run_id == Run.id) & (tag.key == key) & (tag.value == value))
    frame = to_frame(session, stmt, RUN_SCHEMA)
    # How far the run's breakdown can be trusted: time no rule placed, and time in CUDA graphs.
    return frame.with_columns(pl.col("created_at").dt.replace_time_zone("UTC"),
                              other_share=ratio("other_ns", "total_ns"), graph_share=ratio("graph_ns", "total_ns"))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run_tags(session: Session, run_id: int) -> dict[str, str]:
    get_run(session, run_id)
    return dict(session.execute(select(RunTag.key, RunTag.value).where(RunTag.run_id == run_id)).all())
