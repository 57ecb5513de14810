"""PyTorch Profiler (Kineto) Chrome-trace JSON: a pure parse into typed frames.

msgspec decodes straight into typed structs, skipping the fields we never read, which is
several times faster and leaner than building dicts.  Timestamps are kept as the raw JSON
number text and split into integer µs and ns digits by polars, so the ns digits of
absolute-epoch traces (``1712195495519689.047`` µs, past float64's precision) survive exactly.

Formats handled (all seen in real traces):
- new: float µs relative to ``baseTimeNanoseconds``; kernel ``External id`` = launching op
- old: integer µs since the epoch; ``External id`` = correlation (we nest by time anyway)
- very old: categories ``Kernel`` / ``Runtime`` / ``Memcpy``, lower-case ``external id``
- ROCm: ``hipLaunchKernel`` runtime events, string streams (``"0x0"``)
- Triton: kernels launched by ``cuLaunchKernel`` (category ``cuda_driver``)
- CPU-only: no GPU events; host ops become the execution units (see attribution)
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from tracehouse.core.errors import BadTrace
from tracehouse.ingest.frames import (
    GPU_EVENT_SCHEMA, LAUNCH_SCHEMA, RANGE_SCHEMA, DeviceInfo, ParsedTrace, conform,
)

GPU_KINDS = {
    "kernel": "kernel", "Kernel": "kernel",
    "gpu_memcpy": "memcpy", "Memcpy": "memcpy",
    "gpu_memset": "memset", "Memset": "memset",
}
LAUNCH_CATS = frozenset({"cuda_runtime", "Runtime", "cuda_driver", "hip_runtime"})
RANGE_CATS = {
    "cpu_op": "cpu_op", "Operator": "cpu_op",
    "user_annotation": "annotation",
    "python_function": "python",
}


# gc=False: these structs never form cycles, and tracking 100k+ of them costs a GC pass.
class _Args(msgspec.Struct, gc=False):
    external_id: int | None = msgspec.field(default=None, name="External id")
    external_id_old: int | None = msgspec.field(default=None, name="external id")
    correlation: int | None = None
    device: int | None = None
    stream: int | str | None = None
    # Usually [x, y, z]; Triton traces write the string "[1, 1, 1]": decoded leniently.
    grid: Any = None
    block: Any = None
    bytes: int | None = None
    # Kept as raw JSON text (Raw cannot sit in a union; empty means absent).
    input_dims: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="Input Dims")
    concrete_inputs: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="Concrete Inputs")
    input_types: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="Input type")


class _Event(msgspec.Struct, gc=False):
    ph: str | None = None
    cat: str | None = None
    name: str = ""
    ts: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    dur: float | None = None  # µs; small enough that float64 keeps every ns digit
    pid: int | str | None = None
    tid: int | str | None = None
    args: _Args | None = None


class _Device(msgspec.Struct, gc=False):
    id: int = 0
    name: str = ""
    totalGlobalMem: int | None = None
    computeMajor: int | None = None
    computeMinor: int | None = None
    numSms: int | None = None


class _Distributed(msgspec.Struct, gc=False):
    rank: int | None = None
    world_size: int | None = None


class _Trace(msgspec.Struct, gc=False):
    traceEvents: list[_Event]
    baseTimeNanoseconds: int | None = None
    deviceProperties: list[_Device] | None = None
    distributedInfo: _Distributed | None = None


_TRACE_DECODER = msgspec.json.Decoder(_Trace)
_LIST_DECODER = msgspec.json.Decoder(list[_Event])


def read_bytes(path: Path) -> bytes:
    """The file's JSON bytes, gunzipped when it is gzip (by magic, not by name)."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    # The gzip trailer holds the size mod 2**32: decompressing into a buffer of that size
    # avoids gzip.decompress's grow-and-join, which briefly holds the JSON twice.
    size_hint = int.from_bytes(data[-4:], "little")
    try:
        raw = zlib.decompress(data, wbits=47, bufsize=max(size_hint, 1 << 16))
        if len(raw) % 2**32 != size_hint:  # a multi-member gzip: rare, let the stdlib do it
            raw = gzip.decompress(data)
        return raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BadTrace(f"{path.name}: truncated or corrupt gzip ({exc})") from None


def decode_trace(raw: bytes, label: str, warnings: dict[str, int]) -> _Trace:
    try:
        return _decode(raw)
    except UnicodeDecodeError:
        # Names with stray bytes: keep the trace, replace the bytes, count them.
        text = raw.decode("utf-8", errors="replace")
        warnings["non_utf8_bytes"] = text.count("\ufffd")
        return _decode(text)
    except msgspec.ValidationError as exc:
        raise BadTrace(f"{label}: not a PyTorch Profiler trace ({exc})") from None
    except msgspec.DecodeError as exc:
        raise BadTrace(f"{label}: not valid JSON ({exc})") from None


