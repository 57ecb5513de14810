"""PyTorch Profiler (Kineto) Chrome-trace JSON: a pure parse into typed frames.

Three decoders, fastest first. The C scanner (``kineto_native.py``) reads the gunzipped text
into Arrow columns in one pass, for the documents whose fields have the plain shapes Kineto
writes, a piece at a time as the file is read (``kineto_stream.py``: memory stays bounded
whatever the trace's size). Any other document is decoded by msgspec (``kineto_events.py``),
the reference for what a trace means and for every error: straight into typed structs, skipping
the fields we never read, the file gunzipped and decoded ~512 KB of events at a time as it is
read (``jsonchunks.py``): a chunk's structs are still in cache when their fields are copied
out, a field at a time with ``map(attrgetter(...))``, and neither the whole JSON text (35 MB
for 100k events) nor all the structs ever exist at once. Whatever that path trips on is decoded
whole, the reference way. Timestamps are kept as the raw JSON number text and converted to
integer ns by polars, so the ns digits of absolute-epoch traces (``1712195495519689.047`` µs,
past float64's precision) survive exactly.

Formats handled (all seen in real traces):
- new: float µs relative to ``baseTimeNanoseconds``; kernel ``External id`` = launching op
- old: integer µs since the epoch; ``External id`` = correlation (we nest by time anyway)
- very old: categories ``Kernel`` / ``Runtime`` / ``Memcpy``, lower-case ``external id``
- ROCm: ``hipLaunchKernel`` runtime events, string streams (``"0x0"``)
- Triton: kernels launched by ``cuLaunchKernel`` (category ``cuda_driver``)
- CPU-only: no GPU events; host ops become the execution units (see attribution)
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal, cast

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
from tracehouse.ingest.kineto_events import (
    Device,
    Frames,
    Trace,
    add_events,
    decode_document,
    decode_events,
    finished,
    new_frames,
)
from tracehouse.ingest.timestamps import start_and_duration_ns

# What a truncated or corrupt gzip raises.  isal's stubs declare its error as an instance
# (``error: Exception``), not the class it is: hence the one cast.
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, cast("type[Exception]", isal_zlib.error))

CHUNK_BYTES = 1 << 19  # JSON text decoded at a time (~1.6k events); tests cut smaller
_PIECE_BYTES = 1 << 20  # gunzipped text handed over at a time
_CHUNK = 2048  # events framed at a time after a whole-document decode


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


def decode_trace(raw: bytes, label: str, warnings: dict[str, int]) -> Trace:
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


def _decode_or_refuse(raw: bytes | str, label: str) -> Trace:
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


# Which decoder reads the events (HTA's ParserBackend habit): "auto" is the C scanner where it
# accepts the document, else the msgspec reference; "native" is the scanner or NativeDeclined;
# "reference" is msgspec only: decoded a chunk at a time ("streamed"), or where the chunks
# cannot be cut or decoded, in one piece ("whole"), which names the error.  Tests pick one to
# compare them; a user never needs to.
Decoder = Literal["auto", "native", "reference", "streamed", "whole"]
DECODERS: tuple[str, ...] = ("auto", "native", "reference", "streamed", "whole")
# What the streamed decode trips on, and leaves to the whole decode to decide.
_STREAM_ERRORS = (Unsplittable, msgspec.MsgspecError, UnicodeDecodeError, zlib.error, RecursionError)


class NativeDeclined(BadTrace):
    """``decoder="native"``, and the C scanner declines the document (or is not built)."""


class StreamDeclined(BadTrace):
    """``decoder="streamed"``, and the document cannot be decoded a chunk at a time."""


def parse_kineto(path: Path, *, max_inflated_bytes: int = INFLATED_CEILING, decoder: Decoder = "auto") -> ParsedTrace:
    """Parse a ``.json`` / ``.json.gz`` PyTorch Profiler trace into typed frames."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown Kineto decoder {decoder!r}; one of {', '.join(DECODERS)}")
    warnings: dict[str, int] = {}
    header, event_count, frames = _decoded(path, max_inflated_bytes, decoder, warnings)
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


def _decoded(
    path: Path, max_inflated_bytes: int, decoder: Decoder, warnings: dict[str, int]
) -> tuple[Trace, int, Frames]:
    """The header, event count and columns, by the decoder asked for (see ``Decoder``)."""
    if decoder in ("auto", "native") and (native := _decode_native(path, max_inflated_bytes)) is not None:
        return native
    if decoder == "native":
        raise NativeDeclined(f"{path.name}: the native Kineto decoder declines this document")
    if decoder != "whole":
        try:
            return _decode_streamed(path, max_inflated_bytes)
        except _STREAM_ERRORS as exc:
            if decoder == "streamed":
                raise StreamDeclined(f"{path.name}: the streamed decode declines it ({type(exc).__name__})") from exc
    # Whatever the streamed decode trips on, the one-piece decode decides: it names the
    # error, or replaces stray bytes and counts them, exactly as it always has.
    return _decode_whole(read_bytes(path, max_inflated_bytes), path.name, warnings)


def _decode_native(path: Path, max_inflated_bytes: int) -> tuple[Trace, int, Frames] | None:
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


def _decode_streamed(path: Path, max_inflated_bytes: int) -> tuple[Trace, int, Frames]:
    """The trace's header, event count and columns, decoded a chunk at a time as the file is
    read and gunzipped (on another thread: zlib lets go of the GIL)."""
    frames, count = new_frames(), 0
    pieces = prefetched(file_pieces(path, _PIECE_BYTES, max_inflated_bytes))
    chunks = ArrayChunks(pieces, b"traceEvents", decode_events, CHUNK_BYTES)
    for events in chunks:
        add_events(frames, events)
        count += len(events)
    return decode_document(chunks.rest), count, finished(frames)


def _decode_whole(raw: bytes, label: str, warnings: dict[str, int]) -> tuple[Trace, int, Frames]:
    """The same from one decode of the whole text (see ``decode_trace``)."""
    trace = decode_trace(raw, label, warnings)
    events, trace.traceEvents = trace.traceEvents, []
    frames = new_frames()
    for start in range(0, len(events), _CHUNK):
        add_events(frames, events[start : start + _CHUNK])
    return trace, len(events), finished(frames)


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


def _launches(df: pl.DataFrame) -> pl.DataFrame:
    df = df.filter(pl.col("correlation").is_not_null())
    # A runtime and a driver record can share a correlation id; keep the first (outer) one.
    return conform(df.unique("correlation", keep="first", maintain_order=True), LAUNCH_SCHEMA)


def device_infos(props: list[Device]) -> list[DeviceInfo]:
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
