"""Roofline (paper Fig 5): per operator, analytic FLOPs and bytes from the stored shapes,
arithmetic intensity, achieved FLOP/s, and where that sits against the device's peak compute
(for the run's dtype) and memory bandwidth from the ``hardware`` table.

GEMM (linear) and convolution costs were computed at ingest from each op's recorded shapes
(``core/opcost.py``: 2·M·K·N, 2·N·O·out·(C/g)·k, each tensor moved once) and summed in the
rollup with the kernel time they cover; operators without shapes (norms, elementwise, or
traces recorded without ``record_shapes``) get null FLOPs and bytes.  For attention, with e
bytes per element:

- FLOPs = 4·B·H·Lq·Lkv·D (QKᵀ and PV, see ``attention.call_flops``).
- fused (flash / efficient / cudnn) backends read Q, K, V and write O once:
  bytes = e·B·H·D·(2·Lq + 2·Lkv).
- the baseline (materialised) backend additionally writes the Lq×Lkv score matrix S = QKᵀ,
  reads it back for softmax, writes P = softmax(S) and reads P for PV:
  bytes = e·B·H·(D·(2·Lq + 2·Lkv) + 4·Lq·Lkv).
  This is the ideal DRAM traffic (each tensor moved once per use, no cache reuse).
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.attention import call_flops
from tracehouse.analyses.common import get_run, ratio, to_frame, with_bounds
from tracehouse.analyses.counters import counter_groups
from tracehouse.analyses.sequence import attention_calls
from tracehouse.core.errors import BadInput
from tracehouse.schema.models import Hardware, Kernel, OperatorRollup, Run, Symbol
from tracehouse.schema.ncu_counters import has_counters

# dtype spellings runs use -> (bytes per element, hardware peak column).  TF32 matmuls on
# fp32 runs are not assumed: the fp32 peak is the honest ceiling unless the run says tf32.
DTYPES: dict[str, tuple[int, str]] = {
    "fp32": (4, "peak_fp32_flops"),
    "float32": (4, "peak_fp32_flops"),
    "float": (4, "peak_fp32_flops"),
    "tf32": (4, "peak_tf32_flops"),
    "fp16": (2, "peak_fp16_flops"),
    "float16": (2, "peak_fp16_flops"),
    "half": (2, "peak_fp16_flops"),
    "bf16": (2, "peak_bf16_flops"),
    "bfloat16": (2, "peak_bf16_flops"),
    "fp64": (8, "peak_fp64_flops"),
    "float64": (8, "peak_fp64_flops"),
    "double": (8, "peak_fp64_flops"),
    "int8": (1, "peak_int8_ops"),
}
FUSED_BACKENDS = frozenset({"flash", "efficient", "mem_efficient", "cudnn", "flex", "xformers"})


def run_dtype(run: Run) -> str:
    """The run's dtype, else fp32 for CPU runs and fp16 for GPU runs (the usual inference dtypes)."""
    if run.dtype and run.dtype.lower() in DTYPES:
        return run.dtype.lower()
    return "fp32" if run.device_kind == "cpu" else "fp16"


def attention_bytes(elem_bytes: int, fused: bool) -> pl.Expr:
    """Ideal DRAM bytes of one attention call (see the module docstring)."""
    b, h, lq, lkv, d = (pl.col(c).cast(pl.Float64) for c in ("batch", "heads", "seq_q", "seq_kv", "head_dim"))
    qkvo = d * (2 * lq + 2 * lkv)
    per_head = qkvo if fused else qkvo + 4 * lq * lkv
    return elem_bytes * b * h * per_head


def _peaks(session: Session, run: Run, dtype: str) -> tuple[float | None, float | None, str | None]:
    hw = session.get(Hardware, run.hardware_id) if run.hardware_id is not None else None
    if hw is None:
        return None, None, None
    return getattr(hw, DTYPES[dtype][1]), hw.peak_bandwidth_bytes_s, hw.name


