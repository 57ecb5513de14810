"""Runs that are ranks of one distributed job, compared by their device step times
(:func:`analyses.steps.step_times`: a step's first kernel's start to its last kernel's end,
so concurrent streams count once).

Ranks of one job: runs with a ``job`` tag are grouped by it; runs without one by what a job's
ranks share (model, hardware, world size and the run knobs), with ``world_size`` > 1 and a
``rank``.  Per rank: step count, median step time, exposed communication (communication not
under compute, from :func:`utilization.temporal_breakdown`) and whether it is a straggler: its
median step ≥ ``straggler_factor`` × the job's median of rank medians.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.analyses.steps import step_times
from tracehouse.analyses.utilization import temporal_breakdown
from tracehouse.schema.models import Run, RunTag

JOB_KNOBS = (
    "model_id",
    "hardware_id",
    "world_size",
    "attention_backend",
    "scale",
    "batch",
    "dtype",
    "image_size",
    "frames",
    "denoising_steps",
    "decode_tokens",
    "text_length",
)
STRAGGLER_FACTOR = 1.05
# job_ranks' columns, in order (the /v1/jobs route documents them from here).
JOB_RANK_COLUMNS = (
    "job",
    "world_size",
    "ranks_stored",
    "rank",
    "run_id",
    "steps",
    "median_step_ns",
    "max_step_ns",
    "span_ns",
    "communication_ns",
    "exposed_comm_ns",
    "exposed_comm_share",
    "vs_job_median",
    "straggler",
)


def _distributed_runs(session: Session) -> pl.DataFrame:
    cols = [getattr(Run, c) for c in JOB_KNOBS]
    runs = to_frame(
        session,
        select(Run.id, Run.rank, *cols).where(Run.world_size > 1, Run.rank.is_not(None)),
        {
            "run_id": pl.Int64,
            "rank": pl.Int64,
            **{c: pl.String if c in ("attention_backend", "scale", "dtype") else pl.Int64 for c in JOB_KNOBS},
        },
    )
    tags = to_frame(
        session,
        select(RunTag.run_id, RunTag.value).where(RunTag.key == "job"),
        {"run_id": pl.Int64, "job_tag": pl.String},
    )
    runs = runs.join(tags, on="run_id", how="left")
    knob_key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("-") for c in JOB_KNOBS], separator="|")
    return runs.with_columns(job=pl.coalesce(pl.lit("tag:") + pl.col("job_tag"), pl.lit("knobs:") + knob_key))


def job_ranks(session: Session, straggler_factor: float = STRAGGLER_FACTOR) -> pl.DataFrame:
    """One row per rank run of every multi-rank job: ``job`` (``tag:<job tag>`` or
    ``knobs:<model|hardware|world size|knobs>``), ``world_size, ranks_stored, rank, run_id,
    steps, median_step_ns, max_step_ns, span_ns, communication_ns, exposed_comm_ns,
    exposed_comm_share`` (of the span), ``vs_job_median`` and ``straggler``."""
    runs = _distributed_runs(session)
    rows = []
    for run_id in runs["run_id"]:
        steps = step_times(session, run_id)
        util = temporal_breakdown(session, run_id)
        exposed = util.select((pl.col("communication_ns") - pl.col("overlap_ns")).sum()).item()
        rows.append(
            {
                "run_id": run_id,
                "steps": steps.height,
                "median_step_ns": steps["step_ns"].median() if steps.height else None,
                "max_step_ns": steps["step_ns"].max() if steps.height else None,
                "span_ns": get_run(session, run_id).span_ns,
                "communication_ns": int(util["communication_ns"].sum()),
                "exposed_comm_ns": int(exposed or 0),
            }
        )
    per_run = pl.DataFrame(
        rows,
        schema={
            "run_id": pl.Int64,
            "steps": pl.Int64,
            "median_step_ns": pl.Float64,
            "max_step_ns": pl.Int64,
            "span_ns": pl.Int64,
            "communication_ns": pl.Int64,
            "exposed_comm_ns": pl.Int64,
        },
    )
    job_median = pl.col("median_step_ns").median().over("job")
    return (
        runs.select("job", "world_size", "rank", "run_id")
        .join(per_run, on="run_id")
        .with_columns(
            ranks_stored=pl.len().over("job").cast(pl.Int64),
            exposed_comm_share=ratio("exposed_comm_ns", "span_ns"),
            vs_job_median=ratio("median_step_ns", job_median),
        )
        .with_columns(straggler=(pl.col("vs_job_median") >= straggler_factor) & (pl.col("ranks_stored") > 1))
        .select(JOB_RANK_COLUMNS)
        .sort("job", "rank", "run_id")
    )
