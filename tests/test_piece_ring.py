"""The scan's reader (``ingest/piece_ring.py``): a file's text read into a ring of reused
buffers gives exactly the file's text, its digest and gunzip's errors, and touches the ring's
memory, not the trace's size."""

from __future__ import annotations

import gzip
import hashlib
import resource
import zlib
from pathlib import Path

import pytest

from tests.conftest import KINETO_DIR, require_shared
from tests.kineto_docs import assert_same_parse, count_pieces_read, parse_or_error
from tracehouse.core.errors import TooLarge
from tracehouse.ingest import kineto_stream, piece_ring
from tracehouse.ingest.jsonchunks import CONTENT_DIGESTS, Unsplittable
from tracehouse.ingest.piece_ring import read_pieces


def _text(path: Path, piece_bytes: int) -> tuple[bytes, list[int]]:
    """The text read piece by piece (each copied before the ring reuses its buffer)."""
    parts = [(bytes(piece.text), piece.n) for piece in read_pieces(path, piece_bytes, 1 << 34)]
    return b"".join(p for p, _ in parts), [n for _, n in parts]


@pytest.mark.parametrize("piece_bytes", [4096, 1 << 20, 8 << 20])
def test_pieces_are_the_files_text_and_grow_from_a_small_first_one(tmp_path: Path, piece_bytes: int) -> None:
    require_shared()
    trace = KINETO_DIR / "a100_rank3_of8_training.json.gz"
    text = gzip.decompress(trace.read_bytes())
    got, sizes = _text(trace, piece_bytes)
    assert got == text
    first = min(piece_bytes, piece_ring.FIRST_PIECE)
    assert sizes[0] == first and max(sizes) == piece_bytes
    assert sizes[: len(sizes) - 1] == sorted(sizes[: len(sizes) - 1])  # only the last is short
    plain = tmp_path / "plain.json"
    plain.write_bytes(text)
    assert _text(plain, piece_bytes)[0] == text
    two = tmp_path / "two.json.gz"  # ``cat a.gz b.gz`` is one file, as gunzip reads it
    two.write_bytes(gzip.compress(text[:12345]) + gzip.compress(text[12345:]))
    assert _text(two, piece_bytes)[0] == text


def test_the_content_digest_is_taken_on_the_way(tmp_path: Path) -> None:
    text = b'{"traceEvents": []}' * 5000
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(text[:777]) + gzip.compress(text[777:]))
    key = CONTENT_DIGESTS.want(path)
    _text(path, 4096)
    assert CONTENT_DIGESTS.take(key) == hashlib.sha256(text).hexdigest()


def test_gzip_errors_are_raised_as_file_pieces_raises_them(tmp_path: Path) -> None:
    good = gzip.compress(b'{"traceEvents": [' + b'{"a": 1},' * 5000 + b"{}]}")
    cases = {
        "truncated": (good[:-20], Unsplittable),
        "garbage after a member": (good + b"garbage!", Unsplittable),
        "bad crc": (good[:-8] + b"\0\0\0\0" + good[-4:], zlib.error),
        "corrupt deflate": (good[:30] + b"\xff" * 20 + good[50:], zlib.error),
    }
    for name, (blob, error) in cases.items():
        path = tmp_path / f"{name}.json.gz"
        path.write_bytes(blob)
        with pytest.raises(error):
            _text(path, 4096)
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(bytes(3 << 20)))
    with pytest.raises(TooLarge, match="inflates past"):
        sum(piece.n for piece in read_pieces(bomb, 1 << 20, 2 << 20))


def test_reading_touches_the_rings_memory_not_the_traces_size(tmp_path: Path) -> None:
    """Page faults while reading 96 MB of text in 1 MB pieces: the ring's 4 MB and the headroom,
    not the 96 MB (each fresh ``bytes`` per piece faulted its pages in again)."""
    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(b'{"name": "k", "ts": 1}, ' * (4 << 20), compresslevel=1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    total = sum(piece.n for piece in read_pieces(path, 1 << 20, 1 << 34))
    faulted_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) * 4096 / (1 << 20)
    assert total == 96 << 20
    assert faulted_mb < 24, f"{faulted_mb:.0f} MB of fresh pages to read 96 MB"


def test_an_element_bigger_than_the_headroom_is_joined_by_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of 4 KiB and 64 bytes of headroom: most cut-off elements do not fit in front of
    the next piece, and the scan still gives the frames the reference decoder gives."""
    monkeypatch.setattr(piece_ring, "HEADROOM", 64)
    require_shared()
    trace = KINETO_DIR / "a100_alexnet_small.json.gz"
    plain = tmp_path / "alexnet.json"
    plain.write_bytes(gzip.decompress(trace.read_bytes()))
    assert kineto_stream.scan_file(plain, piece_bytes=4096) is not None
    monkeypatch.setattr(kineto_stream, "PIECE_BYTES", 4096)
    read = count_pieces_read(monkeypatch)
    native, error = parse_or_error(plain)
    monkeypatch.undo()
    assert len(read) > 20  # the native scan read it, 4 KiB at a time
    reference, reference_error = parse_or_error(plain, decoder="reference")
    assert error is None and reference_error is None and native is not None and reference is not None
    assert_same_parse(native, reference)
