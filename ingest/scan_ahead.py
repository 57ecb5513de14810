"""The command line's first trace, gunzipped and scanned while the command imports polars.

A ``tracehouse ingest FILE`` process spends ~0.1 s importing polars and the pipeline before
it reads a byte, and the gunzip and the C scan of a typical trace take about as long again
while needing neither polars nor, mostly, the GIL.  So ``run_ingest`` calls :func:`started`
first: a thread reads the file whole, inflates it in one call and walks it with
``kineto_pieces.PieceScan`` (one scanner call), and ``kineto_stream.scan_file`` takes the
tables (:func:`take`) and frames them exactly as it frames its own scan's.

Why whole, and in one call each: whenever this thread wants the GIL back from the importing
thread it waits up to the interpreter's switch interval (5 ms).  An earlier attempt that ran
the pipeline's piece-by-piece read here gained only 4-8 % (docs/NOTES-scanahead.md).  Beside
``import polars``, the pipeline's gzip reader (isal's, which pulls its input through the file
object) took 60-69 ms to inflate the largest shared trace; one ``decompressobj`` call, 27 ms.

What keeps this safe and bounded:
- Only a regular file (opened without blocking, checked again once open) whose text starts as
  JSON, up to ``AHEAD_BYTES`` of it (a gzip file up to an eighth of that, in at most
  ``MAX_MEMBERS`` members); a longer text is dropped as soon as it shows.
- Anything the early read or scan raises only drops it: the pipeline then reads the file
  itself, and its own read names the error, as it always has.
- The tables are taken only for the same file (device, inode, size and modification time,
  before and after the read) and the same inflate limit, once.  ``discard`` joins the thread
  and drops the tables and the digest requests the early read made; ``run_ingest`` calls it
  once its first unit has landed (a duplicate first file is never parsed) and, through
  ``started``, on the way out whatever happens.
- Nothing here imports polars (tests/test_scan_ahead.py checks that in a fresh process).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isal import isal_zlib

from tracehouse.ingest.jsonchunks import CONTENT_DIGESTS, ContentDigests, after_ws
from tracehouse.ingest.kineto_pieces import PieceScan, Table

AHEAD_BYTES = 64 << 20  # the most text the early scan holds (and its tables, about as much)
_GZIP_RATIO = 8  # Kineto JSON compresses 15-20x: a bigger gzip file would pass AHEAD_BYTES
_SNIFF_BYTES = 4096
MAX_MEMBERS = 64  # real traces are one member, or a few appended
_GZIP_MAGIC = b"\x1f\x8b"


class Scanned:
    """The early scan's tables, event count and header: what ``kineto_stream`` frames."""

    __slots__ = ("array_at", "events", "header", "tables")

    def __init__(self, scan: PieceScan, tables: list[Table]) -> None:
        self.tables, self.events, self.header, self.array_at = tables, scan.events, scan.header, scan.array_at

    def __iter__(self) -> Iterator[Table]:
        return iter(self.tables)


