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


def _parse(
    path: Path, monkeypatch: pytest.MonkeyPatch, decoder: kineto.Decoder, *, chunk_bytes: int
) -> tuple[ParsedTrace | None, str | None]:
    """(parsed, error) by one of the reference decoder's paths (tests/test_kineto_native.py
    compares the C scanner with it), the streamed one cutting ``chunk_bytes`` at a time."""
    with monkeypatch.context() as m:
        m.setattr(kineto, "CHUNK_BYTES", chunk_bytes)
        return parse_or_error(path, decoder)


@pytest.mark.parametrize("path", kineto_traces(), ids=lambda p: p.name)
def test_real_traces_cut_small_decode_as_one(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared()
    streamed, error = _parse(path, monkeypatch, "streamed", chunk_bytes=2048)
    whole, _ = _parse(path, monkeypatch, "whole", chunk_bytes=2048)
    assert error is None and streamed is not None and whole is not None
    assert_same_parse(streamed, whole)


@pytest.mark.parametrize(("label", "doc"), documents(), ids=[d[0] for d in documents()])
@pytest.mark.parametrize("style", ["plain", "indented", "compact", "crlf-tabs"])
@pytest.mark.parametrize("gz", [False, True], ids=["json", "gz"])
def test_documents_built_to_fool_the_cutter(
    label: str, doc: object, style: str, gz: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_doc(tmp_path, doc, style=style, gz=gz)
    streamed, error_a = _parse(path, monkeypatch, "streamed", chunk_bytes=300)
    whole, error_b = _parse(path, monkeypatch, "whole", chunk_bytes=300)
    assert error_a == error_b  # the cutter itself decoded it (it declines nothing here)
    if streamed is not None and whole is not None:
        assert_same_parse(streamed, whole)


def test_a_repeated_events_key_is_left_to_the_whole_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(
        b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1, '
        b'"args": {"correlation": 1}}], "traceEvents": []}'
    )
    _streamed, declined = _parse(path, monkeypatch, "streamed", chunk_bytes=300)
    assert declined is not None and declined.startswith("StreamDeclined: dup.json: the streamed decode declines it")
    reference, error_a = _parse(path, monkeypatch, "reference", chunk_bytes=300)
    whole, error_b = _parse(path, monkeypatch, "whole", chunk_bytes=300)
    assert error_a == error_b and (reference is None) == (whole is None)
    if reference is not None and whole is not None:
        assert_same_parse(reference, whole)
