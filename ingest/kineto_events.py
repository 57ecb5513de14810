"""Kineto events as msgspec decodes them, and their gpu / launch / range columns: the reference
decoder of ``kineto.py``.

The structs name only the fields we read (msgspec skips the rest), with string enums for the
category and phase so that a trace's 100k events share a few members instead of a ``str``
each.  ``add_events`` sorts a chunk's complete events into their frame's columns, a field at a
time with ``map(attrgetter(...))``; timestamps stay raw JSON text until polars converts them
(``kineto._timed``), so the ns digits of absolute-epoch traces survive exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
import polars as pl

from tracehouse.ingest.kineto_pieces import GPU_KINDS, LAUNCH_CATS, RANGE_CATS

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
# (and the two on Event's fields, which name these classes as msgspec needs them named).
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


class Event(msgspec.Struct, gc=False):
    ph: _Phase | None = None  # type: ignore[valid-type]
    cat: _Category | None = None  # type: ignore[valid-type]
    name: str = ""
    ts: msgspec.Raw = _NO_RAW
    dur: float | None = None  # µs; small enough that float64 keeps every ns digit
    pid: int | str | None = None
    tid: int | str | None = None
    args: _Args | None = _NO_ARGS  # None only for an explicit "args": null


class Device(msgspec.Struct, gc=False):
    id: int = 0
    name: str = ""
    totalGlobalMem: int | None = None
    computeMajor: int | None = None
    computeMinor: int | None = None
    numSms: int | None = None


class _Distributed(msgspec.Struct, gc=False):
    rank: int | None = None
    world_size: int | None = None


class Trace(msgspec.Struct, gc=False):
    traceEvents: list[Event]
    baseTimeNanoseconds: int | None = None
    deviceProperties: list[Device] | None = None
    distributedInfo: _Distributed | None = None


_TRACE_DECODER = msgspec.json.Decoder(Trace)
_LIST_DECODER = msgspec.json.Decoder(list[Event])
_FLUSH = 16384  # events per frame gathered as Python objects before they go into polars


def decode_document(raw: bytes | str) -> Trace:
    """The document as msgspec decodes it (a bare events list as its ``traceEvents``); raises
    msgspec's errors as they are (``decode_trace`` turns them into the user's)."""
    stripped = raw.lstrip()[:1]
    if stripped in ("[", b"["):
        return Trace(traceEvents=_LIST_DECODER.decode(raw))
    if stripped not in ("{", b"{"):
        raise msgspec.DecodeError("expected a JSON object with traceEvents")
    return _TRACE_DECODER.decode(raw)


def decode_events(text: bytes) -> list[Event] | None:
    """A chunk of the events array (``jsonchunks.ArrayChunks``); None where it does not decode."""
    try:
        return _LIST_DECODER.decode(text)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None


Frames = dict[str, tuple[pl.DataFrame, dict[str, int]]]  # frame and the warnings typing it raised


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


def finished(frames: dict[str, _Columns]) -> Frames:
    """Each frame whole, with the warnings its typing raised."""
    return {kind: (columns.frame(), columns.warnings) for kind, columns in frames.items()}


def new_frames() -> dict[str, _Columns]:
    """Empty gpu / launch / range columns for :func:`add_events` to fill."""
    return {"gpu": _Columns(_gpu_typed), "launch": _Columns(_launch_typed), "range": _Columns(_range_typed)}


def add_events(frames: dict[str, _Columns], events: list[Event]) -> None:
    """Complete (``ph`` X) events of the categories we use, into their frame's columns."""
    buckets: dict[str, list[Event]] = {"gpu": [], "launch": [], "range": []}
    appenders: dict[_Open | None, Callable[[Event], None]] = {
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


def _args(events: list[Event]) -> list[_Args]:
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


def _gpu_part(events: list[Event]) -> tuple[dict[str, list], dict[str, bytes]]:
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


def _launch_part(events: list[Event]) -> tuple[dict[str, list], dict[str, bytes]]:
    return {
        "pid": _column(events, "pid"),
        "tid": _column(events, "tid"),
        "name": _column(events, "name"),
        "correlation": _column(_args(events), "correlation"),
        "dur": _column(events, "dur"),
    }, {"ts": _joined(events, "ts")}


def _range_part(events: list[Event]) -> tuple[dict[str, list], dict[str, bytes]]:
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


def _raw_times(c: _Columns) -> dict[str, pl.Series]:  # made start_ns / dur_ns by kineto._timed
    return {"dur": pl.Series(c.values.get("dur", []), dtype=pl.Float64), "ts": c.texts("ts")}


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
