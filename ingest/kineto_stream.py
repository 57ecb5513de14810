"""The C scanner fed a piece at a time: a Kineto trace of any size is read in bounded memory.

The file is read (and gunzipped, on another thread) a piece at a time; the scanner
(``_kineto_scan.scan_piece``, walked by ``kineto_pieces.PieceScan``) takes the events
array's elements from each piece, stopping at the last element the piece cuts off, which
comes again at the start of the next piece.  Each
piece's kept events become the gpu / launch / range frames at once (``ts`` already in integer
ns, names as Categorical), so neither the JSON text nor the scanner's columns of the whole
trace ever exist, only the frames.  The small rest of
the document (everything but the array's elements) is checked by the whole-document scanner
and decoded by msgspec, as in ``kineto._decode_native``: so a document is accepted exactly
when the whole-document scan accepts it, and gives the same frames
(tests/test_kineto_stream.py checks both against the reference decoder).

Where an element does not parse, more text is appended until it does; past
``kineto_pieces.MAX_ELEMENT_BYTES`` or at the end of the file, the element is malformed, not
cut off, and the scan declines (the caller then takes the reference path).  A file the command
line scanned ahead, while it imported polars (``scan_ahead``), is framed from that scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

import polars as pl

from tracehouse.core.limits import INFLATED_CEILING
from tracehouse.ingest import kineto_native, scan_ahead
from tracehouse.ingest.jsonchunks import prefetched
from tracehouse.ingest.kineto_pieces import CATEGORIES, SCANNER, Declined, PieceScan, Table
from tracehouse.ingest.piece_ring import RING, read_pieces
from tracehouse.ingest.timestamps import us_text_to_ns

__all__ = ["Declined", "Streamed", "empty_frame", "expanded", "scan_file", "scan_pieces"]

PIECE_BYTES = 8 << 20  # gunzipped text scanned at a time
_FRAMERS = 2  # threads making pieces' frames (the scan's own thread is one more)
_AHEAD = 3  # pieces scanned but not yet framed, at most
_PREFETCH = RING - 2  # the ring holds the piece scanned, these and the one being read
# Handing a piece across threads costs ~0.1 ms; a piece under a page is read quicker than that
# on the scan's own thread.  Only tests cut pieces that small (every cut an element can have).
_PREFETCH_MIN_BYTES = 4096
T = TypeVar("T")


class Streamed:
    """The frames of the kept events, how many events the array held, and the document with
    its events array emptied (for the header decode)."""

    __slots__ = ("event_count", "frames", "header_text")

    def __init__(self, frames: dict[str, pl.DataFrame], event_count: int, header_text: bytes) -> None:
        self.frames, self.event_count, self.header_text = frames, event_count, header_text


def scan_file(
    path: Path, max_inflated_bytes: int = INFLATED_CEILING, piece_bytes: int | None = None
) -> Streamed | None:
    """The file's kept events as frames, scanned a piece at a time; None when the extension
    is not built.  Raises :class:`Declined` where the scanner declines the document, and
    whatever reading raises (TooLarge past ``max_inflated_bytes``, zlib's errors ...).
    Where the command scanned this very file ahead while it imported (``scan_ahead``), that
    scan's tables are framed instead; a caller asking for its own ``piece_bytes`` gets its own."""
    early = scan_ahead.take(path, max_inflated_bytes) if piece_bytes is None else None
    found = _framed(early, _kept) if early is not None else scan_pieces(path, _kept, max_inflated_bytes, piece_bytes)
    if found is None:
        return None
    parts, events, header = found
    frames = {
        kind: expanded(pl.concat([p[kind] for p in parts], rechunk=False)) if parts else empty_frame(kind)
        for kind in ("gpu", "launch", "range")
    }
    return Streamed(frames, events, header)


def scan_pieces(
    path: Path,
    handle: Callable[[dict[str, pl.DataFrame]], T],
    max_inflated_bytes: int = INFLATED_CEILING,
    piece_bytes: int | None = None,
) -> tuple[list[T], int, bytes] | None:
    """``handle`` of each piece's compact frames (``_piece_frames``; called on worker threads,
    two pieces at a time, the results in file order), the event count and the header text; None when the extension is not
    built.  Raises as :func:`scan_file`.  ``kineto_windows`` spills each piece to disk here."""
    if not kineto_native.AVAILABLE:
        return None
    # Read (and gunzipped) on another thread into the ring's buffers, at most ``_PREFETCH``
    # pieces ahead of the scan (``piece_ring.RING`` counts them); pieces under
    # ``_PREFETCH_MIN_BYTES`` on this thread, each when the scan asks for it.
    size = piece_bytes or PIECE_BYTES
    pieces = read_pieces(path, size, max_inflated_bytes)
    if size >= _PREFETCH_MIN_BYTES:
        pieces = prefetched(pieces, depth=_PREFETCH)
    try:
        return _framed(PieceScan(pieces), handle)
    finally:
        pieces.close()  # stops the gunzip thread when the scan ends early


class _Scan(Protocol):
    """What ``_framed`` takes: ``kineto_pieces.PieceScan``, or the tables ``scan_ahead`` kept."""

    events: int
    header: bytes
    array_at: int

    def __iter__(self) -> Iterator[Table]: ...


def _framed(scan: _Scan, handle: Callable[[dict[str, pl.DataFrame]], T]) -> tuple[list[T], int, bytes]:
    # A piece's rows become frames on a second thread while the scanner reads the next piece
    # (both let go of the GIL): the scan stays as fast as the whole-document one on two threads.
    # Results come back in file order; ``handle`` may see two pieces at once.
    with ThreadPoolExecutor(_FRAMERS, thread_name_prefix="tracehouse-frames") as framing:
        framed = []
        for table in scan:
            framed.append(framing.submit(_handled, table, handle))
            if len(framed) > _AHEAD:  # the scan waits: a piece's table is as big as its text
                framed[-_AHEAD - 1].result()
        parts = [piece.result() for piece in framed]
    _check_header(scan.header, scan.array_at)
    return parts, scan.events, scan.header


def _kept(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return frames


def _handled(table: tuple[object, object], handle: Callable[[dict[str, pl.DataFrame]], T]) -> T:
    return handle(_piece_frames(table))


def _piece_frames(table: tuple[object, object]) -> dict[str, pl.DataFrame]:
    frames = kineto_native.table_frames(table)
    return {kind: _compact(frame) for kind, frame in frames.items()}


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """A piece's frame as it is kept until the last piece: ``ts`` as integer ns (the text is
    three times the size; ``timestamps.start_and_duration_ns`` adds the base later) and text
    as Categorical, which holds each distinct name once and lets go of the piece's buffers
    (a filtered String column still points into them)."""
    return frame.with_columns(
        us_text_to_ns(frame["ts"]).alias("ts"),
        pl.col(pl.String).exclude("ts").cast(pl.Categorical),
        # A copy of the integer columns: where a piece's events are all of one frame (a run of
        # cpu ops), its filter keeps every row and polars keeps the scanner's own buffer, which
        # holds the whole piece's struct array (every column, the text of every field) alive:
        # 6.6 MB kept per 8 MB piece for 1.2 MB of rows.
        pl.col(pl.Int64) + 0,
    )


def expanded(frame: pl.DataFrame) -> pl.DataFrame:
    """A compact frame with its text as String again, as ``kineto.py`` builds it."""
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String))


def _check_header(header: bytes, array_at: int) -> None:
    """The document with its array emptied must be one the whole-document scanner takes, with
    its one events array where the pieces' was (not a nested ``traceEvents``, not two)."""
    whole = kineto_native.scan(header)
    if not isinstance(whole, kineto_native.Scanned) or whole.event_count or whole.array_start != array_at:
        raise Declined("header")


def empty_frame(kind: str) -> pl.DataFrame:
    """The ``kind`` frame of an empty array: the columns and types a scan gives."""
    return expanded(_empty_compact(kind))


def _empty_compact(kind: str) -> pl.DataFrame:
    if SCANNER is None:
        raise Declined("the scanner is not built")
    found = SCANNER.scan_piece(b"]", CATEGORIES, True)  # an empty array: the frames' columns and types
    if isinstance(found, int):
        raise Declined(f"empty array at +{found}")
    return _compact(kineto_native.table_frames(found[0])[kind])
