"""PyTorch Profiler (Kineto) Chrome-trace JSON: a pure parse into typed frames.

Three decoders, fastest first.  The C scanner (``kineto_native.py``) reads the gunzipped text
into Arrow columns in one pass, for the documents whose fields have the plain shapes Kineto
writes, a piece at a time as the file is read (``kineto_stream.py``: memory stays bounded
whatever the trace's size).  Any other document is decoded by msgspec, the reference for what a trace means and
for every error: straight into typed structs, skipping the fields we never read, the file
gunzipped and decoded ~512 KB of events at a time as it is read (``jsonchunks.py``): a chunk's
structs are still in cache when their fields are copied out, a field at a time with
``map(attrgetter(...))``, and neither the whole JSON text (35 MB for 100k events) nor all the
structs ever exist at once.  Whatever that path trips on is decoded whole, the reference way.
Timestamps are kept as the raw JSON number text and converted to integer ns by polars, so the
ns digits of absolute-epoch traces (``1712195495519689.047`` µs, past float64's precision)
survive exactly.

Formats handled (all seen in real traces):
- new: float µs relative to ``baseTimeNanoseconds``; kernel ``External id`` = launching op
- old: integer µs since the epoch; ``External id`` = correlation (we nest by time anyway)
- very old: categories ``Kernel`` / ``Runtime`` / ``Memcpy``, lower-case ``external id``
- ROCm: ``hipLaunchKernel`` runtime events, string streams (``"0x0"``)
- Triton: kernels launched by ``cuLaunchKernel`` (category ``cuda_driver``)
- CPU-only: no GPU events; host ops become the execution units (see attribution)
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, cast

import msgspec
import polars as pl
from isal import isal_zlib

from tracehouse.core.errors import BadTrace
from tracehouse.core.frames import (
    GPU_EVENT_SCHEMA,
    LAUNCH_SCHEMA,
    RANGE_SCHEMA,
    DeviceInfo,
    ParsedTrace,
    conform,
)
from tracehouse.core.limits import INFLATED_CEILING
from tracehouse.ingest import counter_ranges, kineto_stream
from tracehouse.ingest.jsonchunks import ArrayChunks, Unsplittable, file_pieces, inflated_past, prefetched
from tracehouse.ingest.kineto_pieces import GPU_KINDS, LAUNCH_CATS, RANGE_CATS
from tracehouse.ingest.timestamps import start_and_duration_ns

# What a truncated or corrupt gzip raises.  isal's stubs declare its error as an instance
# (``error: Exception``), not the class it is: hence the one cast.
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, cast("type[Exception]", isal_zlib.error))

# Categories we drop, listed only so that they decode without a ``_missing_`` call (below).
_DROPPED_CATS = (
    "ac2g",
    "async_cpu_to_gpu",
    "fwdbwd",
    "Trace",
    "gpu_user_annotation",
    "cuda_profiler_range",
    "cpu_instant_event",
    "overhead",
    "cuda_sync",
    "external_correlation",
    "collective_comm",
)


class _Open(enum.StrEnum):
    """A string enum whose unlisted values decode to ``OTHER``: msgspec hands back a shared
    member instead of a new ``str`` per event (12 MB less for a 100k-event trace).  An unlisted
    value costs a Python call, hence the lists; the ``str`` base (StrEnum) keeps hashing in C."""

    @classmethod
    def _missing_(cls, value: object) -> enum.Enum:
        return cls["OTHER"]


# mypy does not model Enum's functional API called on an Enum subclass, hence the two ignores
# (and the two on _Event's fields, which name these classes as msgspec needs them named).
_Category: type[_Open] = _Open(  # type: ignore[call-arg, assignment]
    "_Category", [(c, c) for c in (*GPU_KINDS, *sorted(LAUNCH_CATS), *RANGE_CATS, *_DROPPED_CATS)] + [("OTHER", "")]
)
_Phase: type[_Open] = _Open("_Phase", [(p, p) for p in "XsfiIMCBEbenPOND"] + [("OTHER", "")])  # type: ignore[call-arg, assignment]
_BUCKET = {
    **{_Category[c]: "gpu" for c in GPU_KINDS},
    **{_Category[c]: "launch" for c in LAUNCH_CATS},
    **{_Category[c]: "range" for c in RANGE_CATS},
}
_GPU_KIND = {_Category[c]: kind for c, kind in GPU_KINDS.items()}
_RANGE_KIND = {_Category[c]: kind for c, kind in RANGE_CATS.items()}
# One shared empty Raw as the default: a default_factory would allocate one per field per event.
_NO_RAW = msgspec.Raw(b"")


# gc=False: these structs never form cycles, and tracking 100k+ of them costs a GC pass.
class _Args(msgspec.Struct, gc=False, frozen=True):
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
    input_dims: msgspec.Raw = msgspec.field(default=_NO_RAW, name="Input Dims")
    concrete_inputs: msgspec.Raw = msgspec.field(default=_NO_RAW, name="Concrete Inputs")
    input_types: msgspec.Raw = msgspec.field(default=_NO_RAW, name="Input type")


_NO_ARGS = _Args()  # frozen, so one instance can stand in for every event without args


class _Event(msgspec.Struct, gc=False):
    ph: _Phase | None = None  # type: ignore[valid-type]
    cat: _Category | None = None  # type: ignore[valid-type]
    name: str = ""
    ts: msgspec.Raw = _NO_RAW
    dur: float | None = None  # µs; small enough that float64 keeps every ns digit
    pid: int | str | None = None
    tid: int | str | None = None
    args: _Args | None = _NO_ARGS  # None only for an explicit "args": null


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
_CHUNK_BYTES = 1 << 19  # JSON text decoded at a time (~1.6k events)
_PIECE_BYTES = 1 << 20  # gunzipped text handed over at a time
_CHUNK = 2048  # events framed at a time after a whole-document decode
_FLUSH = 16384  # events per frame gathered as Python objects before they go into polars


def read_bytes(path: Path, max_inflated_bytes: int = INFLATED_CEILING) -> bytes:
    """The file's JSON bytes, gunzipped when it is gzip (by magic, not by name).  ISA-L
    inflates in about half zlib's time: after the C scanner, gunzip is the biggest step.
    Inflating stops one byte past ``max_inflated_bytes``: a gzip bomb is refused (413), not held."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    members: list[bytes] = []
    room = max_inflated_bytes
    try:
        while data:  # a multi-member gzip (rare) is one member after another
            inflater = isal_zlib.decompressobj(wbits=31)
            members.append(inflater.decompress(data, room + 1))
            room -= len(members[-1])
            if room < 0:
                raise inflated_past(path, max_inflated_bytes)
            if not inflater.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            data = inflater.unused_data
    except GZIP_ERRORS as exc:
        raise BadTrace(f"{path.name}: truncated or corrupt gzip ({exc})") from None
    return members[0] if len(members) == 1 else b"".join(members)


