"""Counter-based roofline (Nsight Compute): per kernel launch, measured FLOPs (NERSC's method:
add + mul + 2·fma per precision, tensor-pipe instructions × 512), DRAM / L2 / L1 bytes,
arithmetic intensity and achieved FLOP/s, against the device's peaks."""

from __future__ import annotations

import polars as pl
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run
from tracehouse.core.errors import BadInput
from tracehouse.ingest.ncu import ncu_wide, roofline_inputs
from tracehouse.ingest.ncu_load import stored_metrics
from tracehouse.schema.models import Hardware


def counter_roofline(session: Session, run_id: int) -> pl.DataFrame:
    """Columns of ``ingest.ncu.roofline_inputs`` plus ``peak_flops_s`` (tensor fp16 peak when the
    kernel used tensor cores, else fp32), ``peak_bandwidth_bytes_s``, ``attainable_flops_s``
    (min(peak, DRAM intensity × bandwidth)) and ``bound`` (memory / compute)."""
    run = get_run(session, run_id)
    long = stored_metrics(session, run_id)
    if long.is_empty():
        raise BadInput(f"run {run_id} has no Nsight Compute counters")
    hw = session.get(Hardware, run.hardware_id) if run.hardware_id is not None else None
    fp16, fp32, bandwidth = ((hw.peak_fp16_flops, hw.peak_fp32_flops, hw.peak_bandwidth_bytes_s)
                             if hw else (None, None, None))
    points = roofline_inputs(ncu_wide(long)).with_columns(
        peak_flops_s=pl.when(pl.col("flops_tensor") > 0).then(pl.lit(fp16, pl.Float64))
        .otherwise(pl.lit(fp32, pl.Float64)),
        peak_bandwidth_bytes_s=pl.lit(bandwidth, pl.Float64))
    attainable = pl.min_horizontal("peak_flops_s", pl.col("ai_dram") * pl.col("peak_bandwidth_bytes_s"))
    ridge = pl.col("peak_flops_s") / pl.col("peak_bandwidth_bytes_s")
    return points.with_columns(
        attainable_flops_s=attainable,
        bound=pl.when(pl.col("ai_dram").is_null() | ridge.is_null()).then(None)
        .when(pl.col("ai_dram") < ridge).then(pl.lit("memory")).otherwise(pl.lit("compute")))