def _decode(raw: bytes | str) -> _Trace:
    stripped = raw.lstrip()[:1]
    if stripped in ("[", b"["):
        return _Trace(traceEvents=_LIST_DECODER.decode(raw))
    if stripped not in ("{", b"{"):
        raise msgspec.DecodeError("expected a JSON object with traceEvents")
    return _TRACE_DECODER.decode(raw)


def parse_kineto(path: Path) -> ParsedTrace:
    """Parse a ``.json`` / ``.json.gz`` PyTorch Profiler trace into typed frames."""
    warnings: dict[str, int] = {}
    trace = decode_trace(read_bytes(path), path.name, warnings)
    base_ns = trace.baseTimeNanoseconds or 0
    event_count = len(trace.traceEvents)
    # Bucket, then drop the full list and each bucket once framed: the structs are freed as
    # soon as their columns exist, which keeps peak memory near one copy of the trace.
    buckets: dict[str, list[_Event]] = {"gpu": [], "launch": [], "range": []}
    for e in trace.traceEvents:
        if e.ph == "X" and e.cat is not None:
            kind = "gpu" if e.cat in GPU_KINDS else "launch" if e.cat in LAUNCH_CATS else \
                "range" if e.cat in RANGE_CATS else None
            if kind:
                buckets[kind].append(e)
    trace.traceEvents = []
    gpu_events = _gpu_frame(buckets.pop("gpu"), base_ns, warnings)
    launches = _launch_frame(buckets.pop("launch"), base_ns, warnings)
    ranges = _range_frame(buckets.pop("range"), base_ns, warnings)
    parsed = ParsedTrace(
        format="kineto", gpu_events=gpu_events, launches=launches, ranges=ranges,
        devices=_devices(trace.deviceProperties or []), event_count=event_count, warnings=warnings,
    )
    if trace.distributedInfo is not None:
        parsed.rank = trace.distributedInfo.rank
        parsed.world_size = trace.distributedInfo.world_size
    if parsed.gpu_events.is_empty():
        if parsed.ranges.filter(pl.col("cat") == "cpu_op").is_empty():
            raise BadTrace(f"{path.name}: trace has no GPU kernels and no CPU ops")
        parsed.cpu_only = True
    return parsed


def _times(events: list[_Event], base_ns: int, warnings: dict[str, int]) -> pl.DataFrame:
    """Start and duration in integer ns; events with a missing or negative duration are dropped."""
    text = pl.Series("ts", [bytes(e.ts) for e in events], dtype=pl.Binary).cast(pl.String, strict=False)
    dur = pl.Series("dur", [e.dur for e in events], dtype=pl.Float64)
    df = pl.DataFrame([text, dur]).select(
        start_ns=_us_text_to_ns(pl.col("ts")) + base_ns,
        dur_ns=(pl.col("dur") * 1000).round(0).cast(pl.Int64, strict=False),
    )
    bad = df.select(((pl.col("dur_ns") < 0) | pl.col("dur_ns").is_null() | pl.col("start_ns").is_null()).sum()).item()
    if bad:
        warnings["missing_or_negative_duration"] = warnings.get("missing_or_negative_duration", 0) + bad
    return df


def _us_text_to_ns(text: pl.Expr) -> pl.Expr:
    """JSON number text in µs → integer ns, exactly: integer part × 1000 + the first three
    decimals.  Exponent notation (never seen from Kineto) goes through float64."""
    body = text.str.strip_prefix("-")
    whole = body.str.extract(r"^(\d+)(?:\.\d*)?$").cast(pl.Int64, strict=False)
    frac = body.str.extract(r"^\d+\.(\d{1,3})").str.pad_end(3, "0").cast(pl.Int64, strict=False).fill_null(0)
    approx = (body.cast(pl.Float64, strict=False) * 1000).round(0).cast(pl.Int64, strict=False)
    magnitude = pl.when(whole.is_not_null()).then(whole * 1000 + frac).otherwise(approx)
    return pl.when(text.str.starts_with("-")).then(-magnitude).otherwise(magnitude)


def _int_series(name: str, values: list, warnings: dict[str, int]) -> pl.Series:
    """Int64 column; values beyond int64 (seen as corrupt ids) become null and are counted."""
    try:
        return pl.Series(name, values, dtype=pl.Int64)
    except (OverflowError, TypeError, pl.exceptions.PolarsError):
        clean = [v if isinstance(v, int) and -(2**63) <= v < 2**63 else None for v in values]
        warnings["integer_out_of_range"] = warnings.get("integer_out_of_range", 0) + sum(
            1 for a, b in zip(values, clean) if a is not None and b is None)
        return pl.Series(name, clean, dtype=pl.Int64)


