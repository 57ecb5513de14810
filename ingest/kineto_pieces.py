"""The C scanner's walk over a Kineto trace's events array, a piece of text at a time.

Nothing here imports polars: ``scan_ahead`` runs this walk on a thread while the command is
still importing polars, and ``kineto_stream`` runs it in the pipeline and turns each piece's
table into frames.  Both get the same tables, the same event count and the same header text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import ModuleType
from typing import Protocol

from tracehouse.ingest.jsonchunks import after_ws

_kineto_scan: ModuleType | None
try:
    from tracehouse.ingest import _kineto_scan
except ImportError:  # installed where nothing could compile it: the msgspec path does it all
    _kineto_scan = None
# The compiled scanner (interface in _kineto_scan.pyi), if built: the one ``kineto_native`` uses too.
SCANNER = _kineto_scan

# The categories of complete events a trace's frames are made of, by frame.
GPU_KINDS = {
    "kernel": "kernel",
    "Kernel": "kernel",
    "gpu_memcpy": "memcpy",
    "Memcpy": "memcpy",
    "gpu_memset": "memset",
    "Memset": "memset",
}
LAUNCH_CATS = ("Runtime", "cuda_driver", "cuda_runtime", "hip_runtime")
RANGE_CATS = {"cpu_op": "cpu_op", "Operator": "cpu_op", "user_annotation": "annotation", "python_function": "python"}
KEPT = (*GPU_KINDS, *LAUNCH_CATS, *RANGE_CATS)  # a scanned event's ``cat`` indexes this
CATEGORIES = tuple(c.encode() for c in KEPT)

MAX_ELEMENT_BYTES = 64 << 20  # no real event is near this; a malformed one stops here
MAX_HEADER_BYTES = 64 << 20  # text before the events array (device properties ...)
_OPENER = re.compile(rb'"traceEvents"[ \t\n\r]*:[ \t\n\r]*\[')

Table = tuple[object, object]  # (schema, array) capsules of one piece's kept events


class Piece(Protocol):
    """A piece of the text (``piece_ring.Piece``, or ``scan_ahead``'s whole text)."""

    @property
    def text(self) -> memoryview | bytes: ...

    def joined(self, carry: bytes) -> memoryview | bytes:
        """``carry + text``."""
        ...


class Declined(Exception):
    """The scanner does not take this document; the reference decoder will."""


class PieceScan:
    """Iterates over the tables of the pieces' kept events, in file order (a piece whose events
    are all dropped yields none); once the iteration ends, ``events`` is how many events the
    array held and ``header`` the document with its array emptied.  The iteration raises
    :class:`Declined` where the scanner declines, and whatever reading the pieces raises.

    Where an element does not parse, more text is appended until it does; past
    ``MAX_ELEMENT_BYTES`` or at the end of the file, the element is malformed, not cut off."""

    def __init__(self, pieces: Iterator[Piece]) -> None:
        if SCANNER is None:
            raise Declined("the scanner is not built")
        self._pieces, self._scan_piece = pieces, SCANNER.scan_piece
        self.events = 0
        self.header = b""
        self.array_at = -1  # the events array's ``[`` in ``header``

    def __iter__(self) -> Iterator[Table]:
        pieces = self._pieces
        prefix, buf = _array_start(pieces)
        at_start = True
        while True:
            # (table, events, consumed, ended), or the offset where the scanner declined
            found = self._scan_piece(buf, CATEGORIES, at_start)
            if isinstance(found, int):
                raise Declined(f"element at +{found}")
            table, count, consumed, ended = found
            self.events += count
            if count:
                yield table
            if ended:
                break
            # The element the piece cut off, copied out before the next piece is taken: its
            # buffer is the next to be refilled.
            carry = bytes(buf[consumed:])
            more = next(pieces, None)
            if more is None or (consumed == 0 and len(buf) > MAX_ELEMENT_BYTES):
                raise Declined("an element that does not parse")
            buf = more.joined(carry)
            at_start = at_start and consumed == 0
        self.header = prefix + b"]" + bytes(buf[consumed:]) + b"".join(bytes(piece.text) for piece in pieces)
        self.array_at = len(prefix) - 1


def _array_start(pieces: Iterator[Piece]) -> tuple[bytes, memoryview | bytes]:
    """The document up to and including the events array's ``[``, and the text after it read
    so far.  A match of the key in a nested object is caught by the header check
    (``kineto_stream._check_header``)."""
    piece = next(pieces, None)
    if piece is None:
        raise Declined("no events array")
    buf: memoryview | bytes = piece.text
    while True:
        start = after_ws(buf, 0)
        first = bytes(buf[start : start + 1])
        if first == b"[":  # the document is the events array itself
            return bytes(buf[: start + 1]), buf[start + 1 :]
        found = _OPENER.search(buf) if first == b"{" else None
        if found:
            return bytes(buf[: found.end()]), buf[found.end() :]
        piece = next(pieces, None)
        if piece is None or len(buf) > MAX_HEADER_BYTES or first not in (b"", b"{"):
            raise Declined("no events array")
        buf = bytes(buf) + bytes(piece.text)  # a header longer than a piece: rare, copied
