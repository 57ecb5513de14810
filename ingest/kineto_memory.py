"""The profiler's memory events (Kineto ``[memory]`` instants) of a trace, with the annotated
range each happened in, into ``memory_event`` rows.

A separate pass, so the kernel path stays as it is: the C scanner and the msgspec reference
keep only complete (``ph`` X) events and skip these.  The pass runs only where the trace's
header says the profiler recorded memory (``"profile_memory": 1``, which torch writes before
the events array): every other trace costs one read of its first piece.  Where it runs, the
file is read again and its events decoded by msgspec into structs that keep only what a
memory event needs (``args`` left as raw text except on ``[memory]`` events), a chunk at a
time (``jsonchunks``).  Timestamps are converted as the kernel rows' are (``timestamps``),
so both share one exact ns clock.

Attribution: each event is placed, by time, inside the host ranges of its thread
(``nesting.enclosing_ranges``, as kernel launches are); the innermost value of each of our
annotations' keys wins (component, operator, attention type, step), else the operator is that
of the best-ranked enclosing op's rule (``core.rules``), outermost on ties.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import polars as pl

from tracehouse.core import rules
from tracehouse.core.annotation import is_annotation, parse_annotation
from tracehouse.core.limits import INFLATED_CEILING
from tracehouse.ingest.jsonchunks import ArrayChunks, Unsplittable, file_pieces
from tracehouse.ingest.nesting import enclosing_ranges
from tracehouse.ingest.timestamps import us_text_to_ns

MEMORY_NAME = "[memory]"
EVENT_SCHEMA = {
    "ts_ns": pl.Int64,
    "pid": pl.Int64,
    "tid": pl.Int64,
    "device_type": pl.Int64,
    "device_id": pl.Int64,
    "bytes": pl.Int64,
    "total_allocated": pl.Int64,
    "total_reserved": pl.Int64,
    "addr": pl.Int64,
}
KEY_SCHEMA = {
    "component": pl.String,
    "operator": pl.String,
    "attention_type": pl.String,
    "step": pl.Int64,
    "cpu_op": pl.String,
}
_HEADER_BYTES = 1 << 20  # the header precedes the events array; this is far more than it takes
_FLAG = re.compile(rb'"profile_memory"[ \t\n\r]*:[ \t\n\r]*(?:true|[1-9])')
_EVENTS_KEY = re.compile(rb'"traceEvents"[ \t\n\r]*:')
CHUNK_BYTES = 1 << 19  # JSON text decoded at a time; tests cut smaller
_PIECE_BYTES = 1 << 20
_NO_RAW = msgspec.Raw(b"")


class _Args(msgspec.Struct, gc=False):
    total_allocated: int | None = msgspec.field(default=None, name="Total Allocated")
    total_reserved: int | None = msgspec.field(default=None, name="Total Reserved")
    bytes: int | None = msgspec.field(default=None, name="Bytes")
    addr: int | None = msgspec.field(default=None, name="Addr")
    device_type: int | None = msgspec.field(default=None, name="Device Type")
    device_id: int | None = msgspec.field(default=None, name="Device Id")


class _Event(msgspec.Struct, gc=False):
    name: str = ""
    ts: msgspec.Raw = _NO_RAW
    pid: int | str | None = None
    tid: int | str | None = None
    args: msgspec.Raw = _NO_RAW  # decoded only for memory events


class _Header(msgspec.Struct):
    baseTimeNanoseconds: int | None = None


_EVENTS = msgspec.json.Decoder(list[_Event])
_ARGS = msgspec.json.Decoder(_Args)
_HEADER = msgspec.json.Decoder(_Header)


def records_memory(path: Path, max_inflated_bytes: int = INFLATED_CEILING) -> bool:
    """Whether the trace's header, before its events array, says the profiler recorded memory."""
    head = b""
    try:
        for piece in file_pieces(path, 1 << 16, max_inflated_bytes):
            head += piece
            if (events := _EVENTS_KEY.search(head)) is not None:
                return _FLAG.search(head, 0, events.start()) is not None
            if len(head) > _HEADER_BYTES:
                return False
    except (zlib.error, Unsplittable):
        return False
    return False


