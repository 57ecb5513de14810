"""Where the device's wall time went (HTA's temporal breakdown and communication overlap):
busy vs idle, compute vs communication vs memory, and how much communication hid behind
compute, per device.

Summed kernel time (the breakdowns) counts concurrent kernels twice; these figures use the
*union* of kernel intervals instead, so busy + idle = the span from the first kernel's start
to the last one's end.  Classes: memory = memcpy / memset, communication = NCCL / RCCL
collectives, compute = every other kernel.  CPU-only runs use their top-level host ops.

Equal to HTA's ``get_temporal_breakdown`` / ``get_comm_comp_overlap`` on the same trace
(tested), except where HTA counts what is not GPU work: Kineto's ``cuda_sync`` "Stream Sync"
records (waits, drawn on the stream's row) become HTA non-compute time, and a CPU op carrying
a ``stream`` argument (Triton's launcher) becomes an HTA kernel.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.schema.models import Kernel

_SCHEMA = {"device": pl.Int64, "start_ns": pl.Int64, "dur_ns": pl.Int64, "kind": pl.String, "operator": pl.String}


def union_ns(frame: pl.DataFrame, by: str = "device") -> pl.DataFrame:
    """Per ``by``: the total length of the union of ``[start_ns, start_ns + dur_ns)``."""
    ordered = frame.sort(by, "start_ns").with_columns(end_ns=pl.col("start_ns") + pl.col("dur_ns"))
    # A new merged interval starts where a kernel begins after every earlier one has ended.
    reach = pl.col("end_ns").cum_max().shift(1).over(by)
    merged = ordered.with_columns(group=(pl.col("start_ns") > reach).fill_null(True).cum_sum().over(by))
    return (
        merged.group_by(by, "group")
        .agg(pl.col("start_ns").min(), pl.col("end_ns").max())
        .group_by(by)
        .agg(
            union_ns=(pl.col("end_ns") - pl.col("start_ns")).sum(),
            first_ns=pl.col("start_ns").min(),
            last_ns=pl.col("end_ns").max(),
        )
    )


def temporal_breakdown(session: Session, run_id: int) -> pl.DataFrame:
    """One row per device: ``span_ns`` (first kernel start to last kernel end), ``busy_ns``
    (union of all kernels), ``idle_ns``, ``compute_ns`` / ``communication_ns`` / ``memory_ns``
    (union of each class), ``non_compute_ns`` (busy − compute: HTA's non-compute time),
    ``overlap_ns`` (communication running under compute), the shares of the span
    (``idle_share, compute_share, non_compute_share``) and ``comm_overlap_share`` (overlap /
    communication)."""
    get_run(session, run_id)
    k = Kernel
    kernels = to_frame(
        session, select(k.device, k.start_ns, k.dur_ns, k.kind, k.operator).where(k.run_id == run_id), _SCHEMA
    ).with_columns(pl.col("device").fill_null(-1))
    is_memory = pl.col("kind").is_in(["memcpy", "memset"])
    is_comm = pl.col("operator") == "communication"
    classes = {
        "busy": pl.lit(True),
        "compute": ~is_memory & ~is_comm,
        "communication": is_comm,
        "memory": is_memory,
        "comm_or_compute": ~is_memory,
    }
    frame = kernels.select("device").unique()
    for name, keep in classes.items():
        part = union_ns(kernels.filter(keep)).rename({"union_ns": f"{name}_ns"})
        cols = ["device", f"{name}_ns", *(["first_ns", "last_ns"] if name == "busy" else [])]
        frame = frame.join(part.select(cols), on="device", how="left")
    frame = frame.with_columns(pl.col(c).fill_null(0) for c in frame.columns if c.endswith("_ns"))
    span = pl.col("last_ns") - pl.col("first_ns")
    # |comm ∩ compute| = |comm| + |compute| − |comm ∪ compute|
    overlap = pl.col("communication_ns") + pl.col("compute_ns") - pl.col("comm_or_compute_ns")
    return (
        frame.with_columns(span_ns=span, overlap_ns=overlap)
        .with_columns(
            idle_ns=pl.col("span_ns") - pl.col("busy_ns"), non_compute_ns=pl.col("busy_ns") - pl.col("compute_ns")
        )
        .with_columns(
            *[ratio(f"{c}_ns", "span_ns").alias(f"{c}_share") for c in ("idle", "compute", "non_compute")],
            comm_overlap_share=ratio("overlap_ns", "communication_ns"),
        )
        .select(
            "device",
            "span_ns",
            "busy_ns",
            "idle_ns",
            "compute_ns",
            "non_compute_ns",
            "communication_ns",
            "memory_ns",
            "overlap_ns",
            "idle_share",
            "compute_share",
            "non_compute_share",
            "comm_overlap_share",
        )
        .with_columns(pl.when(pl.col("device") >= 0).then(pl.col("device")))
        .sort("device", nulls_last=True)
    )