class _Whole:
    """The whole text as the one piece ``PieceScan`` reads (a view: slicing it copies nothing)."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = memoryview(text)

    def joined(self, carry: bytes) -> bytes:
        return carry + bytes(self.text)


class Ahead:
    """One file's early scan, on a thread of its own: ``scanned`` once the thread has finished,
    None where the scan was dropped (the pipeline's own read then says what is wrong)."""

    def __init__(self, path: Path, key: tuple[int, ...], max_inflated_bytes: int) -> None:
        self.path, self.key, self.limit = path, key, max_inflated_bytes
        self.scanned: Scanned | None = None
        self.thread = threading.Thread(target=self._run, name="tracehouse-scanahead", daemon=True)

    def _run(self) -> None:
        try:
            raw = _read(self.path, self.key)
            if raw is None:
                return
            gzipped = raw[:2] == _GZIP_MAGIC
            text = _inflated(raw, min(self.limit, AHEAD_BYTES)) if gzipped else raw
            # Plain text was sniffed as it was read; inflated text is sniffed here.
            if text is None or len(text) > self.limit or (gzipped and not _may_be_json(text)):
                return
            scan = PieceScan(iter([_Whole(text)]))
            tables = list(scan)
            if ContentDigests.key(self.path.stat()) != self.key:  # replaced while it was read
                return
            if gzipped:  # the pipeline asks for the content's digest: this read has the content
                CONTENT_DIGESTS.want_key(self.key)
                CONTENT_DIGESTS.keep_key(self.key, hashlib.sha256(text).hexdigest())
            self.scanned = Scanned(scan, tables)
        except Exception:  # noqa: BLE001  dropped: the pipeline's own read reports what is wrong
            self.scanned = None


def _read(path: Path, key: tuple[int, ...]) -> bytes | None:
    """The file's bytes, where it is still the regular file ``start`` looked at and no longer
    than the early scan holds (opened without blocking: a FIFO put in its place never blocks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or ContentDigests.key(st) != key:
            return None
        head = fh.read(_SNIFF_BYTES)
        if head[:2] != _GZIP_MAGIC and not _may_be_json(head):
            return None  # an Nsight export, a CSV ...: not read further
        fh.seek(0)
        raw = fh.read(AHEAD_BYTES + 1)  # bounded, should the file have grown since
    limit = AHEAD_BYTES // _GZIP_RATIO if raw[:2] == _GZIP_MAGIC else AHEAD_BYTES
    return raw if len(raw) <= limit else None


def _may_be_json(text: bytes) -> bool:
    """Whether the text starts as a Kineto trace may (not an Nsight export, not a CSV)."""
    first = memoryview(text)[:_SNIFF_BYTES]
    at = after_ws(first, 0)
    return bytes(first[at : at + 1]) in (b"{", b"[")


def _inflated(raw: bytes, limit: int) -> bytes | None:
    """Every gzip member of ``raw`` inflated, in one call each (a reader pulling its input
    through Python would take the GIL back from the importing thread dozens of times); None
    past ``limit`` bytes, past ``MAX_MEMBERS`` members (each one copies the rest of the file)
    or for anything but whole members back to back: the pipeline's own read takes those, and
    names what is wrong."""
    parts: list[bytes] = []
    room = limit
    while raw:
        if raw[:2] != _GZIP_MAGIC or len(parts) == MAX_MEMBERS:
            return None
        member = isal_zlib.decompressobj(wbits=31)
        parts.append(member.decompress(raw, room + 1))
        room -= len(parts[-1])
        if not member.eof or room < 0:
            return None
        raw = member.unused_data
    return b"".join(parts)


class _Slot:
    """The one early scan a process holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ahead: Ahead | None = None
        self._taken: list[tuple[int, ...]] = []  # files whose scans were taken: their digest requests

    def taken(self, key: tuple[int, ...]) -> None:
        with self._lock:
            self._taken.append(key)

    def forget_taken(self) -> list[tuple[int, ...]]:
        with self._lock:
            keys, self._taken = self._taken, []
            return keys

    def put(self, ahead: Ahead) -> None:
        with self._lock:
            self._ahead = ahead

    def held(self) -> Ahead | None:
        with self._lock:
            return self._ahead

    def pop(self, ahead: Ahead | None = None) -> Ahead | None:
        """The scan held (only where it is ``ahead``, when given), no longer held."""
        with self._lock:
            held = self._ahead
            if ahead is None or held is ahead:
                self._ahead = None
            return held


_SLOT = _Slot()


def start(path: Path, max_inflated_bytes: int) -> None:
    """Scan ``path`` on a thread where it may be a Kineto trace short enough to hold whole
    (the thread reads and sniffs it: nothing here opens the file)."""
    discard()
    try:
        st = path.stat()
    except OSError:
        return  # the pipeline says what is wrong with it
    if not stat.S_ISREG(st.st_mode) or st.st_size > AHEAD_BYTES:
        return
    ahead = Ahead(path, ContentDigests.key(st), max_inflated_bytes)
    _SLOT.put(ahead)
    try:
        ahead.thread.start()
    except RuntimeError:  # no thread to be had: the pipeline reads the file itself
        _SLOT.pop(ahead)


def held() -> Ahead | None:
    """The early scan this process holds, if any: taken or discarded scans are no longer held."""
    return _SLOT.held()


def take(path: Path, max_inflated_bytes: int) -> Scanned | None:
    """The early scan of ``path`` at this inflate limit, once (waiting for it to finish), or
    None where there is none for this very file (another file, replaced since, dropped)."""
    ahead = _SLOT.held()
    if ahead is None:
        return None  # the service, and every later file: one read of a global
    try:
        key = ContentDigests.key(path.stat())
    except OSError:
        return None
    if key != ahead.key or max_inflated_bytes != ahead.limit or _SLOT.pop(ahead) is not ahead:
        return None  # another file, or another caller took it first
    ahead.thread.join()
    _SLOT.taken(ahead.key)
    return ahead.scanned


def discard() -> None:
    """Drop the early scan, if any, once its thread has finished, and the digest requests the
    early reads made, taken or not (the pipeline has taken the digests it asked for by then)."""
    ahead = _SLOT.pop()
    keys = _SLOT.forget_taken()
    if ahead is not None:
        ahead.thread.join()
        ahead.scanned = None
        keys.append(ahead.key)
    for key in keys:
        CONTENT_DIGESTS.take(key)


@contextmanager
def started(path: Path | None, max_inflated_bytes: int) -> Iterator[None]:
    """``start`` (none for no path), and ``discard`` on the way out whatever happens."""
    if path is not None:
        start(path, max_inflated_bytes)
    try:
        yield
    finally:
        discard()