def _stream(value: int | str | None) -> int | None:
    if isinstance(value, str):
        try:
            return int(value, 0)  # ROCm writes "0x0"
        except ValueError:
            return None
    return value


_NO_DIM3 = (None, None, None)


def _dim3(value: Any) -> tuple | list:
    if isinstance(value, str):  # "[1, 1, 1]"
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            return _NO_DIM3
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value):
        return value
    return _NO_DIM3


def _host_id(value: int | str | None) -> int | None:
    if isinstance(value, str):
        return int(value) if value.isdigit() else None
    return value


def _valid(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("dur_ns").is_not_null() & (pl.col("dur_ns") >= 0) & pl.col("start_ns").is_not_null())


def _gpu_frame(events: list[_Event], base_ns: int, warnings: dict[str, int]) -> pl.DataFrame:
    args = [e.args or _Args() for e in events]
    grid = [a.grid if type(a.grid) is list and len(a.grid) == 3 else _dim3(a.grid) for a in args]
    block = [a.block if type(a.block) is list and len(a.block) == 3 else _dim3(a.block) for a in args]
    cols = {
        "kind": pl.Series([GPU_KINDS[e.cat] for e in events], dtype=pl.String),  # type: ignore[index]
        "name": pl.Series([e.name for e in events], dtype=pl.String),
        # Kineto puts the device in args; very old traces only in pid.
        "device": _int_series("device", [a.device if a.device is not None else _host_id(e.pid)
                                         for a, e in zip(args, events)], warnings),
        "stream": _int_series("stream", [_stream(a.stream) if a.stream is not None else _host_id(e.tid)
                                         for a, e in zip(args, events)], warnings),
        "correlation": _int_series("correlation", [a.correlation for a in args], warnings),
        "external_id": _int_series("external_id", [a.external_id if a.external_id is not None
                                                   else a.external_id_old for a in args], warnings),
        "bytes": _int_series("bytes", [a.bytes for a in args], warnings),
    }
    for axis, i in (("x", 0), ("y", 1), ("z", 2)):
        cols[f"grid_{axis}"] = _int_series("g", [g[i] for g in grid], warnings)
        cols[f"block_{axis}"] = _int_series("b", [b[i] for b in block], warnings)
    df = pl.DataFrame(cols).hstack(_times(events, base_ns, warnings))
    return conform(_valid(df), GPU_EVENT_SCHEMA)


def _launch_frame(events: list[_Event], base_ns: int, warnings: dict[str, int]) -> pl.DataFrame:
    df = pl.DataFrame({
        "pid": _int_series("pid", [e.pid if type(e.pid) is int else _host_id(e.pid) for e in events], warnings),
        "tid": _int_series("tid", [e.tid if type(e.tid) is int else _host_id(e.tid) for e in events], warnings),
        "correlation": _int_series("correlation", [e.args.correlation if e.args else None for e in events], warnings),
        "name": pl.Series([e.name for e in events], dtype=pl.String),
    }).hstack(_times(events, base_ns, warnings))
    df = _valid(df).filter(pl.col("correlation").is_not_null())
    # A runtime and a driver record can share a correlation id; keep the first (outer) one.
    return conform(df.unique("correlation", keep="first", maintain_order=True), LAUNCH_SCHEMA)


def _range_frame(events: list[_Event], base_ns: int, warnings: dict[str, int]) -> pl.DataFrame:
    args = [e.args for e in events]
    df = pl.DataFrame({
        "pid": _int_series("pid", [e.pid if type(e.pid) is int else _host_id(e.pid) for e in events], warnings),
        "tid": _int_series("tid", [e.tid if type(e.tid) is int else _host_id(e.tid) for e in events], warnings),
        "name": pl.Series([e.name for e in events], dtype=pl.String),
        "cat": pl.Series([RANGE_CATS[e.cat] for e in events], dtype=pl.String),  # type: ignore[index]
        **{col: pl.Series([_raw_text(getattr(a, col)) if a else None for a in args], dtype=pl.String)
           for col in ("input_dims", "concrete_inputs", "input_types")},
    }).hstack(_times(events, base_ns, warnings))
    return conform(_valid(df), RANGE_SCHEMA)


def _raw_text(raw: msgspec.Raw) -> str | None:
    return bytes(raw).decode() if raw else None


def _devices(props: list[_Device]) -> list[DeviceInfo]:
    out = []
    for p in props:
        cc = f"{p.computeMajor}.{p.computeMinor}" if p.computeMajor is not None else None
        vendor = "amd" if "AMD" in p.name or "Radeon" in p.name or "Instinct" in p.name else (
            "nvidia" if p.name else None)
        out.append(DeviceInfo(device=p.id, name=p.name, memory_bytes=p.totalGlobalMem,
                              sm_count=p.numSms, compute_capability=cc, vendor=vendor))
    return out