def decode_trace(raw: bytes, label: str, warnings: dict[str, int]) -> _Trace:
    """The whole trace in one decode: the reference for what a trace means, and the path
    that reports what is wrong with a bad one."""
    try:
        return _decode_or_refuse(raw, label)
    except _NotUtf8:
        # Names with stray bytes: keep the trace, replace the bytes, count them.
        text = raw.decode("utf-8", errors="replace")
        warnings["non_utf8_bytes"] = text.count("\ufffd")
        return _decode_or_refuse(text, label)


class _NotUtf8(Exception):
    """The document is not UTF-8; its bytes, not its JSON, are what is wrong."""


def _decode_or_refuse(raw: bytes | str, label: str) -> _Trace:
    try:
        return decode_document(raw)
    except UnicodeDecodeError:
        raise _NotUtf8 from None
    except msgspec.ValidationError as exc:
        raise BadTrace(f"{label}: not a PyTorch Profiler trace ({exc})") from None
    except RecursionError:  # msgspec's limit on nesting, e.g. [[[[...]]]] in an event's args
        raise BadTrace(f"{label}: not valid JSON (nested too deeply)") from None
    except msgspec.DecodeError as exc:
        # msgspec < 0.23 raised UnicodeDecodeError for a stray byte; 0.23 raises DecodeError.
        if isinstance(raw, bytes) and not _is_utf8(raw):
            raise _NotUtf8 from None
        raise BadTrace(f"{label}: not valid JSON ({exc})") from None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_document(raw: bytes | str) -> _Trace:
    """The document as msgspec decodes it (a bare events list as its ``traceEvents``); raises
    msgspec's errors as they are (``decode_trace`` turns them into the user's)."""
    stripped = raw.lstrip()[:1]
    if stripped in ("[", b"["):
        return _Trace(traceEvents=_LIST_DECODER.decode(raw))
    if stripped not in ("{", b"{"):
        raise msgspec.DecodeError("expected a JSON object with traceEvents")
    return _TRACE_DECODER.decode(raw)