def read_memory_events(path: Path, max_inflated_bytes: int = INFLATED_CEILING) -> tuple[pl.DataFrame, int]:
    """The trace's memory events (``EVENT_SCHEMA``, in file order) and how many were left out
    as unreadable (an args field of another type, no timestamp).  Empty when the header does not
    say memory was recorded."""
    empty = pl.DataFrame(schema=EVENT_SCHEMA)
    chunks = MemoryChunks(path, max_inflated_bytes)
    frames = [empty, *chunks]
    if chunks.failed:
        return empty, 0
    return pl.concat(frames).with_columns(pl.col("ts_ns") + chunks.base), chunks.unreadable


class MemoryChunks:
    """The trace's readable memory events a chunk of text at a time (``EVENT_SCHEMA``, time
    relative to the trace's base; none where the header does not say memory was recorded).
    Once every chunk is read: ``base``, the trace's base time, and ``unreadable``, how many
    events were left out; ``failed`` where the text tripped the pass (the kernel path read the
    trace, so what was read is dropped: this pass only adds what it can).  Each iteration reads
    the file again and starts these afresh."""

    def __init__(self, path: Path, max_inflated_bytes: int = INFLATED_CEILING) -> None:
        self.path, self.max_inflated_bytes = path, max_inflated_bytes
        self.base = self.unreadable = 0
        self.failed = False

    def __iter__(self) -> Iterator[pl.DataFrame]:
        self.base = self.unreadable = 0
        self.failed = False
        if not records_memory(self.path, self.max_inflated_bytes):
            return
        # A chunk's events become columns before the next chunk is read: a trace's memory
        # events are never held as Python rows.
        pieces = file_pieces(self.path, _PIECE_BYTES, self.max_inflated_bytes)
        chunks = ArrayChunks(pieces, b"traceEvents", _decode, CHUNK_BYTES)
        try:
            for frame in map(_memory_frame, chunks):
                if frame is None:
                    continue
                readable = frame.filter(pl.col("ts_ns").is_not_null() & pl.col("bytes").is_not_null())
                self.unreadable += frame.height - readable.height
                if readable.height:
                    yield readable
            self.base = _HEADER.decode(chunks.rest).baseTimeNanoseconds or 0
        except (Unsplittable, msgspec.MsgspecError, zlib.error, RecursionError, UnicodeDecodeError):
            self.failed = True


def _memory_frame(events: list[_Event]) -> pl.DataFrame | None:
    """A chunk's memory events (``EVENT_SCHEMA``, time relative to the trace's base); None: none."""
    rows: list[tuple] = []
    texts: list[bytes] = []
    _collect(events, rows, texts)
    if not rows:
        return None
    # Every column's type given: one inferred from the first rows fails on a later row that
    # has a field those lacked (an Addr, a Total Reserved).
    frame = pl.DataFrame(rows, schema=dict(list(EVENT_SCHEMA.items())[1:]), orient="row")
    ts = us_text_to_ns(pl.Series(texts, dtype=pl.Binary).cast(pl.String))
    return frame.insert_column(0, ts.alias("ts_ns")).cast(EVENT_SCHEMA)  # type: ignore[arg-type]


def _decode(text: bytes) -> list | None:
    try:
        return _EVENTS.decode(text)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None


def _collect(events: list[_Event], rows: list[tuple], texts: list[bytes]) -> None:
    for e in events:
        if e.name != MEMORY_NAME:
            continue
        try:
            a = _ARGS.decode(e.args) if e.args else _Args()
        except msgspec.MsgspecError:
            a = _Args(bytes=None)  # counted as unreadable
        texts.append(bytes(e.ts) or b"null")
        rows.append(
            (
                _int(e.pid),
                _int(e.tid),
                a.device_type if a.device_type is not None else 0,
                a.device_id if a.device_id is not None else -1,
                a.bytes,
                a.total_allocated,
                a.total_reserved,
                a.addr,
            )
        )


def _int(value: int | str | None) -> int | None:
    if isinstance(value, str):
        return int(value) if value.isdigit() else None
    return value


