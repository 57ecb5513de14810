"""Kineto traces from the CUPTI range profiler (PyTorch's CUPTI profiler mode): one
``cuda_profiler_range`` event per kernel, carrying that kernel's performance counters in its
``args``, and no ``kernel`` events at all.  Read as a plain trace, such a file looks CPU-only.

Here each range becomes the kernel it measured: on the trace's GPU (``deviceProperties``),
joined to the i-th kernel launch call (ranges and launches come in the same order, as HTA's
``get_cupti_counter_data_with_operators`` pairs them), so its launching ops attribute it as
usual; and its counters become the run's per-launch counter rows, the ones Nsight Compute
CSVs fill, so ``tracehouse counters`` and the counter roofline read them.  A range's time is
the profiler's replay of the kernel, not the kernel's time on a timeline: the run's warnings
say so (``cupti_range_profiler_ranges``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import polars as pl

from tracehouse.core.frames import GPU_EVENT_SCHEMA, ParsedTrace, conform

MARKER = b'"cuda_profiler_range"'
LAUNCH_PATTERN = r"(?i)LaunchKernel|LaunchCooperativeKernel"
# CUPTI reports instruction counts per SM sub-partition; summed (``.sum``) they are the same
# count as the per-SM metric Nsight Compute's roofline sections use, which is what we read.
_SMSP_PREFIX, _SM_PREFIX = "smsp__sass_thread_inst_executed_op_", "sm__sass_thread_inst_executed_op_"
COUNTER_SCHEMA = {
    "kernel_id": pl.Int64,
    "kernel_name": pl.String,
    "metric_name": pl.String,
    "metric_unit": pl.String,
    "metric_value": pl.Float64,
}


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str = ""
    name: str = ""
    ts: float | None = None
    dur: float | None = None
    pid: int | str | None = None
    args: dict[str, Any] | None = None


class _Doc(msgspec.Struct, gc=False):
    traceEvents: list[_Event] = []


def read_ranges(raw: bytes) -> list[_Event]:
    """The trace's complete ``cuda_profiler_range`` events, in time order; [] when it has none
    (a byte search first: only a counter trace pays for the second decode)."""
    if MARKER not in raw:
        return []
    text = raw.lstrip()
    try:
        events = (
            msgspec.json.decode(text, type=list[_Event])
            if text[:1] == b"["
            else msgspec.json.decode(text, type=_Doc).traceEvents
        )
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return []  # the main decode already judged the document; nothing more to read here
    ranges = [e for e in events if e.cat == "cuda_profiler_range" and e.ph == "X" and e.ts is not None]
    return sorted(ranges, key=lambda e: e.ts or 0.0)  # ts is set: the filter above


def attach_ranges(parsed: ParsedTrace, ranges: list[_Event], base_ns: int) -> None:
    """Make ``ranges`` the trace's kernels and counters (see the module docstring)."""
    device = parsed.devices[0].device if parsed.devices else 0
    devices = {d.device for d in parsed.devices}
    launches = parsed.launches.filter(pl.col("name").str.contains(LAUNCH_PATTERN)).sort("start_ns")
    paired = launches.height == len(ranges)
    if not paired:
        parsed.warnings["counter_ranges_without_launch"] = len(ranges)
    kernels = pl.DataFrame(
        {
            "kind": ["kernel"] * len(ranges),
            "name": [r.name for r in ranges],
            "device": [r.pid if isinstance(r.pid, int) and r.pid in devices else device for r in ranges],
            "start_ns": [base_ns + round((r.ts or 0.0) * 1000) for r in ranges],  # ts is set: see read_ranges
            "dur_ns": [round((r.dur or 0) * 1000) for r in ranges],
            "correlation": launches["correlation"] if paired else pl.Series([None] * len(ranges), dtype=pl.Int64),
        },
        schema_overrides={"device": pl.Int64, "start_ns": pl.Int64, "dur_ns": pl.Int64, "correlation": pl.Int64},
    )
    parsed.gpu_events = conform(kernels, GPU_EVENT_SCHEMA)
    parsed.cpu_only = False
    parsed.counters = _counters(ranges)
    parsed.warnings["cupti_range_profiler_ranges"] = len(ranges)


def _counters(ranges: list[_Event]) -> pl.DataFrame:
    rows = [
        (i, r.name, _SM_PREFIX + k[len(_SMSP_PREFIX) :] if k.startswith(_SMSP_PREFIX) else k, None, float(v))
        for i, r in enumerate(ranges)
        for k, v in (r.args or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return pl.DataFrame(rows, schema=COUNTER_SCHEMA, orient="row")