# Which decoder reads the events (HTA's ParserBackend habit): "auto" is the C scanner where it
# accepts the document, else the msgspec reference; "native" is the scanner or NativeDeclined;
# "reference" is msgspec only.  Tests pick one to compare them; a user never needs to.
Decoder = Literal["auto", "native", "reference"]
DECODERS: tuple[str, ...] = ("auto", "native", "reference")


class NativeDeclined(BadTrace):
    """``decoder="native"``, and the C scanner declines the document (or is not built)."""


def parse_kineto(path: Path, *, max_inflated_bytes: int = INFLATED_CEILING, decoder: Decoder = "auto") -> ParsedTrace:
    """Parse a ``.json`` / ``.json.gz`` PyTorch Profiler trace into typed frames."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown Kineto decoder {decoder!r}; one of {', '.join(DECODERS)}")
    warnings: dict[str, int] = {}
    decoded = None if decoder == "reference" else _decode_native(path, max_inflated_bytes)  # None: declined
    if decoded is None and decoder == "native":
        raise NativeDeclined(f"{path.name}: the native Kineto decoder declines this document")
    if decoded is None:
        try:
            decoded = _decode_streamed(path, max_inflated_bytes)
        except (Unsplittable, msgspec.MsgspecError, UnicodeDecodeError, zlib.error, RecursionError):
            # Whatever the streamed decode trips on, the one-piece decode decides: it names
            # the error, or replaces stray bytes and counts them, exactly as it always has.
            decoded = _decode_whole(read_bytes(path, max_inflated_bytes), path.name, warnings)
    header, event_count, frames = decoded
    base_ns = header.baseTimeNanoseconds or 0
    parsed = ParsedTrace(
        format="kineto",
        gpu_events=conform(_timed(*frames.pop("gpu"), base_ns, warnings), GPU_EVENT_SCHEMA),
        launches=_launches(_timed(*frames.pop("launch"), base_ns, warnings)),
        ranges=conform(_timed(*frames.pop("range"), base_ns, warnings), RANGE_SCHEMA),
        devices=device_infos(header.deviceProperties or []),
        event_count=event_count,
        warnings=warnings,
    )
    if header.distributedInfo is not None:
        parsed.rank = header.distributedInfo.rank
        parsed.world_size = header.distributedInfo.world_size
    if parsed.gpu_events.is_empty() and (ranges := counter_ranges.read_ranges(read_bytes(path))):
        # A CUPTI range profiler trace: its ranges are the kernels, with counters.
        counter_ranges.attach_ranges(parsed, ranges, base_ns)
    if parsed.gpu_events.is_empty():
        if parsed.ranges.filter(pl.col("cat") == "cpu_op").is_empty():
            raise BadTrace(f"{path.name}: trace has no GPU kernels and no CPU ops")
        parsed.cpu_only = True
    return parsed


_Frames = dict[str, tuple[pl.DataFrame, dict[str, int]]]  # frame and the warnings typing it raised


def _decode_native(path: Path, max_inflated_bytes: int) -> tuple[_Trace, int, _Frames] | None:
    """The trace from the C scanner (``kineto_native``), the file scanned a piece at a time
    (``kineto_stream``): the whole text is never held, so memory does not grow with the
    trace's size.  None where the scanner declines, is not built, or the file does not read
    as one gzip member (the reference path then decides); a trace past ``max_inflated_bytes``
    raises TooLarge as on every path."""
    try:
        streamed = kineto_stream.scan_file(path, max_inflated_bytes)
    except (kineto_stream.Declined, Unsplittable, zlib.error):
        return None
    if streamed is None:
        return None
    try:
        header = decode_document(streamed.header_text)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    return header, streamed.event_count, {k: (df, {}) for k, df in streamed.frames.items()}


def _decode_streamed(path: Path, max_inflated_bytes: int) -> tuple[_Trace, int, _Frames]:
    """The trace's header, event count and columns, decoded a chunk at a time as the file is
    read and gunzipped (on another thread: zlib lets go of the GIL)."""
    frames, count = _new_frames(), 0
    pieces = prefetched(file_pieces(path, _PIECE_BYTES, max_inflated_bytes))
    chunks = ArrayChunks(pieces, b"traceEvents", _decode_events, _CHUNK_BYTES)
    for events in chunks:
        _add_events(frames, events)
        count += len(events)
    return decode_document(chunks.rest), count, _finished(frames)


def _decode_events(text: bytes) -> list[_Event] | None:
    try:
        return _LIST_DECODER.decode(text)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None


def _decode_whole(raw: bytes, label: str, warnings: dict[str, int]) -> tuple[_Trace, int, _Frames]:
    """The same from one decode of the whole text (see ``decode_trace``)."""
    trace = decode_trace(raw, label, warnings)
    events, trace.traceEvents = trace.traceEvents, []
    frames = _new_frames()
    for start in range(0, len(events), _CHUNK):
        _add_events(frames, events[start : start + _CHUNK])
    return trace, len(events), _finished(frames)


class _Columns:
    """One frame's columns, filled a chunk at a time.  Values gather in Python lists and move
    into typed polars columns every ``_FLUSH`` events, so the Python objects of a big trace
    never all exist at once; raw JSON texts are NUL-joined per chunk (see ``_raw_texts``)."""

    def __init__(self, typed: Callable[[_Columns], dict[str, pl.Series]]) -> None:
        self.typed = typed
        self.warnings: dict[str, int] = {}  # from typing; merged into the trace's in frame order
        self.parts: list[pl.DataFrame] = []
        self.values: dict[str, list] = {}
        self.blobs: dict[str, list[bytes]] = {}
        self.split: dict[str, pl.Series] | None = None
        self.n = 0

    def add(self, values: dict[str, list], texts: dict[str, bytes], n: int) -> None:
        for name, column in values.items():
            self.values.setdefault(name, []).extend(column)
        for name, blob in texts.items():
            self.blobs.setdefault(name, []).append(blob)
        self.n += n
        if self.n >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.n or not self.parts:
            self.parts.append(pl.DataFrame(self.typed(self)))
        self.values, self.blobs, self.split, self.n = {}, {}, None, 0

    def texts(self, name: str) -> pl.Series:
        if self.split is None:
            self.split = _raw_texts(self.blobs, self.n)
        return self.split.get(name, pl.Series(dtype=pl.String))

    def frame(self) -> pl.DataFrame:
        self.flush()
        parts, self.parts = self.parts, []
        return pl.concat(parts)


def _finished(frames: dict[str, _Columns]) -> _Frames:
    return {kind: (columns.frame(), columns.warnings) for kind, columns in frames.items()}


def _new_frames() -> dict[str, _Columns]:
    return {"gpu": _Columns(_gpu_typed), "launch": _Columns(_launch_typed), "range": _Columns(_range_typed)}


def _add_events(frames: dict[str, _Columns], events: list[_Event]) -> None:
    """Complete (``ph`` X) events of the categories we use, into their frame's columns."""
    buckets: dict[str, list[_Event]] = {"gpu": [], "launch": [], "range": []}
    appenders: dict[_Open | None, Callable[[_Event], None]] = {
        cat: buckets[kind].append for cat, kind in _BUCKET.items()
    }
    add = appenders.get
    complete = _Phase["X"]
    for e in events:
        if e.ph is complete and (append := add(e.cat)) is not None:
            append(e)
    for kind, part in (("gpu", _gpu_part), ("launch", _launch_part), ("range", _range_part)):
        if bucket := buckets[kind]:
            frames[kind].add(*part(bucket), len(bucket))


