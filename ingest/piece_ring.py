"""A file's (gunzipped) text read into a few fixed buffers in turn, for the C scanner to read
in place.

``jsonchunks.file_pieces`` hands out a new ``bytes`` per piece, and the scan joined the element
a piece cuts off to the next piece with another copy: for the largest shared trace (35 MB of
text) that touched ~100 MB of fresh memory, and each first touch of a page is a page fault
(~4 µs here, ~0.1 s of the whole ingest).  Here the text is inflated straight into a ring of
anonymous maps, reused piece after piece, and the cut-off element is copied into the headroom
in front of the next piece instead: fresh memory is the ring's, whatever the trace's size.

A piece's view is valid until the consumer asks for ``RING - 1`` more pieces; the scanner
copies what it keeps, so a piece is done with once it is scanned.
"""

from __future__ import annotations

import mmap
import zlib
from collections.abc import Generator
from gzip import BadGzipFile
from pathlib import Path
from typing import BinaryIO, Protocol

from isal import igzip, isal_zlib

from tracehouse.ingest.jsonchunks import CONTENT_DIGESTS, ISAL_ERROR, Unsplittable, inflated_past

FIRST_PIECE = 1 << 20  # pieces double from here up to the size asked for (see read_pieces)
HEADROOM = 1 << 20  # room for the element a piece cuts off, in front of the next piece
# Buffers in the ring: the one the consumer scans, the prefetch queue's (``depth``) and the one
# being filled.  The consumer copies out the element a piece cuts off before it takes the
# next piece: from then on that piece's buffer may be refilled.
RING = 4
# isal's C gzip reader inflates straight into the buffer it is given (and reads every member,
# as gunzip does).  It is private to isal: where a release lacks it, its public GzipFile does
# the same with one more copy per piece.
_GZIP_READER = getattr(isal_zlib, "_GzipReader", None)


class _Reader(Protocol):
    def readinto(self, into: memoryview, /) -> int: ...


class Piece:
    """``n`` bytes of text at ``buffer[HEADROOM : HEADROOM + n]``."""

    __slots__ = ("buffer", "n")

    def __init__(self, buffer: memoryview, n: int) -> None:
        self.buffer, self.n = buffer, n

    @property
    def text(self) -> memoryview:
        return self.buffer[HEADROOM : HEADROOM + self.n]

    def joined(self, carry: bytes) -> memoryview | bytes:
        """``carry + text``: in place where ``carry`` fits the headroom, else a copy."""
        if len(carry) > HEADROOM:
            return carry + bytes(self.text)
        start = HEADROOM - len(carry)
        self.buffer[start:HEADROOM] = carry
        return self.buffer[start : HEADROOM + self.n]


def read_pieces(path: Path, piece_bytes: int, max_inflated_bytes: int) -> Generator[Piece, None, None]:
    """The file's text ``piece_bytes`` at a time (gunzipped when it is gzip, by magic), each
    piece in the next buffer of the ring; raises :class:`TooLarge` as soon as the text passes
    ``max_inflated_bytes``, and gzip's errors as ``zlib.error`` (``Unsplittable`` for a
    truncated file), as ``file_pieces`` does.  A gzip file's content digest is taken on the way
    where it is wanted (``CONTENT_DIGESTS``)."""
    # Anonymous maps: a page costs memory only once written, so a small trace touches little.
    ring = [memoryview(mmap.mmap(-1, HEADROOM + piece_bytes)) for _ in range(RING)]
    room, count = max_inflated_bytes, 0
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        digest = CONTENT_DIGESTS.hasher(fh) if gzipped else None
        reader: _Reader = _gzip_reader(fh) if gzipped else fh
        while True:
            buffer = ring[count % RING]
            # The scan waits for the first piece: a small one lets it start after a few ms of
            # gunzip instead of ~20 ms, and the pieces grow to full size within a few.
            size = min(piece_bytes, FIRST_PIECE << count)
            n = _fill(reader, buffer[HEADROOM : HEADROOM + size])
            if not n:
                break
            room -= n
            if room < 0:
                raise inflated_past(path, max_inflated_bytes)
            if digest is not None:
                digest.update(buffer[HEADROOM : HEADROOM + n])
            count += 1
            yield Piece(buffer, n)
        if digest is not None:
            CONTENT_DIGESTS.keep(fh, digest.hexdigest())


def _gzip_reader(fh: BinaryIO) -> _Reader:
    if _GZIP_READER is not None:
        reader: _Reader = _GZIP_READER(fh)
        return reader
    return igzip.IGzipFile(fileobj=fh)


def _fill(reader: _Reader, into: memoryview) -> int:
    """Bytes read into ``into``: all of it unless the file ends first."""
    filled = 0
    try:
        while filled < len(into) and (n := reader.readinto(into[filled:])):
            filled += n
    except EOFError:  # gzip's "ended before the end-of-stream marker"
        raise Unsplittable("truncated gzip") from None
    except (BadGzipFile, ISAL_ERROR) as exc:
        raise zlib.error(str(exc)) from None
    return filled