def roofline(session: Session, run_id: int) -> pl.DataFrame:
    """One row per operator (attention: one row per attention type).

    Columns: ``operator, attention_type, kernel_count, time_ns`` (summed kernel time),
    ``flops, bytes`` (analytic; null where no shapes), ``shaped_ns`` (time of the calls the
    FLOPs cover), ``arithmetic_intensity`` (FLOPs / byte), ``achieved_flops_s`` (flops /
    shaped time), ``hardware, dtype, elem_bytes, peak_flops_s, peak_bandwidth_bytes_s``,
    ``ridge_point`` (peak / bandwidth, FLOPs per byte), ``attainable_flops_s``
    (min(peak, intensity × bandwidth)), ``bound`` (``memory`` when the intensity is below the
    ridge point, else ``compute``; null without peaks or FLOPs) and ``efficiency``
    (achieved / attainable).  CPU rows have no peaks in the catalogue, so those are null.
    """
    run = get_run(session, run_id)
    dtype = run_dtype(run)
    elem = DTYPES[dtype][0]
    fused = (run.attention_backend or "").lower() in FUSED_BACKENDS
    peak, bandwidth, hw_name = _peaks(session, run, dtype)
    attn = _attention_points(session, run_id, elem, fused)
    others = _costed_operators(session, run_id)
    frame = pl.concat([attn, others], how="vertical")
    ridge = peak / bandwidth if peak and bandwidth else None
    frame = frame.with_columns(
        arithmetic_intensity=pl.col("flops") / pl.col("bytes"),
        achieved_flops_s=ratio(pl.col("flops"), pl.col("shaped_ns") * 1e-9),
        hardware=pl.lit(hw_name, pl.String),
        dtype=pl.lit(dtype),
        elem_bytes=pl.lit(elem, pl.Int64),
        attention_model=pl.when(pl.col("operator") == "attention").then(pl.lit("fused" if fused else "materialised")),
        peak_flops_s=pl.lit(peak, pl.Float64),
        peak_bandwidth_bytes_s=pl.lit(bandwidth, pl.Float64),
        ridge_point=pl.lit(ridge, pl.Float64),
    )
    return (
        with_bounds(frame, "arithmetic_intensity")
        .with_columns(efficiency=pl.col("achieved_flops_s") / pl.col("attainable_flops_s"))
        .sort("time_ns", descending=True)
    )


def _costed_operators(session: Session, run_id: int) -> pl.DataFrame:
    """Non-attention operators with the GEMM / conv costs kept in the rollup."""
    r = OperatorRollup
    stmt = (
        select(
            r.operator,
            func.sum(r.kernel_count),
            func.sum(r.total_ns),
            func.sum(r.op_flops),
            func.sum(r.op_bytes),
            func.sum(r.costed_ns),
        )
        .where(r.run_id == run_id, r.operator != "attention")
        .group_by(r.operator)
    )
    frame = to_frame(
        session,
        stmt,
        {
            "operator": pl.String,
            "kernel_count": pl.Int64,
            "time_ns": pl.Int64,
            "flops": pl.Float64,
            "bytes": pl.Float64,
            "shaped_ns": pl.Int64,
        },
    )
    return frame.select(
        "operator",
        pl.lit(None, pl.String).alias("attention_type"),
        "kernel_count",
        "time_ns",
        "flops",
        "bytes",
        "shaped_ns",
    )


def _attention_points(session: Session, run_id: int, elem: int, fused: bool) -> pl.DataFrame:
    calls = attention_calls(session, run_id).with_columns(flops=call_flops(), bytes=attention_bytes(elem, fused))
    return (
        calls.group_by("attention_type")
        .agg(
            kernel_count=pl.col("kernel_count").sum(),
            time_ns=pl.col("dur_ns").sum(),
            flops=pl.col("flops").sum(),
            bytes=pl.col("bytes").sum(),
            shaped_ns=pl.col("dur_ns").filter(pl.col("flops").is_not_null()).sum(),
            shaped=pl.col("flops").is_not_null().any(),
        )
        # A type with no shaped call has unknown FLOPs, not zero.
        .with_columns(flops=pl.when("shaped").then(pl.col("flops")), bytes=pl.when("shaped").then(pl.col("bytes")))
        .select(
            pl.lit("attention").alias("operator"),
            "attention_type",
            "kernel_count",
            "time_ns",
            "flops",
            "bytes",
            pl.col("shaped_ns").cast(pl.Int64),
        )
    )


# ------------------------------------------------------------------ one table, either source
ROOFLINE_BY = ("operator", "attention_type", "kernel")
_SHARED = [
    "instances",
    "time_ns",
    "flops",
    "dram_bytes",
    "l2_bytes",
    "l1_bytes",
    "ai_dram",
    "ai_l2",
    "ai_l1",
    "gflops_per_s",
    "source",
    "peak_flops_s",
    "peak_bandwidth_bytes_s",
]