def _column(events: list, field: str) -> list:
    return list(map(attrgetter(field), events))


def _args(events: list[_Event]) -> list[_Args]:
    args = _column(events, "args")
    return [a or _NO_ARGS for a in args] if None in args else args


def _joined(items: list, field: str) -> bytes:
    """The raw JSON texts of one field, NUL-separated (NUL cannot occur in JSON text), joined
    in C: msgspec.Raw exposes its bytes, so no per-event ``bytes`` or ``str`` is made."""
    return b"\x00".join(map(attrgetter(field), items))


def _raw_texts(blobs: dict[str, list[bytes]], n: int) -> dict[str, pl.Series]:
    """String columns of ``n`` raw JSON texts each (null where absent), split out of the
    fields' blobs by one polars call."""
    if n == 0:
        return {}
    blob = b"\x00".join(b"\x00".join(parts) for parts in blobs.values())
    texts = pl.select(pl.lit(blob).cast(pl.String).str.split("\x00").explode().replace("", None)).to_series()
    return {name: texts.slice(i * n, n) for i, name in enumerate(blobs)}


def _gpu_part(events: list[_Event]) -> tuple[dict[str, list], dict[str, bytes]]:
    args = _args(events)
    return {
        "kind": list(map(_GPU_KIND.__getitem__, _column(events, "cat"))),
        "name": _column(events, "name"),
        # Kineto puts the device in args; very old traces only in pid.
        "device": [a.device if a.device is not None else _host_id(e.pid) for a, e in zip(args, events, strict=True)],
        "stream": [
            _stream(a.stream) if a.stream is not None else _host_id(e.tid) for a, e in zip(args, events, strict=True)
        ],
        "correlation": _column(args, "correlation"),
        "external_id": [a.external_id if a.external_id is not None else a.external_id_old for a in args],
        "bytes": _column(args, "bytes"),
        **_axes("grid", _column(args, "grid")),
        **_axes("block", _column(args, "block")),
        "dur": _column(events, "dur"),
    }, {"ts": _joined(events, "ts")}