def attribute_memory(events: pl.DataFrame, ranges: pl.DataFrame) -> pl.DataFrame:
    """``events`` in time order (file order on ties) with ``seq`` and the keys of the ranges
    enclosing each on its thread (``KEY_SCHEMA``); ``ranges``: the parse's host ranges."""
    return attributed(in_time_order(events), ranges)


def in_time_order(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` sorted by time (file order on ties), numbered by ``seq`` in that order."""
    events = events.with_row_index("file_order").sort("ts_ns", "file_order").drop("file_order")
    return events.with_row_index("seq").with_columns(pl.col("seq").cast(pl.Int64))


def attributed(events: pl.DataFrame, ranges: pl.DataFrame) -> pl.DataFrame:
    """``events`` (numbered by :func:`in_time_order`) with the keys of the ranges enclosing each
    on its thread (``KEY_SCHEMA``).  ``ranges`` may be only those that reach the events' time
    span (a big trace's window): the ranges enclosing an event are among them."""
    if events.is_empty() or ranges.is_empty():
        return events.with_columns(pl.lit(None, dtype).alias(c) for c, dtype in KEY_SCHEMA.items())
    ranges = _range_keys(ranges.with_row_index("range_idx"))
    queries = events.select(query_idx=pl.col("seq").cast(pl.UInt32), pid="pid", tid="tid", t_ns="ts_ns")
    chain = enclosing_ranges(ranges.select("range_idx", "pid", "tid", "start_ns", "dur_ns"), queries.drop_nulls())
    keyed = chain.join(ranges.drop("pid", "tid", "start_ns", "dur_ns"), on="range_idx", maintain_order="left")
    innermost = [
        pl.col(c).drop_nulls().last().alias(c) for c in ("component", "ann_operator", "attention_type", "step")
    ]
    best_op = (
        pl.col("op_operator").sort_by(pl.col("op_priority").fill_null(-1), descending=True, maintain_order=True).first()
    )
    per = keyed.group_by("query_idx").agg(
        *innermost,
        best_op=best_op,
        cpu_op=pl.col("name").filter(pl.col("cat") == "cpu_op").first(),
    )
    per = per.select(
        seq=pl.col("query_idx").cast(pl.Int64),
        component="component",
        operator=pl.coalesce("ann_operator", "best_op"),
        attention_type="attention_type",
        step="step",
        cpu_op="cpu_op",
    )
    return events.join(per, on="seq", how="left", maintain_order="left").cast(KEY_SCHEMA)  # type: ignore[arg-type]


def _range_keys(ranges: pl.DataFrame) -> pl.DataFrame:
    """Per range: its annotation keys (ours only) and, for cpu ops, the op rule's operator."""
    names = ranges.select(pl.col("name").unique()).to_series()
    parsed = {n: parse_annotation(n) for n in names.to_list() if n is not None and is_annotation(n)}
    table = pl.DataFrame(
        {
            "name": list(parsed),
            "component": [a.component if a else None for a in parsed.values()],
            "ann_operator": [a.operator if a else None for a in parsed.values()],
            "attention_type": [a.attention_type if a else None for a in parsed.values()],
            "step": [a.step if a else None for a in parsed.values()],
        },
        schema={
            "name": pl.String,
            "component": pl.String,
            "ann_operator": pl.String,
            "attention_type": pl.String,
            "step": pl.Int64,
        },
    )
    ops = rules.op_rule_columns(pl.col("name"))
    return (
        ranges.select("range_idx", "pid", "tid", "start_ns", "dur_ns", "name", "cat")
        .join(table, on="name", how="left", maintain_order="left")
        .with_columns(
            op_operator=pl.when(pl.col("cat") == "cpu_op").then(ops["op_operator"]),
            op_priority=pl.when(pl.col("cat") == "cpu_op").then(ops["op_priority"]),
        )
    )


def memory_rows(path: Path, ranges: pl.DataFrame, max_inflated_bytes: int = INFLATED_CEILING) -> pl.DataFrame:
    """The trace's memory events, attributed, ready for ``Writer.insert_memory`` (empty: none)."""
    events, _ = read_memory_events(path, max_inflated_bytes)
    return attribute_memory(events, ranges)
