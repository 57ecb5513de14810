"""The paper's across-runs figures: Fig 5 (one roofline point per model, each device's
ceilings) and Fig 6 (compute vs communication as the GPU count grows).

Fig 5's operational intensity is the paper's: FLOPs per byte of *model capacity*
(parameters × bytes per element of the run's dtype), not per byte of DRAM traffic; a model's
point is its run's analytic FLOPs (``roofline.roofline``: GEMM, conv and attention from the
stored shapes) over that, and its achieved FLOP/s those FLOPs over the run's summed kernel
time.  One point per model × device: the latest timeline run of the model on that device.

Fig 6: per run of a model, the device-time shares from ``utilization.temporal_breakdown``
(union of intervals, so concurrent kernels count once), with the run's world size (1 when the
trace says nothing); ``by_world_size`` averages the runs of each world size.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, with_bounds
from tracehouse.analyses.roofline import DTYPES, roofline, run_dtype
from tracehouse.analyses.utilization import temporal_breakdown
from tracehouse.schema.models import Hardware, Model, Run

MODEL_POINT_SCHEMA = {
    "model": pl.String,
    "family": pl.String,
    "hardware": pl.String,
    "run_id": pl.Int64,
    "dtype": pl.String,
    "param_count": pl.Int64,
    "capacity_bytes": pl.Float64,
    "flops": pl.Float64,
    "time_ns": pl.Int64,
    "capacity_intensity": pl.Float64,
    "achieved_flops_s": pl.Float64,
    "peak_flops_s": pl.Float64,
    "peak_bandwidth_bytes_s": pl.Float64,
    "ridge_point": pl.Float64,
}


def model_points(session: Session, family: str | None = None) -> pl.DataFrame:
    """Fig 5: one row per model × device (see the module docstring): ``model, family,
    hardware, run_id, dtype, param_count, capacity_bytes, flops, time_ns,
    capacity_intensity`` (FLOPs / capacity byte), ``achieved_flops_s``, the device's
    ``peak_flops_s`` (for the dtype) and ``peak_bandwidth_bytes_s``, ``ridge_point``,
    ``attainable_flops_s`` and ``bound``.  Models without a parameter count are left out."""
    stmt = (
        select(func.max(Run.id))
        .join(Model, Model.id == Run.model_id)
        .where(Run.total_ns > 0)
        .group_by(Run.model_id, Run.hardware_id)
    )
    if family is not None:
        stmt = stmt.where(Model.family == family)
    rows = [_model_point(session, run_id) for (run_id,) in session.execute(stmt)]
    frame = pl.DataFrame([r for r in rows if r is not None], schema=MODEL_POINT_SCHEMA)
    return with_bounds(frame, "capacity_intensity").sort("family", "model", "hardware", nulls_last=True)


def _model_point(session: Session, run_id: int) -> dict[str, object] | None:
    run = get_run(session, run_id)
    model = session.get_one(Model, run.model_id)  # model_points picked runs joined to their model
    params = run.param_count or model.param_count
    if not params:
        return None
    dtype = run_dtype(run)
    hw = session.get(Hardware, run.hardware_id) if run.hardware_id is not None else None
    peak = getattr(hw, DTYPES[dtype][1]) if hw else None
    bandwidth = hw.peak_bandwidth_bytes_s if hw else None
    flops = float(roofline(session, run_id)["flops"].sum())  # a Float64 column's sum, 0.0 when all null
    capacity = float(params * DTYPES[dtype][0])
    return {
        "model": model.name,
        "family": model.family,
        "hardware": hw.name if hw else None,
        "run_id": run_id,
        "dtype": dtype,
        "param_count": params,
        "capacity_bytes": capacity,
        "flops": flops or None,
        "time_ns": run.total_ns,
        "capacity_intensity": flops / capacity if flops else None,
        "achieved_flops_s": flops / (run.total_ns * 1e-9) if flops else None,
        "peak_flops_s": peak,
        "peak_bandwidth_bytes_s": bandwidth,
        "ridge_point": peak / bandwidth if peak and bandwidth else None,
    }


CEILING_SCHEMA = {
    "hardware": pl.String,
    "dtype": pl.String,
    "peak_flops_s": pl.Float64,
    "peak_bandwidth_bytes_s": pl.Float64,
    "ridge_point": pl.Float64,
}


def device_ceilings(session: Session) -> pl.DataFrame:
    """Fig 5's lines: for every device in the store with catalogue peaks, one row per dtype it
    has a peak for: ``hardware, dtype, peak_flops_s, peak_bandwidth_bytes_s, ridge_point``."""
    columns = {
        "fp64": "peak_fp64_flops",
        "fp32": "peak_fp32_flops",
        "tf32": "peak_tf32_flops",
        "fp16": "peak_fp16_flops",
        "bf16": "peak_bf16_flops",
        "int8": "peak_int8_ops",
    }
    rows = []
    for hw in session.scalars(select(Hardware).order_by(Hardware.name)):
        for dtype, column in columns.items():
            peak = getattr(hw, column)
            if peak:
                bandwidth = hw.peak_bandwidth_bytes_s
                ridge = peak / bandwidth if bandwidth else None
                rows.append(
                    {
                        "hardware": hw.name,
                        "dtype": dtype,
                        "peak_flops_s": peak,
                        "peak_bandwidth_bytes_s": bandwidth,
                        "ridge_point": ridge,
                    }
                )
    return pl.DataFrame(rows, schema=CEILING_SCHEMA)


COMM_SCHEMA = {
    "model": pl.String,
    "world_size": pl.Int64,
    "run_id": pl.Int64,
    "rank": pl.Int64,
    "span_ns": pl.Int64,
    "compute_share": pl.Float64,
    "communication_share": pl.Float64,
    "exposed_comm_share": pl.Float64,
    "idle_share": pl.Float64,
}


def compute_vs_communication(session: Session, model: str | None = None, by_world_size: bool = False) -> pl.DataFrame:
    """Fig 6: per GPU run (of ``model`` when given): ``model, world_size, run_id, rank,
    span_ns`` and the shares of the span in ``compute``, ``communication``, communication not
    under compute (``exposed_comm``) and ``idle``; summed over the run's devices.  With
    ``by_world_size``: one row per model × world size, ``runs`` and the mean shares."""
    stmt = (
        select(Run.id, Model.name, func.coalesce(Run.world_size, 1), Run.rank)
        .outerjoin(Model, Model.id == Run.model_id)
        .where(Run.device_kind == "gpu", Run.total_ns > 0)
    )
    if model is not None:
        stmt = stmt.where(Model.name == model)
    rows = []
    for run_id, name, world, rank in session.execute(stmt):
        util = temporal_breakdown(session, run_id).select(
            pl.col("span_ns", "compute_ns", "communication_ns", "overlap_ns", "idle_ns").sum()
        )
        rows.append({"model": name, "world_size": world, "run_id": run_id, "rank": rank, **util.row(0, named=True)})
    frame = pl.DataFrame(
        rows,
        schema={
            **{k: COMM_SCHEMA[k] for k in ("model", "world_size", "run_id", "rank")},
            **dict.fromkeys(("span_ns", "compute_ns", "communication_ns", "overlap_ns", "idle_ns"), pl.Int64),
        },
    )
    frame = frame.select(
        "model",
        "world_size",
        "run_id",
        "rank",
        "span_ns",
        compute_share=ratio("compute_ns", "span_ns"),
        communication_share=ratio("communication_ns", "span_ns"),
        exposed_comm_share=ratio(pl.col("communication_ns") - pl.col("overlap_ns"), "span_ns"),
        idle_share=ratio("idle_ns", "span_ns"),
    ).sort("model", "world_size", "run_id", nulls_last=True)
    if not by_world_size:
        return frame
    shares = [c for c in frame.columns if c.endswith("_share")]
    return (
        frame.group_by("model", "world_size")
        .agg(*[pl.col(c).mean() for c in shares], runs=pl.len().cast(pl.Int64))
        .sort("model", "world_size", nulls_last=True)
    )
