"""The streamed (chunk-at-a-time) Kineto decode gives exactly what one whole-document decode
gives: on every shared trace cut into small chunks, and on documents built to fool the cutter
(``}, {`` inside strings and nested arrays of objects, the events array not last, a fake key in
a string, a repeated key, odd whitespace, gzip or not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import kineto_traces, require_shared
from tests.kineto_docs import assert_same_parse, documents, parse_or_error, write_doc
from tracehouse.core.frames import ParsedTrace
from tracehouse.ingest import kineto
from tracehouse.ingest.jsonchunks import Unsplittable


def _parse(
    path: Path, monkeypatch: pytest.MonkeyPatch, *, whole: bool, chunk_bytes: int
) -> tuple[ParsedTrace | None, str | None, bool]:
    """(parsed, error, streamed?) with the streamed path on, or forced off; the reference
    decoder throughout (tests/test_kineto_native.py compares the C scanner with it)."""
    used_whole: list[bool] = []
    real_whole = kineto._decode_whole

    def spy(*args):  # type: ignore[no-untyped-def]
        used_whole.append(True)
        return real_whole(*args)

    def refuse(*_: object):  # type: ignore[no-untyped-def]
        raise Unsplittable("forced")

    with monkeypatch.context() as m:
        m.setattr(kineto, "_CHUNK_BYTES", chunk_bytes)
        m.setattr(kineto, "_decode_whole", spy)
        if whole:
            m.setattr(kineto, "_decode_streamed", refuse)
        parsed, error = parse_or_error(path, "reference")
    return parsed, error, not used_whole


@pytest.mark.parametrize("path", kineto_traces(), ids=lambda p: p.name)
def test_real_traces_cut_small_decode_as_one(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared()
    streamed, error, was_streamed = _parse(path, monkeypatch, whole=False, chunk_bytes=2048)
    whole, _, _ = _parse(path, monkeypatch, whole=True, chunk_bytes=2048)
    assert error is None and was_streamed and streamed is not None and whole is not None
    assert_same_parse(streamed, whole)


@pytest.mark.parametrize(("label", "doc"), documents(), ids=[d[0] for d in documents()])
@pytest.mark.parametrize("style", ["plain", "indented", "compact", "crlf-tabs"])
@pytest.mark.parametrize("gz", [False, True], ids=["json", "gz"])
def test_documents_built_to_fool_the_cutter(
    label: str, doc: object, style: str, gz: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_doc(tmp_path, doc, style=style, gz=gz)
    streamed, error_a, was_streamed = _parse(path, monkeypatch, whole=False, chunk_bytes=300)
    whole, error_b, _ = _parse(path, monkeypatch, whole=True, chunk_bytes=300)
    assert was_streamed and error_a == error_b  # the cutter itself decoded it, no fallback
    if streamed is not None and whole is not None:
        assert_same_parse(streamed, whole)


def test_a_repeated_events_key_is_left_to_the_whole_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(
        b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1, '
        b'"args": {"correlation": 1}}], "traceEvents": []}'
    )
    _streamed, error_a, was_streamed = _parse(path, monkeypatch, whole=False, chunk_bytes=300)
    _whole, error_b, _ = _parse(path, monkeypatch, whole=True, chunk_bytes=300)
    assert not was_streamed and error_a == error_b
