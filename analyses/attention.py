"""Temporal vs spatial attention (paper Fig 12, 14): time, calls and analytic FLOPs per
attention type, and the analytic FLOPs-vs-frames curve.

FLOPs count the two matmuls only, as the paper does (§VI-B: "calculated by the two main
matmul operations in Attention"): QKᵀ is B·H·Lq·Lkv·D multiply-adds and PV the same, at
2 FLOPs per multiply-add, so one call is ``4·B·H·Lq·Lkv·D``.  Softmax, scaling and masking
are left out.  FLOPs are per *call* (see ``sequence.group_calls``), not per kernel row.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
from sqlalchemy.orm import Session

from tracehouse.analyses.sequence import attention_calls
from tracehouse.core.errors import BadInput

SHAPE_COLUMNS = ("batch", "heads", "seq_q", "seq_kv", "head_dim")


def call_flops() -> pl.Expr:
    """``4·B·H·Lq·Lkv·D`` of a call (null when any dimension is unknown), as Float64 so large
    models cannot overflow Int64."""
    expr = pl.lit(4.0)
    for col in SHAPE_COLUMNS:
        expr = expr * pl.col(col).cast(pl.Float64)
    return expr


def temporal_vs_spatial(session: Session, run_id: int) -> pl.DataFrame:
    """One row per attention type in the run (spatial, temporal, self, cross, causal ...).

    Columns: ``attention_type, call_count, kernel_count, total_ns`` (summed kernel time),
    ``flops`` (sum of 4·B·H·Lq·Lkv·D over the calls with known shapes), ``shaped_calls``
    (calls whose shapes are known), ``time_share`` / ``flop_share`` (of all attention),
    ``achieved_flops_s`` (flops / time of the shaped calls), and ``time_vs_spatial`` /
    ``flops_vs_spatial`` (ratios to the spatial row; null without spatial attention — the
    paper's "2x the time, 9x fewer FLOPs" are ``time_vs_spatial`` and 1/``flops_vs_spatial``).
    """
    calls = attention_calls(session, run_id).with_columns(flops=call_flops())
    per_type = (
        calls.group_by("attention_type")
        .agg(
            call_count=pl.len().cast(pl.Int64),
            kernel_count=pl.col("kernel_count").sum(),
            total_ns=pl.col("dur_ns").sum(),
            flops=pl.col("flops").sum(),
            shaped_calls=pl.col("flops").is_not_null().sum().cast(pl.Int64),
            shaped_ns=pl.col("dur_ns").filter(pl.col("flops").is_not_null()).sum(),
        )
        .with_columns(flops=pl.when(pl.col("shaped_calls") > 0).then(pl.col("flops")))
    )
    spatial = per_type.filter(pl.col("attention_type") == "spatial")
    spatial_ns = spatial["total_ns"][0] if spatial.height else None
    spatial_flops = spatial["flops"][0] if spatial.height else None
    return (
        per_type.with_columns(
            time_share=pl.col("total_ns") / pl.col("total_ns").sum(),
            flop_share=pl.col("flops") / pl.col("flops").sum(),
            achieved_flops_s=pl.when(pl.col("shaped_ns") > 0).then(pl.col("flops") / (pl.col("shaped_ns") * 1e-9)),
            time_vs_spatial=pl.col("total_ns") / spatial_ns if spatial_ns else pl.lit(None, pl.Float64),
            flops_vs_spatial=pl.col("flops") / spatial_flops if spatial_flops else pl.lit(None, pl.Float64),
        )
        .drop("shaped_ns")
        .sort("total_ns", "attention_type", descending=[True, False], nulls_last=True)
    )


def attention_flops_by_frames(
    frames: Iterable[int], height: int, width: int, *, batch: int = 1, heads: int = 1, head_dim: int = 64
) -> pl.DataFrame:
    """Analytic Fig 14: FLOPs of one spatial and one temporal attention layer per frame count.

    ``height`` × ``width`` is the token grid the attention sees (latent pixels or patches).
    Fig 11's layouts: spatial attention is ``[B·F, heads, H·W, D]`` so it costs
    ``4·(B·F)·heads·(H·W)²·D`` — linear in F; temporal attention is ``[B·H·W, heads, F, D]`` so
    ``4·(B·H·W)·heads·F²·D`` — quadratic in F.  They cross where ``F == H·W``.
    Columns: ``frames, spatial_flops, temporal_flops, temporal_over_spatial``.
    """
    counts = list(frames)
    for name, value in (
        ("height", height),
        ("width", width),
        ("batch", batch),
        ("heads", heads),
        ("head_dim", head_dim),
        *(("frames", f) for f in counts),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInput(f"{name} must be a positive integer, got {value!r}")
    if not counts:
        raise BadInput("frames must name at least one frame count")
    tokens = height * width
    # Python ints: exact at any size, converted once at the end.
    spatial = [4 * batch * f * heads * tokens * tokens * head_dim for f in counts]
    temporal = [4 * batch * tokens * heads * f * f * head_dim for f in counts]
    return pl.DataFrame(
        {
            "frames": pl.Series(counts, dtype=pl.Int64),
            "spatial_flops": pl.Series(spatial, dtype=pl.Float64),
            "temporal_flops": pl.Series(temporal, dtype=pl.Float64),
        }
    ).with_columns(temporal_over_spatial=pl.col("temporal_flops") / pl.col("spatial_flops"))