def roofline_by(session: Session, run_id: int, by: str = "operator") -> pl.DataFrame:
    """Rows per ``by`` (operator / attention_type / kernel): ``instances, time_ns, flops,
    dram_bytes, l2_bytes, l1_bytes, ai_dram, ai_l2, ai_l1, gflops_per_s`` and ``source``:
    ``counters`` where the run has Nsight Compute counters for that group, else ``analytic``
    (shape-derived FLOPs and ideal DRAM bytes, see the module docstring; no L2 / L1 figures).
    Then the device's ``peak_flops_s, peak_bandwidth_bytes_s``, ``attainable_flops_s``,
    ``bound`` (by DRAM intensity) and ``efficiency`` (achieved / attainable).  A counters row's
    ``time_ns`` is what ncu measured for the profiled launches (replayed one at a time, caches
    flushed); an analytic row's is the timeline's kernel time."""
    if by not in ROOFLINE_BY:
        raise BadInput(f"unknown grouping {by!r}; expected one of {', '.join(ROOFLINE_BY)}")
    run = get_run(session, run_id)
    columns = [by, *_SHARED]
    counted = (
        counter_groups(session, run_id, by).with_columns(source=pl.lit("counters")).select(columns)
        if has_counters(session, run_id)
        else None
    )
    analytic = _analytic_groups(session, run, by).select(columns)
    if counted is not None:
        analytic = analytic.join(counted.select(by), on=by, how="anti", nulls_equal=True)
    frame = pl.concat([f for f in (counted, analytic) if f is not None], how="vertical_relaxed")
    return (
        with_bounds(frame, "ai_dram")
        .with_columns(efficiency=pl.col("gflops_per_s") * 1e9 / pl.col("attainable_flops_s"))
        .sort("time_ns", by, descending=[True, False], nulls_last=True)
    )


def _analytic_groups(session: Session, run: Run, by: str) -> pl.DataFrame:
    if by == "kernel":
        frame = _kernel_costs(session, run.id)
        peak, bandwidth, _ = _peaks(session, run, run_dtype(run))
        frame = frame.with_columns(
            peak_flops_s=pl.lit(peak, pl.Float64), peak_bandwidth_bytes_s=pl.lit(bandwidth, pl.Float64)
        )
    else:
        frame = roofline(session, run.id)
        if by == "attention_type":
            frame = frame.filter(pl.col("operator") == "attention")
        frame = frame.group_by(by).agg(
            pl.col("kernel_count").sum(),
            pl.col("time_ns").sum(),
            pl.col("shaped_ns").sum(),
            *[pl.when(pl.col(c).is_not_null().any()).then(pl.col(c).sum()).alias(c) for c in ("flops", "bytes")],
            pl.col("peak_flops_s").first(),
            pl.col("peak_bandwidth_bytes_s").first(),
        )
    return frame.select(
        by,
        "flops",
        "peak_flops_s",
        "peak_bandwidth_bytes_s",
        instances=pl.col("kernel_count").cast(pl.Int64),
        time_ns=pl.col("time_ns").cast(pl.Float64),
        dram_bytes="bytes",
        l2_bytes=pl.lit(None, pl.Float64),
        l1_bytes=pl.lit(None, pl.Float64),
        ai_dram=ratio("flops", "bytes"),
        ai_l2=pl.lit(None, pl.Float64),
        ai_l1=pl.lit(None, pl.Float64),
        gflops_per_s=ratio("flops", "shaped_ns"),  # FLOPs per ns = GFLOP/s
        source=pl.lit("analytic"),
    )


def _kernel_costs(session: Session, run_id: int) -> pl.DataFrame:
    """Per kernel name, the GEMM / conv costs attributed at ingest (an op's FLOPs sit on its
    first kernel, so a multi-kernel op's helpers show time but no FLOPs)."""
    k = Kernel
    stmt = (
        select(
            Symbol.text,
            func.count(),
            func.sum(k.dur_ns),
            func.sum(k.op_flops),
            func.sum(k.op_bytes),
            func.sum(case((k.op_flops.is_not(None), k.dur_ns), else_=0)),
        )
        .join(Symbol, Symbol.id == k.name_id)
        .where(k.run_id == run_id)
        .group_by(Symbol.text)
    )
    return to_frame(
        session,
        stmt,
        {
            "kernel": pl.String,
            "kernel_count": pl.Int64,
            "time_ns": pl.Int64,
            "flops": pl.Float64,
            "bytes": pl.Float64,
            "shaped_ns": pl.Int64,
        },
    )
