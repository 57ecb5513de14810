"""Counter-based roofline (Nsight Compute), NERSC's method: per kernel launch, measured FLOPs
(add + mul + 2·fma per precision, tensor-pipe instructions × the architecture's factor from
the hardware catalogue), DRAM / L2 / L1 bytes, arithmetic intensity at each level, achieved
FLOP/s, bandwidth and cache hit rates; and the same summed by kernel, operator or attention
type (paper Fig 13: temporal vs spatial attention's L1 / L2 behaviour).

A launch linked to the run's timeline kernel (``ingest.ncu_link``) takes that kernel's
operator, attention type and sequence lengths; an unlinked one is classified by its name.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame, with_bounds
from tracehouse.core.device_specs import tensor_flops_per_inst
from tracehouse.core.errors import BadInput
from tracehouse.core.ncu_metrics import BYTE_METRICS, ncu_wide, roofline_inputs
from tracehouse.core.rules import classify_kernel_names
from tracehouse.schema.models import Hardware, Kernel, NcuMetric, Symbol
from tracehouse.schema.ncu_counters import stored_metrics

GROUP_KEYS = {"kernel": "kernel", "operator": "operator", "attention_type": "attention_type"}
LEVELS = tuple(BYTE_METRICS)
_LAUNCH_KEYS = {
    "kernel_id": pl.Int64,
    "kernel": pl.String,
    "operator": pl.String,
    "attention_type": pl.String,
    "seq_q": pl.Int64,
    "seq_kv": pl.Int64,
    "component": pl.String,
}


def counter_roofline(session: Session, run_id: int) -> pl.DataFrame:
    """Per launch: the columns of ``ingest.ncu.roofline_inputs``; ``kernel`` (the linked
    timeline kernel's name, else ncu's), ``operator, attention_type, seq_q, seq_kv, component,
    linked``; ``tensor_flops_per_inst`` (the factor used; null for an
    unknown architecture, which leaves tensor-core launches' FLOPs null); ``peak_flops_s``
    (tensor fp16 peak when the launch used tensor cores, else fp32), ``peak_bandwidth_bytes_s``,
    ``attainable_flops_s`` (min(peak, DRAM intensity × bandwidth)) and ``bound``."""
    run = get_run(session, run_id)
    long = stored_metrics(session, run_id)
    if long.is_empty():
        raise BadInput(f"run {run_id} has no Nsight Compute counters")
    hw = session.get(Hardware, run.hardware_id) if run.hardware_id is not None else None
    factor = tensor_flops_per_inst(hw.compute_capability if hw else None)
    fp16, fp32, bandwidth = (
        (hw.peak_fp16_flops, hw.peak_fp32_flops, hw.peak_bandwidth_bytes_s) if hw else (None, None, None)
    )
    points = roofline_inputs(ncu_wide(long), factor)
    points = points.join(_launch_keys(session, run_id, points), on="kernel_id", how="left").with_columns(
        tensor_flops_per_inst=pl.lit(factor, pl.Float64),
        peak_flops_s=pl.when(pl.col("tensor_inst") > 0)
        .then(pl.lit(fp16, pl.Float64))
        .otherwise(pl.lit(fp32, pl.Float64)),
        peak_bandwidth_bytes_s=pl.lit(bandwidth, pl.Float64),
    )
    return with_bounds(points, "ai_dram")


def _launch_keys(session: Session, run_id: int, points: pl.DataFrame) -> pl.DataFrame:
    """Attribution keys per launch: the linked timeline kernel's, else from the kernel name."""
    k = NcuMetric, Kernel
    linked = to_frame(
        session,
        select(k[0].kernel_id, Symbol.text, k[1].operator, k[1].attention_type, k[1].seq_q, k[1].seq_kv, k[1].component)
        .join(k[1], k[1].id == k[0].kernel_ref)
        .join(Symbol, Symbol.id == k[1].name_id)
        .where(k[0].run_id == run_id)
        .distinct(),
        _LAUNCH_KEYS,
    ).unique("kernel_id")
    named = classify_kernel_names(points["kernel_name"]).select(
        "name", name_operator=pl.coalesce("authoritative_operator", "name_operator", pl.lit("other"))
    )
    return (
        points.select("kernel_id", "kernel_name")
        .join(linked, on="kernel_id", how="left")
        .join(named, left_on="kernel_name", right_on="name", how="left")
        .select(
            pl.col("kernel_id"),
            pl.coalesce("kernel", "kernel_name").alias("kernel"),
            pl.coalesce("operator", "name_operator").alias("operator"),
            "attention_type",
            "seq_q",
            "seq_kv",
            "component",
            linked=pl.col("kernel_id").is_in(linked["kernel_id"].implode()),
        )
    )


def counter_groups(session: Session, run_id: int, by: str) -> pl.DataFrame:
    """Launches summed per ``by`` (kernel / operator / attention_type): ``instances, time_ns,
    flops`` (null when any launch's FLOPs are unknown), ``{dram,l2,l1}_bytes``, ``ai_*``,
    ``gflops_per_s``, ``*_bytes_per_s``, ``*_hit_rate_pct`` (weighted by that level's bytes),
    ``used_tensor`` and the launches' peaks.  Attention-type groups cover attention launches only."""
    if by not in GROUP_KEYS:
        raise BadInput(f"unknown grouping {by!r}; expected one of {', '.join(GROUP_KEYS)}")
    key = GROUP_KEYS[by]
    points = counter_roofline(session, run_id)
    if by == "attention_type":
        points = points.filter(pl.col("attention_type").is_not_null())
    time_s = pl.col("time_ns").sum() * 1e-9
    flops = pl.when(pl.col("flops").is_null().any()).then(None).otherwise(pl.col("flops").sum())
    sums = [
        pl.when(pl.col(f"{lv}_bytes").is_not_null().any()).then(pl.col(f"{lv}_bytes").sum()).alias(f"{lv}_bytes")
        for lv in LEVELS
    ]
    hits = [
        (
            (pl.col(f"{lv}_hit_rate_pct") * pl.col(f"{lv}_bytes")).sum()
            / pl.col(f"{lv}_bytes").filter(pl.col(f"{lv}_hit_rate_pct").is_not_null()).sum()
        ).alias(f"{lv}_hit_rate_pct")
        for lv in ("l1", "l2")
    ]
    grouped = points.group_by(key).agg(
        *sums,
        *hits,
        instances=pl.len().cast(pl.Int64),
        time_ns=pl.col("time_ns").sum(),
        flops=flops,
        used_tensor=(pl.col("tensor_inst") > 0).any(),
        peak_flops_s=pl.col("peak_flops_s").max(),
        peak_bandwidth_bytes_s=pl.col("peak_bandwidth_bytes_s").first(),
        _time_s=time_s,
    )
    return (
        grouped.with_columns(
            *[ratio(pl.col("flops"), pl.col(f"{lv}_bytes")).alias(f"ai_{lv}") for lv in LEVELS],
            *[ratio(pl.col(f"{lv}_bytes"), pl.col("_time_s")).alias(f"{lv}_bytes_per_s") for lv in LEVELS],
            gflops_per_s=ratio(pl.col("flops"), pl.col("_time_s")) / 1e9,
        )
        .drop("_time_s")
        .sort("time_ns", descending=True)
    )
