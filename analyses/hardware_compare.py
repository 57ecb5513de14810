"""Hardware comparison: one model with the same knobs across devices — time, operator
breakdown and speedup.

The matched runs must agree on every knob except the device; when they do not (say two
image sizes), the call is refused naming the knob to pin, because a cross-device speedup
between different workloads means nothing.  Repeated runs on one device are averaged.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import to_frame
from tracehouse.analyses.sweep import KNOBS, model_runs
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.schema.models import OperatorRollup

# Everything that defines the workload; hardware (and so device_kind) is what varies.
WORKLOAD = ("attention_backend", "dtype", "scale", *KNOBS)


def compare_hardware(session: Session, model: str, reference: str = "slowest", **knobs: object) -> pl.DataFrame:
    """One row per device × operator.

    ``knobs`` pin any of ``attention_backend, dtype, scale`` and the knobs (image_size,
    frames, batch, ...); ``reference`` is ``"slowest"`` (default), ``"first"`` (the device of
    the lowest run id) or a device name.
    Columns: ``hardware, run_count, run_ids, run_total_ns`` (mean summed kernel time),
    ``speedup`` (reference total / this total), ``operator, operator_ns`` (mean),
    ``share`` (of this device's total) and ``operator_speedup`` (the reference device's
    operator time / this one's; null where either is 0).  Slowest device first.
    """
    if "hardware" in knobs or "device_kind" in knobs:
        raise BadInput("hardware is what compare_hardware varies; it cannot be pinned")
    runs = model_runs(session, model, **knobs).filter(pl.col("hardware").is_not_null())
    if runs.is_empty():
        raise NotFound(f"no runs of {model!r} match {knobs or 'the model'}")
    for key in WORKLOAD:
        values = runs[key].unique()
        if values.len() > 1:
            shown = ", ".join(str(v) for v in values.sort(nulls_last=True).to_list())
            raise BadInput(f"runs of {model!r} differ in {key} ({shown}); pin it, e.g. {key}=...")
    per_hw = runs.group_by("hardware").agg(
        run_count=pl.len().cast(pl.Int64),
        run_ids=pl.col("run_id").sort(),
        run_total_ns=pl.col("total_ns").mean(),
        first_run=pl.col("run_id").min(),
    )
    ref = _reference(per_hw, reference)
    ops = _operator_means(session, runs)
    ref_ops = ops.filter(pl.col("hardware") == ref).select("operator", ref_ns="operator_ns")
    ref_total = per_hw.filter(pl.col("hardware") == ref)["run_total_ns"][0]
    return (
        per_hw.join(ops, on="hardware", how="left")
        .join(ref_ops, on="operator", how="left")
        .with_columns(
            speedup=ref_total / pl.col("run_total_ns"),
            share=pl.col("operator_ns") / pl.col("run_total_ns"),
            operator_speedup=pl.when((pl.col("operator_ns") > 0) & (pl.col("ref_ns") > 0)).then(
                pl.col("ref_ns") / pl.col("operator_ns")
            ),
        )
        .sort(["run_total_ns", "hardware", "operator_ns"], descending=[True, False, True])
        .select(
            "hardware",
            "run_count",
            "run_ids",
            "run_total_ns",
            "speedup",
            "operator",
            "operator_ns",
            "share",
            "operator_speedup",
        )
    )


def _reference(per_hw: pl.DataFrame, reference: str) -> str:
    if reference == "slowest":
        return str(per_hw.sort("run_total_ns", descending=True)["hardware"][0])
    if reference == "first":
        return str(per_hw.sort("first_run")["hardware"][0])
    if reference not in per_hw["hardware"].to_list():
        raise BadInput(f"reference {reference!r} is not among the devices: {', '.join(per_hw['hardware'].sort())}")
    return reference


def _operator_means(session: Session, runs: pl.DataFrame) -> pl.DataFrame:
    """``hardware, operator, operator_ns``: per-device mean over its runs (0 where a run lacks it)."""
    stmt = (
        select(OperatorRollup.run_id, OperatorRollup.operator, func.sum(OperatorRollup.total_ns))
        .where(OperatorRollup.run_id.in_(runs["run_id"].to_list()))
        .group_by(OperatorRollup.run_id, OperatorRollup.operator)
    )
    found = to_frame(session, stmt, {"run_id": pl.Int64, "operator": pl.String, "operator_ns": pl.Int64})
    grid = runs.select("run_id", "hardware").join(found.select("operator").unique(), how="cross")
    return (
        grid.join(found, on=["run_id", "operator"], how="left")
        .with_columns(pl.col("operator_ns").fill_null(0))
        .group_by("hardware", "operator")
        .agg(pl.col("operator_ns").mean())
    )
