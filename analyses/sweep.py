"""Sweeps (paper Fig 10, 14): for runs of one model that differ in one knob (image size,
frames, batch ...), each operator's time as the knob grows and its fitted growth exponent.

Runs are split into *series*: runs that agree on everything but the swept knob (attention
backend, hardware, dtype, scale, device kind and every other knob).  So baseline and flash
runs form two curves, and a stray run at another batch size never bends a curve.  Repeated
runs at one knob value (repeats) are averaged (``total_ns``) and their median kept
(``median_ns``).  The exponent k is the least-squares slope of log(time) on log(knob) over
every run of a series with time > 0 — time ∝ knob^k — so repeats weigh in as samples: with
it come ``r2`` (of that fit) and ``exponent_low`` / ``exponent_high``, its 95 % Student t
interval (slope ± t(n − 2)·SE; null with fewer than three runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import to_frame
from tracehouse.analyses.stats import t_quantile
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import field_name
from tracehouse.schema.models import Hardware, Model, OperatorRollup, Run

KNOBS = ("image_size", "frames", "batch", "denoising_steps", "decode_tokens", "text_length")
# ``experiment`` too: runs of an earlier demo are another curve, never pooled into this one.
SERIES_TEXT = ("attention_backend", "hardware", "dtype", "scale", "device_kind", "experiment")
FILTERS = (*SERIES_TEXT, *KNOBS)
_RUN_SCHEMA = {
    "run_id": pl.Int64,
    "total_ns": pl.Int64,
    **dict.fromkeys(SERIES_TEXT, pl.String),
    **dict.fromkeys(KNOBS, pl.Int64),
}
TOTAL = "total"  # pseudo-operator: the run's whole summed kernel time (Fig 10's total)


def model_runs(session: Session, model: str, **filters: object) -> pl.DataFrame:
    """Runs of ``model`` (``run_id, total_ns`` and the series columns), filtered by equality on
    any of ``FILTERS`` (``hardware`` matches a substring of the device name)."""
    return to_frame(session, model_runs_query(session, model, **filters).order_by(Run.id), _RUN_SCHEMA)


def model_runs_query(session: Session, model: str, **filters: object) -> Select[Any]:
    """:func:`model_runs` as a statement, for queries that join the runs instead of listing
    their ids (thousands of ids in an ``IN`` list cost more than the join)."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise BadInput(f"unknown filter {', '.join(unknown)}; choose from {', '.join(FILTERS)}")
    if session.scalar(select(Model.id).where(Model.name == model)) is None:
        raise NotFound(f"model {model!r} does not exist")
    cols = {
        "run_id": Run.id,
        "total_ns": Run.total_ns,
        "attention_backend": Run.attention_backend,
        "hardware": Hardware.name,
        "dtype": Run.dtype,
        "scale": Run.scale,
        "device_kind": Run.device_kind,
        "experiment": Run.experiment,
        **{k: getattr(Run, k) for k in KNOBS},
    }
    stmt = (
        select(*(column.label(name) for name, column in cols.items()))
        .join(Model, Model.id == Run.model_id)
        .outerjoin(Hardware, Hardware.id == Run.hardware_id)
        .where(Model.name == model)
    )
    for key, value in filters.items():
        if value is None:
            continue
        stmt = stmt.where(Hardware.name.contains(str(value)) if key == "hardware" else cols[key] == value)
    return stmt


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Least-squares slope of log y on log x over the points with x, y > 0; None with fewer
    than two distinct x."""
    # Sorted: group_by hands the points over in any order, and a fit over the same points must
    # give the same float to the last bit (the CLI and REST answers are compared byte for byte).
    pts = sorted((a, b) for a, b in zip(x, y, strict=True) if a and b and a > 0 and b > 0)
    if len({a for a, _ in pts}) < 2:
        return None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def fit_with_interval(
    x: Sequence[float], y: Sequence[float]
) -> tuple[float | None, float | None, float | None, float | None]:
    """``(exponent, r2, low, high)`` of the log-log least-squares fit over the points with
    x, y > 0; exponent None with fewer than two distinct x, the rest None without residual
    degrees of freedom."""
    pts = [(a, b) for a, b in zip(x, y, strict=False) if a and b and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None, None, None, None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (slope * lx + intercept)
    total = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1 - float((residual**2).sum()) / total if total > 0 else None
    df = len(pts) - 2
    if df < 1:
        return float(slope), r2, None, None
    se = float(np.sqrt((residual**2).sum() / df / ((lx - lx.mean()) ** 2).sum()))
    half = t_quantile(0.95, df) * se
    return float(slope), r2, float(slope - half), float(slope + half)


def sweep(
    session: Session, model: str, knob: str, operators: Sequence[str] = ("attention", "conv"), **filters: object
) -> pl.DataFrame:
    """Operator time per knob value, per series.

    ``operators`` may include ``"total"`` for the run's whole time.  ``filters`` fix any of
    ``attention_backend, hardware, dtype, scale, device_kind`` or another knob.
    Columns: the series columns (``attention_backend, hardware, dtype, scale, device_kind``
    and the other knobs), the knob itself, ``operator``, ``total_ns`` (mean over the series'
    runs at that value; 0 where the operator did not run), ``run_count``, ``run_ids`` and
    ``exponent`` (the series × operator fit, repeated on its rows; null below two values).
    """
    knob = field_name(knob, KNOBS)
    if knob not in KNOBS:
        raise BadInput(f"unknown knob {knob!r}; choose one of {', '.join(KNOBS)}")
    if knob in filters:
        raise BadInput(f"{knob} is the swept knob; it cannot also be a filter")
    ops = list(dict.fromkeys(operators))
    if not ops or not all(isinstance(o, str) and o for o in ops):
        raise BadInput("operators must name at least one operator")
    chosen = model_runs_query(session, model, **filters).where(getattr(Run, knob).is_not(None))
    runs = to_frame(session, chosen.order_by(Run.id), _RUN_SCHEMA)
    series = [*SERIES_TEXT, *(k for k in KNOBS if k != knob)]
    times = _operator_times(session, runs, chosen, ops)
    per_run = times.join(runs.select("run_id", *series, knob), on="run_id")
    points = per_run.group_by(*series, knob, "operator").agg(
        total_ns=pl.col("total_ns").mean(),
        median_ns=pl.col("total_ns").median(),
        run_count=pl.len().cast(pl.Int64),
        run_ids=pl.col("run_id").sort(),
    )
    # One fit per series × operator over its runs; partition_by keeps null series keys as a group.
    fits = {}
    for part in per_run.partition_by(*series, "operator", maintain_order=True, as_dict=True).items():
        fits[part[0]] = fit_with_interval(part[1][knob].to_list(), part[1]["total_ns"].to_list())
    fit_names = ("exponent", "r2", "exponent_low", "exponent_high")
    parts = [
        part.with_columns(
            pl.lit(value, pl.Float64).alias(name) for name, value in zip(fit_names, fits[key], strict=False)
        )
        for key, part in points.partition_by(*series, "operator", maintain_order=True, as_dict=True).items()
    ]
    if not parts:
        return points.with_columns(pl.lit(None, pl.Float64).alias(name) for name in fit_names)
    return pl.concat(parts).sort(*series, "operator", knob, nulls_last=True)


def _operator_times(session: Session, runs: pl.DataFrame, chosen: Select[Any], ops: list[str]) -> pl.DataFrame:
    """``run_id, operator, total_ns`` for every run × requested operator (0 when absent);
    ``runs`` are the rows of ``chosen``, which the rollup query joins."""
    grid = runs.select("run_id").join(pl.DataFrame({"operator": ops}), how="cross")
    named = [o for o in ops if o != TOTAL]
    if runs.is_empty() or not named:
        found = pl.DataFrame(schema={"run_id": pl.Int64, "operator": pl.String, "total_ns": pl.Int64})
    else:
        stmt = (
            select(OperatorRollup.run_id, OperatorRollup.operator, func.sum(OperatorRollup.total_ns))
            .where(OperatorRollup.run_id.in_(chosen.with_only_columns(Run.id)), OperatorRollup.operator.in_(named))
            .group_by(OperatorRollup.run_id, OperatorRollup.operator)
        )
        found = to_frame(session, stmt, {"run_id": pl.Int64, "operator": pl.String, "total_ns": pl.Int64})
    if TOTAL in ops:
        found = pl.concat([found, runs.select("run_id", pl.lit(TOTAL).alias("operator"), "total_ns")])
    return grid.join(found, on=["run_id", "operator"], how="left").with_columns(
        pl.col("total_ns").fill_null(0).cast(pl.Float64)
    )
