"""A run cut into steps: ``ProfilerStep#N`` of a training loop, the collectors' denoising and
decode steps (``th|comp=unet|step=3``), and the stages run once (prefill, text encoder, VAE).

A step is every kernel with one ``(component, step)``: its time is their summed duration (the
run's kind of time: GPU busy, or top-level host ops on CPU).  ``phase`` is the component
(``decode``, ``unet`` ...; ``step`` for ProfilerStep traces, which name none).  Warm-up: the
leading steps of a phase that took more than :data:`WARMUP_FACTOR` × the median of the
phase's later steps (at most half the steps, phases of three steps or more); they are
reported and left out of steady-state figures.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.analyses.stats import MEDIAN_METHOD, median_interval
from tracehouse.core.frames import FrameSchema
from tracehouse.schema.models import Kernel

WARMUP_FACTOR = 1.5
NO_COMPONENT = "step"  # ProfilerStep#N traces name no component
# Phases whose steps each produce ``batch`` tokens (one decode step = one token per sequence).
TOKEN_PHASES = frozenset({"decode"})

STEP_SCHEMA: FrameSchema = {
    "phase": pl.String,
    "step": pl.Int64,
    "kind": pl.String,
    "kernel_count": pl.Int64,
    "total_ns": pl.Int64,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "share": pl.Float64,
    "warmup": pl.Boolean,
}


def _step_groups(session: Session, run_id: int) -> pl.DataFrame:
    """The one cut of a run into steps: per ``(phase, step)`` (raw component, null for none),
    ``kernel_count, total_ns`` (summed durations), ``start_ns, end_ns`` (first start, last end).
    Kernels in no phase and no step are left out."""
    stmt = (
        select(
            Kernel.component,
            Kernel.step,
            func.count(),
            func.sum(Kernel.dur_ns),
            func.min(Kernel.start_ns),
            func.max(Kernel.start_ns + Kernel.dur_ns),
        )
        .where(Kernel.run_id == run_id, (Kernel.step.is_not(None)) | (Kernel.component.is_not(None)))
        .group_by(Kernel.component, Kernel.step)
    )
    return to_frame(
        session,
        stmt,
        {
            "phase": pl.String,
            "step": pl.Int64,
            "kernel_count": pl.Int64,
            "total_ns": pl.Int64,
            "start_ns": pl.Int64,
            "end_ns": pl.Int64,
        },
    )


def run_steps(session: Session, run_id: int) -> pl.DataFrame:
    """One row per step or once-run stage, in execution order: ``phase, step`` (null for a
    stage), ``kind`` (``step`` / ``stage``), ``kernel_count, total_ns, start_ns, end_ns,
    share`` (of the run's time) and ``warmup``.  Kernels in no phase and no step are left out."""
    run = get_run(session, run_id)
    raw = _step_groups(session, run_id)
    frame = raw.with_columns(
        pl.col("phase").fill_null(NO_COMPONENT),
        kind=pl.when(pl.col("step").is_null()).then(pl.lit("stage")).otherwise(pl.lit("step")),
        share=pl.col("total_ns") / (run.total_ns or 1),
    ).sort("start_ns")
    flags = [flag for part in frame.partition_by("phase", maintain_order=True) for flag in _warmup_flags(part)]
    warm = pl.DataFrame(flags, schema={"phase": pl.String, "step": pl.Int64, "warmup": pl.Boolean}, orient="row")
    out = frame.join(warm, on=["phase", "step"], how="left", nulls_equal=True)
    return out.with_columns(pl.col("warmup").fill_null(False)).select(list(STEP_SCHEMA)).sort("start_ns")


def _warmup_flags(part: pl.DataFrame) -> list[tuple[str, int | None, bool]]:
    """``(phase, step, warmup)`` for one phase's rows (in execution order)."""
    steps = part.filter(pl.col("kind") == "step")
    times = steps["total_ns"].to_list()
    flags = [False] * len(times)
    if len(times) >= 3:
        for i in range(len(times) // 2):
            rest = sorted(times[i + 1 :])
            if times[i] > WARMUP_FACTOR * rest[len(rest) // 2]:
                flags[i] = True
            else:
                break
    return [(p, s, f) for p, s, f in zip(steps["phase"], steps["step"], flags, strict=False)]


STEP_TIME_SCHEMA: FrameSchema = {
    "step": pl.Int64,
    "kernels": pl.Int64,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "step_ns": pl.Int64,
    "vs_median": pl.Float64,
}


def step_times(session: Session, run_id: int) -> pl.DataFrame:
    """Device step times, for comparing ranks of a job and for advice: one row per step number
    across phases, in order: ``step, kernels, start_ns, end_ns``, ``step_ns`` (first kernel's
    start to last kernel's end: device wall time, so concurrent streams count once) and
    ``vs_median`` (step_ns / the run's median step)."""
    get_run(session, run_id)
    steps = (
        _step_groups(session, run_id)
        .filter(pl.col("step").is_not_null())
        .group_by("step")
        .agg(
            kernels=pl.col("kernel_count").sum().cast(pl.Int64),
            start_ns=pl.col("start_ns").min(),
            end_ns=pl.col("end_ns").max(),
        )
        .with_columns(step_ns=pl.col("end_ns") - pl.col("start_ns"))
        .sort("step")
    )
    steps = steps.with_columns(vs_median=ratio("step_ns", pl.col("step_ns").median()))
    return steps.cast(STEP_TIME_SCHEMA)  # type: ignore[arg-type]


def step_breakdown(session: Session, run_id: int, by: str = "operator") -> pl.DataFrame:
    """Long form: ``phase, step, <by>, kernel_count, total_ns, share`` (of the step's time)
    for every step and stage; ``by`` is ``operator``, ``attention_type`` or ``component``."""
    if by not in ("operator", "attention_type"):
        from tracehouse.core.errors import BadInput

        raise BadInput(f"unknown step breakdown {by!r}; choose operator or attention_type")
    get_run(session, run_id)
    key = getattr(Kernel, by)
    stmt = (
        select(Kernel.component, Kernel.step, key, func.count(), func.sum(Kernel.dur_ns))
        .where(Kernel.run_id == run_id, (Kernel.step.is_not(None)) | (Kernel.component.is_not(None)))
        .group_by(Kernel.component, Kernel.step, key)
    )
    frame = to_frame(
        session,
        stmt,
        {"phase": pl.String, "step": pl.Int64, by: pl.String, "kernel_count": pl.Int64, "total_ns": pl.Int64},
    )
    frame = frame.with_columns(pl.col("phase").fill_null(NO_COMPONENT))
    return frame.with_columns(share=pl.col("total_ns") / pl.col("total_ns").sum().over("phase", "step")).sort(
        "phase", "step", "total_ns", descending=[False, False, True], nulls_last=True
    )


SUMMARY_SCHEMA: FrameSchema = {
    "phase": pl.String,
    "kind": pl.String,
    "steps": pl.Int64,
    "warmup_steps": pl.Int64,
    "total_ns": pl.Int64,
    "steady_median_ns": pl.Float64,
    "steady_low_ns": pl.Float64,
    "steady_high_ns": pl.Float64,
    "steady_mean_ns": pl.Float64,
    "throughput": pl.Float64,
    "throughput_unit": pl.String,
    "method": pl.String,
}


def steps_summary(session: Session, run_id: int) -> pl.DataFrame:
    """Per phase: steps, warm-up steps, time, steady-state median step time with its interval,
    mean, and throughput where it means something: ``tokens/s`` for decode (batch tokens per
    step over the steady mean step time), ``steps/s`` for other stepped phases, ``s/image``
    for a diffusion run's whole time per image (batch)."""
    run = get_run(session, run_id)
    batch = run.batch or 1
    rows = []
    for part in run_steps(session, run_id).partition_by("phase", maintain_order=True):
        phase, kind = part["phase"][0], part["kind"][0]
        steady = part.filter(~pl.col("warmup"))["total_ns"].to_list()
        median, low, high = median_interval(steady)
        mean = sum(steady) / len(steady) if steady else None
        throughput, unit = None, None
        if kind == "step" and mean:
            throughput, unit = (batch * 1e9 / mean, "tokens/s") if phase in TOKEN_PHASES else (1e9 / mean, "steps/s")
        rows.append(
            {
                "phase": phase,
                "kind": kind,
                "steps": part.height,
                "warmup_steps": int(part["warmup"].sum()),
                "total_ns": int(part["total_ns"].sum()),
                "steady_median_ns": median,
                "steady_low_ns": low,
                "steady_high_ns": high,
                "steady_mean_ns": mean,
                "throughput": throughput,
                "throughput_unit": unit,
                "method": MEDIAN_METHOD if low is not None else "single value",
            }
        )
    if run.denoising_steps and run.image_size:  # a diffusion run: its whole time per image
        rows.append(
            {
                "phase": "run",
                "kind": "run",
                "steps": 1,
                "warmup_steps": 0,
                "total_ns": run.total_ns,
                "steady_median_ns": None,
                "steady_low_ns": None,
                "steady_high_ns": None,
                "steady_mean_ns": None,
                "throughput": run.total_ns / 1e9 / batch,
                "throughput_unit": "s/image",
                "method": "single value",
            }
        )
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)
