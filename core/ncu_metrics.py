"""Nsight Compute metric maths shared by ingest (which stores the counters) and analyses (which
read them back): the long table's shape, the wide pivot and the NERSC roofline inputs."""

from __future__ import annotations

import polars as pl

from tracehouse.core.frames import FrameSchema

LONG_SCHEMA: FrameSchema = {
    "kernel_id": pl.Int64,
    "kernel_name": pl.String,
    "process_id": pl.Int64,
    "device": pl.Int64,
    "context": pl.Int64,
    "stream": pl.Int64,
    "grid_x": pl.Int64,
    "grid_y": pl.Int64,
    "grid_z": pl.Int64,
    "block_x": pl.Int64,
    "block_y": pl.Int64,
    "block_z": pl.Int64,
    "metric_name": pl.String,
    "metric_unit": pl.String,
    "metric_value": pl.Float64,
    "source_file": pl.String,
}
# Per-kernel attributes kept by ncu_wide (process_id differs between one-metric runs).
KERNEL_ATTRS = (
    "kernel_name",
    "device",
    "context",
    "stream",
    "grid_x",
    "grid_y",
    "grid_z",
    "block_x",
    "block_y",
    "block_z",
)

# NERSC roofline method: FLOPs = add + mul + 2·fma per precision, plus tensor-pipe instructions
# × a per-architecture factor (``core.device_specs.TENSOR_FLOPS_PER_INST``: 512 on V100).
FLOP_METRICS = {
    "fp64": ("dadd", "dmul", "dfma"),
    "fp32": ("fadd", "fmul", "ffma"),
    "fp16": ("hadd", "hmul", "hfma"),
}
OP_METRIC = "sm__sass_thread_inst_executed_op_{}_pred_on.sum"
# Volta has only the pipe total; Ampere+ also split out HMMA (the generic count then includes
# integer IMMA too, so the HMMA one is preferred where collected).
TENSOR_METRICS = ("sm__inst_executed_pipe_tensor_op_hmma.sum", "sm__inst_executed_pipe_tensor.sum")
BYTE_METRICS = {"dram": "dram__bytes.sum", "l2": "lts__t_bytes.sum", "l1": "l1tex__t_bytes.sum"}
HIT_RATE_METRICS = {"l1": "l1tex__t_sector_hit_rate.pct", "l2": "lts__t_sector_hit_rate.pct"}
CYCLES, CYCLES_PER_S = "sm__cycles_elapsed.avg", "sm__cycles_elapsed.avg.per_second"


def ncu_wide(df: pl.DataFrame) -> pl.DataFrame:
    """One row per kernel, one Float64 column per metric, plus the kernel's attributes."""
    attrs = df.group_by("kernel_id").agg([pl.col(c).first() for c in KERNEL_ATTRS])
    values = df.pivot(on="metric_name", index="kernel_id", values="metric_value", aggregate_function="first")
    return attrs.join(values, on="kernel_id", how="left").sort("kernel_id")


def roofline_inputs(wide: pl.DataFrame, tensor_flops_per_inst: float | None) -> pl.DataFrame:
    """Per kernel: time, FLOPs per precision, bytes, intensity, GFLOP/s, bandwidth, hit rates.

    ``tensor_flops_per_inst`` is the architecture's factor (``hardware.tensor_flops_per_inst``);
    with none, a kernel that used tensor cores has unknown (null) FLOPs rather than a guess.
    Missing counters count as absent (null), not zero, except FLOP terms: a precision whose
    counters were not collected contributes nothing, as in NERSC's scripts.
    """
    cols = set(wide.columns)

    def metric(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, pl.Float64)

    def flops(ops: tuple[str, str, str]) -> pl.Expr:
        add, mul, fma = (metric(OP_METRIC.format(o)).fill_null(0.0) for o in ops)
        return add + mul + 2.0 * fma

    tensor_inst = next((metric(m) for m in TENSOR_METRICS if m in cols), pl.lit(None, pl.Float64))
    exprs = [(flops(ops)).alias(f"flops_{prec}") for prec, ops in FLOP_METRICS.items()]
    exprs.append(tensor_inst.fill_null(0.0).alias("tensor_inst"))
    exprs += [metric(m).alias(f"{level}_bytes") for level, m in BYTE_METRICS.items()]
    exprs += [metric(m).alias(f"{level}_hit_rate_pct") for level, m in HIT_RATE_METRICS.items()]
    exprs.append((metric(CYCLES) / metric(CYCLES_PER_S)).alias("time_s"))
    out = wide.select("kernel_id", "kernel_name", *exprs).with_columns(
        flops_tensor=pl.col("tensor_inst") * pl.lit(tensor_flops_per_inst, pl.Float64)
    )
    unknown = (pl.col("tensor_inst") > 0) & pl.col("flops_tensor").is_null()
    out = out.with_columns(
        flops=pl.when(unknown)
        .then(None)
        .otherwise(pl.sum_horizontal([f"flops_{p}" for p in (*FLOP_METRICS, "tensor")])),
        time_ns=(pl.col("time_s") * 1e9),
    )
    # No bytes / no time makes the ratio undefined: null, not inf, so it stores and sorts.
    return out.with_columns(
        [_ratio(pl.col("flops"), pl.col(f"{lvl}_bytes")).alias(f"ai_{lvl}") for lvl in BYTE_METRICS]
        + [_ratio(pl.col(f"{lvl}_bytes"), pl.col("time_s")).alias(f"{lvl}_bytes_per_s") for lvl in BYTE_METRICS]
        + [(_ratio(pl.col("flops"), pl.col("time_s")) / 1e9).alias("gflops_per_s")]
    )


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num / den).otherwise(None)
