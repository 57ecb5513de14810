"""Fleet job records into ``fleet_job``: ``import_fleet`` writes one parsed file
(``fleet_parse.py``) as one import in the caller's transaction, replacing earlier copies of the
same jobs, applying nvidia-smi samples to the jobs they fall in, and refreshing the monthly
rollup; ``register_model`` attaches jobs to a registry entry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import polars as pl
from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from tracehouse.core.errors import BadInput
from tracehouse.ingest.fleet_parse import JOB_COLUMNS, Parsed
from tracehouse.ingest.load import bulk_insert
from tracehouse.schema.models import FleetImport, FleetJob, FleetRollup, Model


def import_fleet(session: Session, parsed: Parsed, source: str, *, host: str | None = None) -> dict:
    """Write one parsed file as one import (the caller's transaction) and return its report."""
    record = FleetImport(
        source=source,
        format=parsed.format,
        rows_imported=0,
        rows_rejected=parsed.rejected,
        created_at=datetime.now(UTC),
    )
    session.add(record)
    session.flush()
    extra = (
        _apply_samples(session, parsed.rows, host)
        if parsed.format == "nvidia-smi"
        else _insert_jobs(session, parsed.rows, record.id, host)
    )
    imported = parsed.rows.height
    report = {
        "import_id": record.id,
        "source": source,
        "format": parsed.format,
        "rows_imported": imported,
        "rows_rejected": parsed.rejected,
        "rejected": [{"line": ln, "reason": why} for ln, why in parsed.rejects],
        **extra,
    }
    record.rows_imported = imported
    record.report = orjson.dumps({k: report[k] for k in ("rejected", *extra)}).decode()
    return report


def _model_ids(session: Session, names: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(names), 500):  # stay under bound-parameter limits
        chunk = names[i : i + 500]
        found |= dict(session.execute(select(Model.name, Model.id).where(Model.name.in_(chunk))).all())
    return found


def _insert_jobs(session: Session, rows: pl.DataFrame, import_id: int, host: str | None) -> dict:
    names = rows["model_name"].unique().sort().to_list()
    ids = _model_ids(session, names)
    lookup = pl.DataFrame(
        {"model_name": list(ids), "model_id": list(ids.values())},
        schema={"model_name": pl.String, "model_id": pl.Int64},
    )
    out = rows.join(lookup, on="model_name", how="left").with_columns(import_id=pl.lit(import_id, pl.Int64))
    if host is not None:
        out = out.with_columns(host=pl.coalesce(pl.col("host"), pl.lit(host)))
    bulk_insert(
        session,
        FleetJob.__tablename__,
        _for_db(session, out.select(*(c for c in JOB_COLUMNS), "model_id", "gpu_hours", "import_id")),
    )
    replaced, old_months = _replace_earlier_copies(session, import_id)
    refresh_rollup(session, sorted(set(rows["start"].dt.strftime("%Y-%m").unique().to_list()) | old_months))
    return {"unknown_models": [n for n in names if n not in ids], "jobs_replaced": replaced}


UTIL_COLUMNS = ("mean_mem_util", "peak_mem_util", "sm_util")


def _replace_earlier_copies(session: Session, import_id: int) -> tuple[int, set[str]]:
    """Accounting dumps overlap (sacct run daily over a week's window), so a job already stored
    by an earlier import (same cluster, job id and start) is replaced by this import's copy,
    which knows its latest end time.
    Utilisation the earlier copy got from nvidia-smi logs is kept where the new copy has none.
    Returns the number replaced and the months their old copies counted in."""
    new, old = aliased(FleetJob), FleetJob
    # A job id alone is not a job: two sources (or Slurm after a reset) reuse ids.  Cluster, id
    # and start together are, and the start of a job does not change between dumps.
    same_job = and_(
        new.import_id == import_id,
        new.job_id == old.job_id,
        new.start == old.start,
        new.cluster.is_not_distinct_from(old.cluster),
    )
    earlier = session.execute(
        select(old.id, old.job_id, old.cluster, old.start, *(getattr(old, c) for c in UTIL_COLUMNS)).where(
            old.import_id != import_id, exists().where(same_job)
        )
    ).all()
    for row in earlier:
        for col in UTIL_COLUMNS:
            if getattr(row, col) is not None:
                session.execute(
                    update(FleetJob)
                    .where(
                        FleetJob.import_id == import_id,
                        FleetJob.job_id == row.job_id,
                        FleetJob.start == row.start,
                        FleetJob.cluster.is_not_distinct_from(row.cluster),
                        getattr(FleetJob, col).is_(None),
                    )
                    .values({col: getattr(row, col)})
                )
    ids = [row.id for row in earlier]
    for i in range(0, len(ids), 500):  # stay under bound-parameter limits
        session.execute(delete(FleetJob).where(FleetJob.id.in_(ids[i : i + 500])))
    months = {_as_utc(row.start).strftime("%Y-%m") for row in earlier}
    return len(ids), months


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _for_db(session: Session, frame: pl.DataFrame) -> pl.DataFrame:
    """Datetimes as the text each backend stores: SQLAlchemy's naive-UTC form on SQLite (so ORM
    reads and comparisons agree), with an explicit offset for PostgreSQL's COPY."""
    fmt = "%Y-%m-%d %H:%M:%S.%6f" + ("+00:00" if session.get_bind().dialect.name == "postgresql" else "")
    return frame.with_columns(pl.col(c).dt.convert_time_zone("UTC").dt.strftime(fmt) for c in ("start", "end"))


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    lo = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    return lo, (lo + timedelta(days=32)).replace(day=1)


def refresh_rollup(session: Session, months: list[str]) -> None:
    """Recompute the rollup rows of the given months from ``fleet_job`` (index on ``start``)."""
    j = FleetJob
    hours = j.gpu_hours

    def fsum(e: SQLColumnExpression[Any]) -> ColumnElement[Any]:
        return func.coalesce(func.sum(e), 0.0)

    def weight(c: SQLColumnExpression[Any]) -> ColumnElement[Any]:  # GPU-hours that have the figure
        return fsum(case((c.is_not(None), hours)))

    for month in sorted(months):
        lo, hi = _month_bounds(month)
        session.execute(delete(FleetRollup).where(FleetRollup.month == month))
        sel = (
            select(
                literal(month),
                j.model_name,
                j.cluster,
                j.gpu_type,
                j.phase,
                func.count(),
                fsum(hours),
                fsum(j.gpu_count * 1.0),
                fsum(j.gpu_count * j.gpu_count * 1.0),
                fsum(j.gpu_count * hours),
                fsum(hours * j.mean_mem_util),
                weight(j.mean_mem_util),
                fsum(hours * j.peak_mem_util),
                weight(j.peak_mem_util),
                fsum(hours * j.sm_util),
                weight(j.sm_util),
            )
            .where(j.start >= lo, j.start < hi)
            .group_by(j.model_name, j.cluster, j.gpu_type, j.phase)
        )
        cols = [
            "month",
            "model_name",
            "cluster",
            "gpu_type",
            "phase",
            "jobs",
            "gpu_hours",
            "gpu_sum",
            "gpu_sq_sum",
            "gpu_x_hours",
            "mem_hours",
            "mem_weight",
            "peak_hours",
            "peak_weight",
            "sm_hours",
            "sm_weight",
        ]
        session.execute(insert(FleetRollup).from_select(cols, sel))


def _apply_samples(session: Session, samples: pl.DataFrame, host: str | None) -> dict:
    """Mean and peak memory utilisation (and mean SM utilisation) of the samples inside each
    job's window, onto the jobs; all GPU indices in the log count (it is one host's log)."""
    lo, hi = samples["ts"].min(), samples["ts"].max()
    stmt = select(FleetJob.id, FleetJob.start, FleetJob.end).where(FleetJob.start <= hi, FleetJob.end >= lo)
    if host is not None:
        stmt = stmt.where(FleetJob.host == host)
    found = session.execute(stmt).all()
    jobs = pl.DataFrame(
        [tuple(r) for r in found],
        schema={"id": pl.Int64, "start": pl.Datetime("us"), "end": pl.Datetime("us")},
        orient="row",
    )

    def utc(name: str) -> pl.Expr:
        naive = isinstance(dtype := jobs[name].dtype, pl.Datetime) and dtype.time_zone is None
        return pl.col(name).dt.replace_time_zone("UTC") if naive else pl.col(name)

    jobs = jobs.with_columns(utc("start"), utc("end"))
    matched = samples.join_where(jobs, pl.col("ts") >= pl.col("start"), pl.col("ts") <= pl.col("end"))
    per_job = matched.group_by("id").agg(
        mean_mem_util=pl.col("mem").mean(),
        peak_mem_util=pl.col("mem").max(),
        sm_util=pl.col("sm").mean(),
        start=pl.col("start").first(),
    )
    if not per_job.is_empty():
        session.execute(update(FleetJob), per_job.drop("start").to_dicts())
        refresh_rollup(session, per_job["start"].dt.strftime("%Y-%m").unique().to_list())
    unmatched = samples.height - matched["line"].n_unique() if matched.height else samples.height
    return {"jobs_updated": per_job.height, "samples_without_job": unmatched}


def register_model(
    session: Session, name: str, family: str, param_count: int, architecture: str | None = None
) -> Model:
    """Add (or correct) a registry entry and attach fleet jobs already imported under its name."""
    if family not in ("llm", "tti", "ttv"):
        raise BadInput(f"unknown family {family!r}; choose llm, tti or ttv")
    if param_count <= 0:
        raise BadInput("parameter count must be positive")
    model = session.scalars(select(Model).where(Model.name == name)).one_or_none()
    if model is None:
        model = Model(name=name)
        session.add(model)
    model.family, model.param_count = family, param_count
    model.architecture = architecture or model.architecture
    session.flush()
    session.execute(
        update(FleetJob).where(FleetJob.model_name == name, FleetJob.model_id.is_(None)).values(model_id=model.id)
    )
    return model
