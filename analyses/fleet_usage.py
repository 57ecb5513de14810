"""Fleet view (paper Fig 1): GPUs per model parameter and memory utilisation by family, cluster,
GPU type, phase or month, and each family's ratio to LLMs.

Summaries read ``fleet_rollup`` (sums per model × cluster × GPU type × phase × month, joined to
the registry by model name), never the job rows, so they answer in milliseconds at a million
jobs.  Definitions, per group:

* ``gpus_per_bparam``: job-weighted mean of gpu_count / params · 1e9 over jobs whose model has
  a parameter count; ``gpus_per_bparam_std`` its standard deviation (the spread).
* ``gpus_per_bparam_gpuh``: the same, weighted by each job's GPU-hours.
* ``mean_mem_util`` / ``peak_mem_util`` / ``sm_util``: GPU-hour-weighted means over jobs that
  have the figure.
* ``*_vs_llm``: the family's value over ``llm``'s in the same other-key group.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Float, SQLColumnExpression, case, cast, func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import ratio, to_frame
from tracehouse.core.errors import BadInput
from tracehouse.schema.models import FleetJob, FleetRollup, Model

BY_CHOICES = ("family", "cluster", "gpu", "phase", "month", "model")
PHASES = ("training", "inference")
_KEYS = {
    "family": Model.family,
    "cluster": FleetRollup.cluster,
    "gpu": FleetRollup.gpu_type,
    "phase": FleetRollup.phase,
    "month": FleetRollup.month,
    "model": FleetRollup.model_name,
}
_RATIOS = ("gpus_per_bparam", "gpus_per_bparam_gpuh", "mean_mem_util")


def _parse_by(by: str | list[str] | tuple[str, ...]) -> list[str]:
    keys = [k.strip() for k in (by.split(",") if isinstance(by, str) else by) if k.strip()]
    bad = [k for k in keys if k not in BY_CHOICES]
    if not keys or bad or len(set(keys)) != len(keys):
        raise BadInput(f"unknown grouping {by!r}; choose from {', '.join(BY_CHOICES)} (comma-separated)")
    return keys


def _sums(session: Session, keys: list[str], phase: str | None) -> pl.DataFrame:
    r = FleetRollup
    known = Model.param_count > 0
    p = cast(Model.param_count, Float)  # p·p overflows PostgreSQL's bigint

    def per_param(e: SQLColumnExpression[float], scale: float = 1e9) -> ColumnElement[Any]:
        return func.sum(case((known, e * scale / p)))

    cols = [_KEYS[k].label(k) for k in keys]
    stmt = (
        select(
            *cols,
            func.sum(r.jobs),
            func.sum(r.gpu_hours),
            func.sum(case((known, r.jobs))),
            func.sum(case((known, r.gpu_hours))),
            per_param(r.gpu_sum),
            func.sum(case((known, r.gpu_sq_sum * 1e18 / (p * p)))),
            per_param(r.gpu_x_hours),
            func.sum(r.mem_hours),
            func.sum(r.mem_weight),
            func.sum(r.peak_hours),
            func.sum(r.peak_weight),
            func.sum(r.sm_hours),
            func.sum(r.sm_weight),
        )
        .select_from(r)
        .outerjoin(Model, Model.name == r.model_name)
        .group_by(*cols)
    )
    if phase is not None:
        stmt = stmt.where(r.phase == phase)
    names = [
        "jobs",
        "gpu_hours",
        "param_jobs",
        "param_hours",
        "x_sum",
        "x_sq_sum",
        "x_hours",
        "mem_hours",
        "mem_weight",
        "peak_hours",
        "peak_weight",
        "sm_hours",
        "sm_weight",
    ]
    schema = dict.fromkeys(keys, pl.String) | dict.fromkeys(names, pl.Float64)
    return to_frame(session, stmt, schema)


def fleet_summary(session: Session, by: str | list[str] = "family", phase: str | None = None) -> pl.DataFrame:
    """One row per group: jobs, GPU-hours, GPUs per billion parameters (job- and GPU-hour-
    weighted, with spread), utilisations, and (when ``family`` is a key) ratios to ``llm``."""
    keys = _parse_by(by)
    if phase is not None and phase not in PHASES:
        raise BadInput(f"unknown phase {phase!r}; choose training or inference")
    sums = _sums(session, keys, phase)
    mean_x = ratio("x_sum", "param_jobs")
    frame = sums.select(
        *keys,
        jobs=pl.col("jobs").cast(pl.Int64),
        gpu_hours="gpu_hours",
        jobs_with_params=pl.col("param_jobs").fill_null(0).cast(pl.Int64),
        gpus_per_bparam=mean_x,
        gpus_per_bparam_std=(ratio("x_sq_sum", "param_jobs") - mean_x.pow(2)).clip(lower_bound=0).sqrt(),
        gpus_per_bparam_gpuh=ratio("x_hours", "param_hours"),
        mean_mem_util=ratio("mem_hours", "mem_weight"),
        peak_mem_util=ratio("peak_hours", "peak_weight"),
        sm_util=ratio("sm_hours", "sm_weight"),
    )
    if "family" in keys:
        frame = _vs_llm(frame, [k for k in keys if k != "family"])
    return frame.sort(keys, nulls_last=True)


def _vs_llm(frame: pl.DataFrame, others: list[str]) -> pl.DataFrame:
    llm = frame.filter(pl.col("family") == "llm").select(*others, *(pl.col(c).alias(f"_llm_{c}") for c in _RATIOS))
    if others:
        joined = frame.join(llm, on=others, how="left", nulls_equal=True)
    else:
        joined = (
            frame.join(llm, how="cross")
            if llm.height
            else frame.with_columns(pl.lit(None, pl.Float64).alias(f"_llm_{c}") for c in _RATIOS)
        )
    return joined.with_columns(ratio(c, f"_llm_{c}").alias(f"{c}_vs_llm") for c in _RATIOS).drop(
        f"_llm_{c}" for c in _RATIOS
    )


def ratio_spread(session: Session, family: str = "tti", phase: str | None = None) -> pl.DataFrame:
    """The family-to-LLM ratio month by month, and its min / median / max across months."""
    monthly = fleet_summary(session, ["family", "month"], phase).filter(pl.col("family") == family)
    cols = [f"{c}_vs_llm" for c in _RATIOS]
    return monthly.select(
        pl.lit(family).alias("family"),
        pl.len().alias("months"),
        *(getattr(pl.col(c), agg)().alias(f"{c}_{agg}") for c in cols for agg in ("min", "median", "max")),
    )


def top_jobs(session: Session, n: int = 20, phase: str | None = None) -> pl.DataFrame:
    """Jobs with the most GPU-hours per billion parameters (only jobs of registered models)."""
    if n <= 0:
        raise BadInput("n must be positive")
    j = FleetJob
    per_param = (j.gpu_hours * 1e9 / Model.param_count).label("gpu_hours_per_bparam")
    stmt = (
        select(
            j.job_id,
            j.cluster,
            j.model_name,
            Model.family,
            Model.param_count,
            j.phase,
            j.gpu_count,
            j.gpu_type,
            j.gpu_hours,
            per_param,
            j.mean_mem_util,
            j.peak_mem_util,
        )
        .join(Model, Model.id == j.model_id)
        .where(Model.param_count > 0)
        .order_by(per_param.desc(), j.id)
        .limit(n)
    )
    if phase is not None:
        stmt = stmt.where(j.phase == phase)
    schema = {
        "job_id": pl.String,
        "cluster": pl.String,
        "model_name": pl.String,
        "family": pl.String,
        "param_count": pl.Int64,
        "phase": pl.String,
        "gpu_count": pl.Int64,
        "gpu_type": pl.String,
        "gpu_hours": pl.Float64,
        "gpu_hours_per_bparam": pl.Float64,
        "mean_mem_util": pl.Float64,
        "peak_mem_util": pl.Float64,
    }
    return to_frame(session, stmt, schema)


def models_list(session: Session) -> pl.DataFrame:
    """The registry, with how many fleet jobs each model has (from the rollup)."""
    jobs = (
        select(FleetRollup.model_name, func.sum(FleetRollup.jobs).label("jobs"))
        .group_by(FleetRollup.model_name)
        .subquery()
    )
    stmt = (
        select(Model.name, Model.family, Model.architecture, Model.param_count, func.coalesce(jobs.c.jobs, 0))
        .outerjoin(jobs, jobs.c.model_name == Model.name)
        .order_by(Model.name)
    )
    schema = {
        "name": pl.String,
        "family": pl.String,
        "architecture": pl.String,
        "param_count": pl.Int64,
        "fleet_jobs": pl.Int64,
    }
    return to_frame(session, stmt, schema)
