"""The C scanner fed a piece at a time (``kineto_stream``) gives what it gives on the whole
document, wherever the pieces are cut, declines what the whole scan declines, and keeps
memory bounded: a ~1 GB trace ingests without the process ever holding its text."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, kineto_traces, require_shared
from tests.fuzz.oracle import assert_same_pieces
from tests.kineto_docs import assert_same_parse, documents, event, parse_or_error, write_doc
from tracehouse.ingest import kineto, kineto_native, kineto_stream

pytestmark = pytest.mark.skipif(
    not kineto_native.AVAILABLE and not shutil.which("cc"), reason="no C compiler here, so the scanner was not built"
)


def _reference(path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(kineto, "_decode_native", lambda *_: None)
        return parse_or_error(path)


@pytest.mark.parametrize("path", kineto_traces(), ids=lambda p: p.name)
def test_real_traces_in_pieces_scan_as_the_whole_document(path: Path, tmp_path: Path) -> None:
    require_shared()
    plain = tmp_path / "trace.json"  # the oracle compares with a scan of these very bytes
    plain.write_bytes(kineto.read_bytes(path))
    whole = kineto_native.scan(plain.read_bytes())
    assert isinstance(whole, kineto_native.Scanned)
    assert_same_pieces(plain, whole, piece_sizes=(65_537, 1 << 20))


@pytest.mark.parametrize(("label", "doc"), documents(), ids=[d[0] for d in documents()])
@pytest.mark.parametrize("style", ["indented", "compact", "crlf-tabs"])
def test_documents_cut_anywhere_scan_as_the_whole_document(label: str, doc: object, style: str, tmp_path: Path) -> None:
    path = write_doc(tmp_path, doc, style=style)
    whole = kineto_native.scan(path.read_bytes())
    assert isinstance(whole, kineto_native.Scanned), label
    assert_same_pieces(path, whole, piece_sizes=(509, 4099))


@pytest.mark.parametrize("style", ["indented", "compact"])
def test_a_document_cut_at_every_byte_scans_as_the_whole_document(style: str, tmp_path: Path) -> None:
    path = write_doc(
        tmp_path, {"deviceProperties": [{"id": 0, "name": "x}, {y"}], "traceEvents": _events(40)}, style=style
    )
    whole = kineto_native.scan(path.read_bytes())
    assert isinstance(whole, kineto_native.Scanned)
    assert_same_pieces(path, whole, piece_sizes=(1, 2, 3))


def _events(n: int) -> list[dict]:
    rnd = random.Random(5)
    return [event(rnd, i) for i in range(n)]


def test_a_malformed_element_declines_without_reading_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(3000)
    events[40] = {**events[40], "name": "x", "dup": 1}
    text = json.dumps({"traceEvents": events}).replace('"dup": 1', '"na\\u006de": "y"', 1)  # an escaped key
    path = write_doc(tmp_path, text.encode())
    assert isinstance(kineto_native.scan(path.read_bytes()), int)  # the whole scan declines it too
    monkeypatch.setattr(kineto_stream, "MAX_ELEMENT_BYTES", 50_000)
    read: list[int] = []
    real_pieces = kineto_stream.file_pieces

    def counted(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for piece in real_pieces(*args, **kwargs):  # type: ignore[arg-type]
            read.append(len(piece))
            yield piece

    monkeypatch.setattr(kineto_stream, "file_pieces", counted)
    with pytest.raises(kineto_stream.Declined):
        kineto_stream.scan_file(path, piece_bytes=4096)
    assert sum(read) < len(text) / 4  # gave up near the element, not at the end of the file
    monkeypatch.undo()
    native, reference = parse_or_error(path), _reference(path, monkeypatch)
    assert native[1] == reference[1] and native[0] is not None and reference[0] is not None
    assert_same_parse(native[0], reference[0])


def test_a_nested_events_key_before_the_real_one_is_left_to_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_doc(tmp_path, {"meta": {"traceEvents": []}, "traceEvents": _events(200)})
    with pytest.raises(kineto_stream.Declined):
        kineto_stream.scan_file(path)
    (native, error_a), (reference, error_b) = parse_or_error(path), _reference(path, monkeypatch)
    assert error_a == error_b
    assert native is not None and reference is not None
    assert_same_parse(native, reference)


_INGEST_PEAK = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
# Holding the text alone would take 1 GB, and the whole-text scan peaked at 1.9 GB for 0.8 GB
# of JSON; the piecewise parse peaks near 1.2 GB here (mostly the frames themselves, which the
# later stages need whole: issue 17's 1 GB for the whole ingest is not met yet).
PEAK_LIMIT_BYTES = 3 << 29  # 1.5 GiB


@pytest.mark.slow
def test_a_1gb_trace_parses_without_holding_its_text(tmp_path: Path) -> None:
    """The parse of a ~1 GB plain-JSON trace (a shared trace's events replicated) peaks below
    1.5 GiB, measured in a child process (its RUSAGE_CHILDREN peak)."""
    require_shared()
    sys.path.insert(0, str(REPO / "bench"))
    from generate import write_trace

    big = tmp_path / "big.json"
    written, events = write_trace(kineto_traces()[0].parent / "a100_rank3_of8_training.json.gz", big, 1.0e9)
    code = (
        "import sys; from pathlib import Path; from tracehouse.ingest.kineto import parse_kineto; "
        "assert parse_kineto(Path(sys.argv[1]), max_inflated_bytes=4 << 30).event_count == int(sys.argv[2])"
    )
    out = subprocess.run(
        [sys.executable, "-c", _INGEST_PEAK, sys.executable, "-c", code, str(big), str(events)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    peak_kb = int(out.stdout.split()[-1])
    assert written > 0.95e9 and peak_kb * 1024 < PEAK_LIMIT_BYTES, (written, peak_kb)
