"""The streamed (chunk-at-a-time) Kineto decode gives exactly what one whole-document decode
gives: on every shared trace cut into small chunks, and on documents built to fool the cutter
(``}, {`` inside strings and nested arrays of objects, the events array not last, a fake key in
a string, a repeated key, odd whitespace, gzip or not)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from tests.conftest import kineto_traces, require_shared
from tracehouse.ingest import kineto
from tracehouse.ingest.frames import ParsedTrace
from tracehouse.ingest.jsonchunks import Unsplittable

NAMES = ["aten::mm", "x}, {y", "a}]b", '}, {"ph": "X"}', "k}  ,\n {", '\\"}, {', "plain"]


def _parse(path: Path, monkeypatch: pytest.MonkeyPatch, *, whole: bool,
           chunk_bytes: int) -> tuple[ParsedTrace | None, str | None, bool]:
    """(parsed, error, streamed?) with the streamed path on, or forced off."""
    used_whole: list[bool] = []
    real_whole = kineto._decode_whole

    def spy(*args):  # type: ignore[no-untyped-def]
        used_whole.append(True)
        return real_whole(*args)

    def refuse(_: Path):  # type: ignore[no-untyped-def]
        raise Unsplittable("forced")

    with monkeypatch.context() as m:
        m.setattr(kineto, "_CHUNK_BYTES", chunk_bytes)
        m.setattr(kineto, "_decode_whole", spy)
        if whole:
            m.setattr(kineto, "_decode_streamed", refuse)
        try:
            return kineto.parse_kineto(path), None, not used_whole
        except Exception as exc:  # noqa: BLE001  the two paths must fail alike, too
            return None, f"{type(exc).__name__}: {exc}", not used_whole


def _assert_same(a: ParsedTrace, b: ParsedTrace) -> None:
    for frame in ("gpu_events", "launches", "ranges"):
        assert_frame_equal(getattr(a, frame), getattr(b, frame))
    assert (a.warnings, a.event_count, a.devices, a.rank, a.world_size, a.cpu_only) == \
        (b.warnings, b.event_count, b.devices, b.rank, b.world_size, b.cpu_only)


@pytest.mark.parametrize("path", kineto_traces(), ids=lambda p: p.name)
def test_real_traces_cut_small_decode_as_one(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared()
    streamed, error, was_streamed = _parse(path, monkeypatch, whole=False, chunk_bytes=2048)
    whole, _, _ = _parse(path, monkeypatch, whole=True, chunk_bytes=2048)
    assert error is None and was_streamed and streamed is not None and whole is not None
    _assert_same(streamed, whole)


def _event(rnd: random.Random, i: int) -> dict:
    name = rnd.choice(NAMES)
    kind = rnd.random()
    if kind < 0.3:
        return {"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1, "ts": i * 10 + 0.125, "dur": 5.5,
                "args": {"Input Dims": [[2, 3], []], "nested": [{"a": 1}, {"b": [{"c": 2}]}], "stack": "f}, {g"}}
    if kind < 0.5:
        return {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1,
                "ts": i * 10 + 1, "dur": 1, "args": {"correlation": i, "objs": [{"x": "}]"}]}}
    if kind < 0.7:
        return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": i * 10 + 2, "dur": 3,
                "args": {"correlation": i, "device": 0, "stream": 7, "grid": [1, 2, 3], "block": [4, 5, 6]}}
    return {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": i, "pid": 1, "tid": 1, "ts": i * 10, "bp": "e"}


def _documents() -> list[tuple[str, object]]:
    events = [_event(random.Random(7), i) for i in range(1500)]
    devices = [{"id": 0, "name": "NVIDIA A100"}, {"id": 1, "name": "x}, {y"}]
    return [
        ("events last", {"deviceProperties": devices, "traceEvents": events}),
        ("events first", {"traceEvents": events, "deviceProperties": devices, "baseTimeNanoseconds": 1000}),
        ("bare list", events),
        ("empty", {"traceEvents": [], "deviceProperties": devices}),
        ("fake key in a string", {"name": '"traceEvents": [', "traceEvents": events}),
        ("one event", {"traceEvents": events[:1]}),
    ]


def _serialise(obj: object, style: str) -> bytes:
    if style == "indented":
        return json.dumps(obj, indent=2).encode()
    if style == "compact":
        return json.dumps(obj, separators=(",", ":")).encode()
    if style == "crlf-tabs":
        return json.dumps(obj, indent="\t").replace("\n", "\r\n").encode()
    return json.dumps(obj).encode()


@pytest.mark.parametrize(("label", "doc"), _documents(), ids=[d[0] for d in _documents()])
@pytest.mark.parametrize("style", ["plain", "indented", "compact", "crlf-tabs"])
@pytest.mark.parametrize("gz", [False, True], ids=["json", "gz"])
def test_documents_built_to_fool_the_cutter(label: str, doc: object, style: str, gz: bool, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = _serialise(doc, style)
    path = tmp_path / ("t.json.gz" if gz else "t.json")
    path.write_bytes(gzip.compress(data) if gz else data)
    streamed, error_a, was_streamed = _parse(path, monkeypatch, whole=False, chunk_bytes=300)
    whole, error_b, _ = _parse(path, monkeypatch, whole=True, chunk_bytes=300)
    assert was_streamed and error_a == error_b  # the cutter itself decoded it, no fallback
    if streamed is not None and whole is not None:
        _assert_same(streamed, whole)


def test_a_repeated_events_key_is_left_to_the_whole_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1, '
                     b'"args": {"correlation": 1}}], "traceEvents": []}')
    streamed, error_a, was_streamed = _parse(path, monkeypatch, whole=False, chunk_bytes=300)
    whole, error_b, _ = _parse(path, monkeypatch, whole=True, chunk_bytes=300)
    assert not was_streamed and error_a == error_b