def _axes(dim: str, values: list) -> dict[str, list]:
    """``dim_x`` / ``dim_y`` / ``dim_z`` columns.  Transposed here, a chunk at a time, so the
    decoded ``[x, y, z]`` lists die with their chunk instead of piling up for the collector."""
    xyz = list(zip(*map(_dim3, values), strict=True)) or [(), (), ()]
    return {f"{dim}_{axis}": list(column) for axis, column in zip("xyz", xyz, strict=True)}


def _launch_part(events: list[_Event]) -> tuple[dict[str, list], dict[str, bytes]]:
    return {
        "pid": _column(events, "pid"),
        "tid": _column(events, "tid"),
        "name": _column(events, "name"),
        "correlation": _column(_args(events), "correlation"),
        "dur": _column(events, "dur"),
    }, {"ts": _joined(events, "ts")}


def _range_part(events: list[_Event]) -> tuple[dict[str, list], dict[str, bytes]]:
    args = _args(events)
    return {
        "pid": _column(events, "pid"),
        "tid": _column(events, "tid"),
        "name": _column(events, "name"),
        "cat": list(map(_RANGE_KIND.__getitem__, _column(events, "cat"))),
        "dur": _column(events, "dur"),
    }, {"ts": _joined(events, "ts"), **{f: _joined(args, f) for f in ("input_dims", "concrete_inputs", "input_types")}}


def _gpu_typed(c: _Columns) -> dict[str, pl.Series]:
    v = c.values
    cols = {
        "kind": pl.Series(v.get("kind", []), dtype=pl.String),
        "name": pl.Series(v.get("name", []), dtype=pl.String),
        **{
            name: _int_series(name, v.get(name, []), c.warnings)
            for name in ("device", "stream", "correlation", "external_id", "bytes")
        },
    }
    for axis in "xyz":
        for dim in ("grid", "block"):
            cols[f"{dim}_{axis}"] = _int_series(dim, v.get(f"{dim}_{axis}", []), c.warnings)
    return cols | _raw_times(c)


