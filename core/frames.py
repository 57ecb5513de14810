"""The typed frames every trace-format parser returns, and normalization consumes.

Each parser (``kineto.py``, ``nsys.py``, ...) is a pure function from a file to a
:class:`ParsedTrace`; ``attribution.py`` turns one into kernel rows with operator,
attention type, sequence lengths and component.  Keeping the contract here lets a new
format plug in without touching normalization.

Times are absolute integer nanoseconds (``Int64``).  A *launch* is the host-side call that
enqueued a GPU activity (``cudaLaunchKernel``, ``hipLaunchKernel``, ``cuLaunchKernel``, a
memcpy call); it joins its GPU activity by ``correlation`` and sits inside host ranges on the
same ``(pid, tid)``.  A *range* is a host-side interval that may enclose launches: an aten
op (``cpu_op``), a user / NVTX annotation (``annotation``) or a Python frame (``python``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import polars as pl

if TYPE_CHECKING:
    from collections.abc import Mapping

    from polars._typing import PolarsDataType

# Column name -> polars dtype, as a class (``pl.Int64``) or an instance (``pl.Datetime("us", "UTC")``):
# polars takes both, and only its private module names the union.
FrameSchema: TypeAlias = "dict[str, PolarsDataType]"
# What a function reading a schema accepts: any such mapping, a literal ``{"x": pl.Int64}`` included
# (a dict is invariant in its value type, a Mapping is not).
SchemaLike: TypeAlias = "Mapping[str, PolarsDataType]"

GPU_EVENT_SCHEMA: FrameSchema = {
    "kind": pl.String,  # kernel / memcpy / memset
    "name": pl.String,
    "device": pl.Int64,
    "stream": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "correlation": pl.Int64,
    "external_id": pl.Int64,
    "grid_x": pl.Int64,
    "grid_y": pl.Int64,
    "grid_z": pl.Int64,
    "block_x": pl.Int64,
    "block_y": pl.Int64,
    "block_z": pl.Int64,
    "bytes": pl.Int64,
}

LAUNCH_SCHEMA: FrameSchema = {
    "pid": pl.Int64,
    "tid": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "correlation": pl.Int64,
    "name": pl.String,
}

RANGE_SCHEMA: FrameSchema = {
    "pid": pl.Int64,
    "tid": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "name": pl.String,
    "cat": pl.String,  # cpu_op / annotation / python
    "input_dims": pl.String,  # JSON text of the op's input shapes, when recorded
    "concrete_inputs": pl.String,  # JSON text of scalar arguments (conv stride, padding ...)
    "input_types": pl.String,  # JSON text of the inputs' element types
}

# A run's kernel rows as ingest's attribution makes them and a run's export reads them back
# (``analyses.runs.run_kernels``, the kernels route), names spelled out (docs/schema.md, `kernel`).
KERNEL_ROW_SCHEMA: FrameSchema = {
    "seq": pl.Int64,
    "kind": pl.String,
    "device": pl.Int64,
    "stream": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "name": pl.String,
    "correlation": pl.Int64,
    "grid_x": pl.Int64,
    "grid_y": pl.Int64,
    "grid_z": pl.Int64,
    "block_x": pl.Int64,
    "block_y": pl.Int64,
    "block_z": pl.Int64,
    "bytes": pl.Int64,
    "operator": pl.String,
    "operator_source": pl.String,
    "attention_type": pl.String,
    "seq_q": pl.Int64,
    "seq_kv": pl.Int64,
    "batch": pl.Int64,
    "heads": pl.Int64,
    "head_dim": pl.Int64,
    "component": pl.String,
    "step": pl.Int64,
    "cpu_op": pl.String,
    "annotation": pl.String,
    "op_flops": pl.Int64,
    "op_bytes": pl.Int64,
    "launch_ns": pl.Int64,
    "launch_dur_ns": pl.Int64,
}

RANGE_CATEGORIES = ("cpu_op", "annotation", "python")
# Trace formats whose kernels lie on a timeline (Nsight Compute counters do not); ingest has a
# parser for each (ingest.pipeline.PARSERS), analyses use it to pick timed runs.
TIMELINE_FORMATS = ("kineto", "nsys")


@dataclass(slots=True)
class DeviceInfo:
    """What a trace says about one GPU (Kineto ``deviceProperties``, nsys ``TARGET_INFO_GPU``)."""

    device: int
    name: str
    memory_bytes: int | None = None
    sm_count: int | None = None
    compute_capability: str | None = None
    vendor: str | None = None
    memory_bandwidth_bytes_s: float | None = None
    clock_hz: float | None = None


@dataclass(slots=True)
class ParsedTrace:
    """A trace file, parsed but not yet attributed."""

    format: str  # kineto / nsys / ...
    gpu_events: pl.DataFrame
    launches: pl.DataFrame
    ranges: pl.DataFrame
    devices: list[DeviceInfo] = field(default_factory=list)
    event_count: int = 0
    rank: int | None = None
    world_size: int | None = None
    # Problems that did not stop the parse (negative durations, non-UTF-8 names ...), by kind.
    warnings: dict[str, int] = field(default_factory=dict)
    # True when the trace has no GPU activity and host ops are the execution units.
    cpu_only: bool = False
    # Per-launch performance counters the trace itself carries (CUPTI range profiler), in
    # ``counter_ranges.COUNTER_SCHEMA``; None for a trace without.
    counters: pl.DataFrame | None = None


def empty_frame(schema: SchemaLike) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: SchemaLike) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema`` (missing columns become nulls)."""
    exprs = [
        (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype).alias(name) for name, dtype in schema.items()
    ]
    return df.select(exprs)


DEVICE_NAME_CHARS = 200  # hardware.name
COMPUTE_CAPABILITY_CHARS = 16  # hardware.compute_capability


def storable_text(parsed: ParsedTrace) -> ParsedTrace:
    """Text the store can hold the same way on both backends: a NUL (PostgreSQL refuses it,
    SQLite stores it) becomes U+FFFD in every text column and device name, counted as the
    ``nul_in_text`` warning; a device name past its column is cut (``long_device_name``), and
    a device number past its column is dropped."""
    count = 0
    for attr in ("gpu_events", "launches", "ranges"):
        frame: pl.DataFrame = getattr(parsed, attr)
        for name, dtype in frame.schema.items():
            if dtype != pl.String:
                continue
            hits = int(frame[name].str.contains("\x00", literal=True).sum() or 0)
            if hits:
                count += hits
                frame = frame.with_columns(pl.col(name).str.replace_all("\x00", "\ufffd", literal=True))
        setattr(parsed, attr, frame)
    for device in parsed.devices:
        count += "\x00" in device.name
        device.name = device.name.replace("\x00", "\ufffd")
        if len(device.name) > DEVICE_NAME_CHARS:
            parsed.warnings["long_device_name"] = parsed.warnings.get("long_device_name", 0) + 1
            device.name = device.name[:DEVICE_NAME_CHARS]
        if device.compute_capability and len(device.compute_capability) > COMPUTE_CAPABILITY_CHARS:
            device.compute_capability = None
        if device.sm_count is not None and not 0 <= device.sm_count < 2**31:  # INTEGER
            device.sm_count = None
        if device.memory_bytes is not None and not 0 <= device.memory_bytes < 2**63:  # BIGINT
            device.memory_bytes = None
    if count:
        parsed.warnings["nul_in_text"] = parsed.warnings.get("nul_in_text", 0) + count
    return parsed
