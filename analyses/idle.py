"""Why a stream sat idle (HTA's ``get_idle_time_breakdown``): each gap between consecutive
GPU activities on one stream is charged to one cause.

- ``host_wait``: the next activity's launch call started after the previous activity had
  ended: the host had not enqueued work in time (the GPU waited on the CPU).
- ``kernel_wait``: otherwise, a gap shorter than ``consecutive_kernel_delay_ns``: the
  ordinary cost of running small kernels back to back.
- ``other``: every other gap, e.g. a kernel waiting on an event from another stream.

Gaps are measured from the previous activity's end (in start order) to the next one's start
on the same device and stream.  The same rule as HTA's; two differences, both deliberate:
HTA keys streams by number alone within a rank (two devices' stream 7 would be merged), we by
(device, stream); and HTA compares its threshold (documented as 30 ns) with µs timestamps, so
its default is in effect 30 µs: ``HTA_DEFAULT_DELAY_NS`` is that, so default answers agree.
Activities without a launch call (no correlation to a runtime event) are never host waits,
as in HTA.  CPU-only runs have no streams: the result is empty.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.frames import FrameSchema
from tracehouse.schema.models import Kernel

IDLE_CATEGORIES = ("host_wait", "kernel_wait", "other")
HTA_DEFAULT_DELAY_NS = 30_000
_SCHEMA = {
    "device": pl.Int64,
    "stream": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "launch_ns": pl.Int64,
    "seq": pl.Int64,
}
IDLE_SCHEMA: FrameSchema = {
    "device": pl.Int64,
    "stream": pl.Int64,
    "idle_category": pl.String,
    "gaps": pl.Int64,
    "idle_ns": pl.Int64,
    "idle_share": pl.Float64,
}


def stream_gaps(
    session: Session,
    run_id: int,
    consecutive_kernel_delay_ns: int = HTA_DEFAULT_DELAY_NS,
) -> pl.DataFrame:
    """Every gap between consecutive GPU activities of a stream: ``device, stream,
    prev_end_ns`` (where it begins), ``start_ns`` (where it ends: the next activity's start),
    ``launch_ns`` (that activity's launch call), ``gap_ns`` and ``idle_category``."""
    k = Kernel
    acts = to_frame(
        session,
        select(k.device, k.stream, k.start_ns, k.dur_ns, k.launch_ns, k.seq).where(k.run_id == run_id, k.kind != "cpu"),
        _SCHEMA,
    )
    prev_end = (pl.col("start_ns") + pl.col("dur_ns")).shift(1).over("device", "stream")
    gaps = (
        acts.sort("device", "stream", "start_ns", "seq")
        .with_columns(prev_end_ns=prev_end)
        .filter(pl.col("prev_end_ns").is_not_null())
        .with_columns(gap_ns=pl.col("start_ns") - pl.col("prev_end_ns"))
    )
    host_wait = pl.col("launch_ns").is_not_null() & (pl.col("launch_ns") > pl.col("prev_end_ns"))
    category = (
        pl.when(host_wait)
        .then(pl.lit("host_wait"))
        .when(pl.col("gap_ns") < consecutive_kernel_delay_ns)
        .then(pl.lit("kernel_wait"))
        .otherwise(pl.lit("other"))
    )
    return gaps.select("device", "stream", "prev_end_ns", "start_ns", "launch_ns", "gap_ns", idle_category=category)


def idle_time_breakdown(
    session: Session, run_id: int, consecutive_kernel_delay_ns: int = HTA_DEFAULT_DELAY_NS
) -> pl.DataFrame:
    """One row per device × stream × category (all three, 0 where none): ``gaps`` (how many
    idle intervals), ``idle_ns`` (their sum) and ``idle_share`` (of the stream's idle time)."""
    get_run(session, run_id)
    gaps = stream_gaps(session, run_id, consecutive_kernel_delay_ns)
    streams = gaps.select("device", "stream").unique()
    grid = streams.join(pl.DataFrame({"idle_category": IDLE_CATEGORIES}), how="cross")
    sums = gaps.group_by("device", "stream", "idle_category").agg(
        gaps=pl.len().cast(pl.Int64), idle_ns=pl.col("gap_ns").sum()
    )
    frame = grid.join(sums, on=["device", "stream", "idle_category"], how="left").with_columns(
        pl.col("gaps", "idle_ns").fill_null(0)
    )
    stream_total = pl.col("idle_ns").sum().over("device", "stream")
    order = pl.col("idle_category").replace_strict({c: i for i, c in enumerate(IDLE_CATEGORIES)}, return_dtype=pl.Int64)
    return (
        frame.with_columns(idle_share=ratio("idle_ns", stream_total))
        .sort(pl.col("device"), pl.col("stream"), order, nulls_last=True)
        .select(list(IDLE_SCHEMA))
        .cast(IDLE_SCHEMA)  # type: ignore[arg-type]  # polars types the mapping key invariantly
    )
