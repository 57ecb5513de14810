"""The measured memory of a run, from the profiler's memory events (``memory_event`` rows):
allocated bytes over time per device, and what was live at the peak, per component.

The timeline is cut into ``points`` equal time buckets per device and keeps the largest
allocated figure in each (and the figure at the bucket's end), so a peak shorter than a bucket
still shows at its full height: the timeline's maximum is the run's measured peak.

At the peak (the first event where a device's allocated total is at its maximum), an allocation
is live when it was made at or before that event and its address was not freed in between.
Live bytes are summed per component / operator / attention type of the range the allocation was
made in ("unattributed" outside our annotations).  What the counter held before the trace
began (on CUDA, the weights and whatever else was allocated before profiling started) is the
``(before trace)`` row, so the rows of one device sum to its peak exactly.  On the CPU the
profiler's counter starts at zero when profiling starts, so the weights, allocated before, are
not in the CPU peak at all; ``estimated_weight_bytes`` (parameters × bytes per element, as in
``memory_peak``) stands beside each row for that comparison.

A run without memory events (a trace recorded without ``profile_memory``, or ingested from a
format that has none) gives empty frames, not an error.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.analyses.roofline import DTYPES, run_dtype
from tracehouse.analyses.runs import run_tags
from tracehouse.core.errors import BadInput
from tracehouse.schema.memory import MemoryEvent

# c10::DeviceType values that reach a memory event (ROCm reports itself as CUDA).
DEVICE_TYPES = {0: "cpu", 1: "cuda", 6: "hip", 12: "xpu", 13: "mps", 19: "mtia", 20: "privateuse1"}
DEFAULT_POINTS = 200
MAX_POINTS = 100_000
UNATTRIBUTED = "unattributed"
BEFORE_TRACE = "(before trace)"

TIMELINE_SCHEMA = {
    "device": pl.String,
    "bucket": pl.Int64,
    "start_ns": pl.Int64,
    "offset_ns": pl.Int64,
    "allocated_bytes": pl.Int64,
    "allocated_end_bytes": pl.Int64,
    "reserved_bytes": pl.Int64,
    "events": pl.Int64,
}
PEAK_SCHEMA = {
    "device": pl.String,
    "peak_ns": pl.Int64,
    "peak_offset_ns": pl.Int64,
    "peak_bytes": pl.Int64,
    "component": pl.String,
    "operator": pl.String,
    "attention_type": pl.String,
    "live_bytes": pl.Int64,
    "allocations": pl.Int64,
    "share": pl.Float64,
    "estimated_weight_bytes": pl.Int64,
}
_EVENT_SCHEMA = {
    "seq": pl.Int64,
    "ts_ns": pl.Int64,
    "device_type": pl.Int64,
    "device_id": pl.Int64,
    "bytes": pl.Int64,
    "total_allocated": pl.Int64,
    "total_reserved": pl.Int64,
    "addr": pl.Int64,
    "component": pl.String,
    "operator": pl.String,
    "attention_type": pl.String,
}


def device_label(device_type: pl.Expr, device_id: pl.Expr) -> pl.Expr:
    """``cpu``, ``cuda:0`` ...: the type's name, with the index where it has one (>= 0)."""
    name = device_type.replace_strict(DEVICE_TYPES, default=None, return_dtype=pl.String)
    name = pl.coalesce(name, pl.concat_str(pl.lit("type"), device_type.cast(pl.String)))
    return pl.when(device_id >= 0).then(pl.concat_str(name, pl.lit(":"), device_id.cast(pl.String))).otherwise(name)


def memory_events(session: Session, run_id: int, device: str | None = None) -> pl.DataFrame:
    """The run's memory events in order, with ``device`` (label) and ``allocated`` (the
    reported total, else the running sum of the deltas); only ``device``'s when given."""
    get_run(session, run_id)
    columns = [getattr(MemoryEvent, c) for c in _EVENT_SCHEMA]
    stmt = select(*columns).where(MemoryEvent.run_id == run_id).order_by(MemoryEvent.seq)
    events = to_frame(session, stmt, _EVENT_SCHEMA).with_columns(
        device=device_label(pl.col("device_type"), pl.col("device_id"))
    )
    events = events.with_columns(
        allocated=pl.coalesce("total_allocated", pl.col("bytes").cum_sum().over("device", order_by="seq"))
    )
    if device is not None:
        known = set(events["device"].unique().to_list())
        if known and device not in known:
            raise BadInput(f"run {run_id} has no memory events on device {device!r}; it has {', '.join(sorted(known))}")
        events = events.filter(pl.col("device") == device)
    return events


