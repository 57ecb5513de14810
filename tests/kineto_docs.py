"""Kineto documents for the decode tests: events built to fool a decoder that cuts or scans
the events array (``}, {`` inside strings and nested arrays of objects, the events array not
last, a fake key in a string), the serialisations they are written in, and the comparison of
two parses."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from tracehouse.core.frames import ParsedTrace
from tracehouse.ingest import kineto, kineto_stream

NAMES = ["aten::mm", "x}, {y", "a}]b", '}, {"ph": "X"}', "k}  ,\n {", '\\"}, {', "plain"]


def assert_same_parse(a: ParsedTrace, b: ParsedTrace) -> None:
    for frame in ("gpu_events", "launches", "ranges"):
        assert_frame_equal(getattr(a, frame), getattr(b, frame))
    assert (a.warnings, a.event_count, a.devices, a.rank, a.world_size, a.cpu_only) == (
        b.warnings,
        b.event_count,
        b.devices,
        b.rank,
        b.world_size,
        b.cpu_only,
    )


def event(rnd: random.Random, i: int) -> dict:
    name = rnd.choice(NAMES)
    kind = rnd.random()
    if kind < 0.3:
        return {
            "ph": "X",
            "cat": "cpu_op",
            "name": name,
            "pid": 1,
            "tid": 1,
            "ts": i * 10 + 0.125,
            "dur": 5.5,
            "args": {"Input Dims": [[2, 3], []], "nested": [{"a": 1}, {"b": [{"c": 2}]}], "stack": "f}, {g"},
        }
    if kind < 0.5:
        return {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": 1,
            "tid": 1,
            "ts": i * 10 + 1,
            "dur": 1,
            "args": {"correlation": i, "objs": [{"x": "}]"}]},
        }
    if kind < 0.7:
        return {
            "ph": "X",
            "cat": "kernel",
            "name": name,
            "pid": 0,
            "tid": 7,
            "ts": i * 10 + 2,
            "dur": 3,
            "args": {"correlation": i, "device": 0, "stream": 7, "grid": [1, 2, 3], "block": [4, 5, 6]},
        }
    return {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": i, "pid": 1, "tid": 1, "ts": i * 10, "bp": "e"}


def documents() -> list[tuple[str, object]]:
    events = [event(random.Random(7), i) for i in range(1500)]
    devices = [{"id": 0, "name": "NVIDIA A100"}, {"id": 1, "name": "x}, {y"}]
    return [
        ("events last", {"deviceProperties": devices, "traceEvents": events}),
        ("events first", {"traceEvents": events, "deviceProperties": devices, "baseTimeNanoseconds": 1000}),
        ("bare list", events),
        ("empty", {"traceEvents": [], "deviceProperties": devices}),
        ("fake key in a string", {"name": '"traceEvents": [', "traceEvents": events}),
        ("one event", {"traceEvents": events[:1]}),
    ]


def serialise(obj: object, style: str) -> bytes:
    if style == "indented":
        return json.dumps(obj, indent=2).encode()
    if style == "compact":
        return json.dumps(obj, separators=(",", ":")).encode()
    if style == "crlf-tabs":
        return json.dumps(obj, indent="\t").replace("\n", "\r\n").encode()
    return json.dumps(obj).encode()


def write_doc(tmp_path: Path, doc: object | bytes, *, style: str = "indented", gz: bool = False) -> Path:
    """``doc`` (or bytes as they are) as a trace file, gzipped or not."""
    data = doc if isinstance(doc, bytes) else serialise(doc, style)
    path = tmp_path / ("t.json.gz" if gz else "t.json")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def parse_or_error(path: Path, decoder: kineto.Decoder = "auto") -> tuple[ParsedTrace | None, str | None]:
    """The parse, or its error as text: two decode paths must fail alike, too."""
    try:
        return kineto.parse_kineto(path, decoder=decoder), None
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {exc}"


def count_pieces_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the pieces the scan reads from here on (``kineto_stream.read_pieces``
    wrapped), filled in as it reads them."""
    read: list[int] = []
    real_pieces = kineto_stream.read_pieces

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for piece in real_pieces(*args, **kwargs):
            read.append(piece.n)
            yield piece

    monkeypatch.setattr(kineto_stream, "read_pieces", counted)
    return read