def _launch_typed(c: _Columns) -> dict[str, pl.Series]:
    v = c.values
    return {
        "pid": _int_series("pid", v.get("pid", []), c.warnings, host=True),
        "tid": _int_series("tid", v.get("tid", []), c.warnings, host=True),
        "correlation": _int_series("correlation", v.get("correlation", []), c.warnings),
        "name": pl.Series(v.get("name", []), dtype=pl.String),
    } | _raw_times(c)


def _range_typed(c: _Columns) -> dict[str, pl.Series]:
    v = c.values
    return {
        "pid": _int_series("pid", v.get("pid", []), c.warnings, host=True),
        "tid": _int_series("tid", v.get("tid", []), c.warnings, host=True),
        "name": pl.Series(v.get("name", []), dtype=pl.String),
        "cat": pl.Series(v.get("cat", []), dtype=pl.String),
        **{col: c.texts(col) for col in ("input_dims", "concrete_inputs", "input_types")},
    } | _raw_times(c)


def _raw_times(c: _Columns) -> dict[str, pl.Series]:  # made start_ns / dur_ns by _timed
    return {"dur": pl.Series(c.values.get("dur", []), dtype=pl.Float64), "ts": c.texts("ts")}


def _timed(df: pl.DataFrame, typing_warnings: dict[str, int], base_ns: int, warnings: dict[str, int]) -> pl.DataFrame:
    """The frame's events with a valid time, ``ts`` / ``dur`` turned into ``start_ns`` /
    ``dur_ns``; its problems are counted in the order the frames are built, as they always were."""
    for key, count in typing_warnings.items():
        warnings[key] = warnings.get(key, 0) + count
    df = df.drop("ts", "dur").hstack(start_and_duration_ns(df["ts"], df["dur"], base_ns))
    valid = df.filter(pl.col("dur_ns").is_not_null() & (pl.col("dur_ns") >= 0) & pl.col("start_ns").is_not_null())
    if bad := df.height - valid.height:
        warnings["missing_or_negative_duration"] = warnings.get("missing_or_negative_duration", 0) + bad
    return valid


def _int_series(name: str, values: list, warnings: dict[str, int], *, host: bool = False) -> pl.Series:
    """Int64 column; values beyond int64 (seen as corrupt ids) become null and are counted.
    ``host``: a pid / tid column, where strings are read by ``_host_id`` (not the common case,
    so it is tried only when the column does not convert as it is)."""
    try:
        return pl.Series(name, values, dtype=pl.Int64)
    except (OverflowError, TypeError, pl.exceptions.PolarsError):
        if host:
            values = [v if type(v) is int else _host_id(v) for v in values]
        clean = [v if isinstance(v, int) and -(2**63) <= v < 2**63 else None for v in values]
        # Only ints out of range count: a pid string such as "Spans" is not a problem.
        if lost := sum(1 for a, b in zip(values, clean, strict=True) if a is not None and b is None):
            warnings["integer_out_of_range"] = warnings.get("integer_out_of_range", 0) + lost
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
    if type(value) is list and len(value) == 3:  # as written: a non-int entry is counted later
        return value
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


def _launches(df: pl.DataFrame) -> pl.DataFrame:
    df = df.filter(pl.col("correlation").is_not_null())
    # A runtime and a driver record can share a correlation id; keep the first (outer) one.
    return conform(df.unique("correlation", keep="first", maintain_order=True), LAUNCH_SCHEMA)


def device_infos(props: list[_Device]) -> list[DeviceInfo]:
    """The trace's ``deviceProperties`` as the store's device rows."""
    out = []
    for p in props:
        cc = f"{p.computeMajor}.{p.computeMinor}" if p.computeMajor is not None else None
        vendor = (
            "amd" if "AMD" in p.name or "Radeon" in p.name or "Instinct" in p.name else ("nvidia" if p.name else None)
        )
        out.append(
            DeviceInfo(
                device=p.id,
                name=p.name,
                memory_bytes=p.totalGlobalMem,
                sm_count=p.numSms,
                compute_capability=cc,
                vendor=vendor,
            )
        )
    return out