def memory_timeline(
    session: Session, run_id: int, points: int = DEFAULT_POINTS, device: str | None = None
) -> pl.DataFrame:
    """Allocated bytes over time, one row per non-empty bucket of ``points`` equal time buckets
    per device (``TIMELINE_SCHEMA``): ``allocated_bytes`` the largest figure in the bucket,
    ``allocated_end_bytes`` the figure after its last event, ``reserved_bytes`` the largest
    reserved figure; ``offset_ns`` from the run's first memory event."""
    if not 1 <= points <= MAX_POINTS:
        raise BadInput(f"points must be between 1 and {MAX_POINTS}, not {points}")
    events = memory_events(session, run_id, device)
    if events.is_empty():
        return pl.DataFrame(schema=TIMELINE_SCHEMA)
    first = events.select(pl.col("ts_ns").min()).item()
    t0 = pl.col("ts_ns").min().over("device")
    span = (pl.col("ts_ns").max().over("device") - t0 + 1).cast(pl.Float64)
    bucket = ((pl.col("ts_ns") - t0).cast(pl.Float64) * points / span).floor().cast(pl.Int64)
    width = span / points
    return (
        events.with_columns(bucket=bucket, start_ns=(t0 + (bucket.cast(pl.Float64) * width).floor().cast(pl.Int64)))
        .group_by("device", "bucket")
        .agg(
            start_ns=pl.col("start_ns").first(),
            allocated_bytes=pl.col("allocated").max(),
            allocated_end_bytes=pl.col("allocated").last(),
            reserved_bytes=pl.col("total_reserved").max(),
            events=pl.len().cast(pl.Int64),
        )
        .with_columns(offset_ns=pl.col("start_ns") - first)
        .sort("device", "bucket")
        .select(list(TIMELINE_SCHEMA))
        .cast(TIMELINE_SCHEMA)  # type: ignore[arg-type]  # polars types the mapping key invariantly
    )


def memory_peak_live(session: Session, run_id: int, device: str | None = None) -> pl.DataFrame:
    """Per device, what was live at its measured peak (``PEAK_SCHEMA``): one row per component
    × operator × attention type the live allocations were made in, largest first, and the
    ``(before trace)`` row; ``live_bytes`` of a device's rows sum to its ``peak_bytes``."""
    events = memory_events(session, run_id, device)
    if events.is_empty():
        return pl.DataFrame(schema=PEAK_SCHEMA)
    weights = _estimated_weight_bytes(session, run_id)
    first = events.select(pl.col("ts_ns").min()).item()
    frames = [_live_at_peak(part, first, weights) for part in events.partition_by("device", maintain_order=True)]
    return pl.concat(frames).sort("device").cast(PEAK_SCHEMA)  # type: ignore[arg-type]


def _live_at_peak(events: pl.DataFrame, first: int, weights: int | None) -> pl.DataFrame:
    peak_at = int(events["allocated"].arg_max() or 0)
    peak = events.row(peak_at, named=True)
    # The event after each on the same address: an allocation is live at the peak unless
    # that next event (its free) came at or before the peak.
    paired = events.with_columns(next_seq=pl.col("seq").shift(-1).over("addr", order_by="seq"))
    live = paired.filter(
        (pl.col("bytes") > 0)
        & (pl.col("seq") <= peak["seq"])
        & (pl.col("addr").is_null() | pl.col("next_seq").is_null() | (pl.col("next_seq") > peak["seq"]))
    )
    rows = (
        live.group_by(
            component=pl.col("component").fill_null(UNATTRIBUTED),
            operator=pl.col("operator").fill_null(UNATTRIBUTED),
            attention_type="attention_type",
        )
        .agg(live_bytes=pl.col("bytes").sum(), allocations=pl.len().cast(pl.Int64))
        .sort("live_bytes", "component", "operator", descending=[True, False, False])
    )
    before = peak["allocated"] - int(rows["live_bytes"].sum())
    if before:
        rows = pl.concat(
            [
                rows,
                pl.DataFrame(
                    {"component": [BEFORE_TRACE], "live_bytes": [before], "allocations": [None]},
                    schema={"component": pl.String, "live_bytes": pl.Int64, "allocations": pl.Int64},
                ),
            ],
            how="diagonal_relaxed",
        )
    return rows.with_columns(
        device=pl.lit(peak["device"]),
        peak_ns=pl.lit(peak["ts_ns"], pl.Int64),
        peak_offset_ns=pl.lit(peak["ts_ns"] - first, pl.Int64),
        peak_bytes=pl.lit(peak["allocated"], pl.Int64),
        estimated_weight_bytes=pl.lit(weights, pl.Int64),
    ).with_columns(share=ratio("live_bytes", "peak_bytes"))


def _estimated_weight_bytes(session: Session, run_id: int) -> int | None:
    """Parameters × the dtype's bytes per element (``memory_peak``'s weights)."""
    run = get_run(session, run_id)
    params = run.param_count
    if params is None:
        value = run_tags(session, run_id).get("params", "")
        params = int(value) if value.isdigit() else None
    return params * DTYPES[run_dtype(run)][0] if params is not None else None


def measured_peaks(session: Session, run_id: int) -> dict[str | None, int]:
    """The measured peak allocated bytes on the run's main device (an accelerator where the
    run has one, else the CPU): overall (key None) and per component (the largest figure
    among the events made inside it).  Empty without memory events."""
    events = memory_events(session, run_id)
    if events.is_empty():
        return {}
    main = events.filter(pl.col("device_type") != 0) if (events["device_type"] != 0).any() else events
    per = main.group_by("component").agg(pl.col("allocated").max())
    peaks: dict[str | None, int] = {c: int(v) for c, v in per.iter_rows() if c is not None}
    peaks[None] = int(main["allocated"].max())  # type: ignore[arg-type]  # an Int64 column's max
    return peaks
