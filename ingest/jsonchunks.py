"""Decode the one big array of a JSON document a chunk at a time, as the document is read.

A profiler trace is one object whose ``traceEvents`` array holds nearly all of its bytes.
Holding the whole text (35 MB for 100k events) and then every decoded event at once is what
makes a one-piece decode heavy.  Here the text arrives in pieces (gunzipped as it is read),
and the array's elements are cut into chunks of about ``chunk_bytes``, each decoded alone
while it is still in cache.

Cuts are found by pattern (``}``, a comma, ``{``), and the pattern can also match inside a
string or a nested object.  Such a cut never decodes: elements wrapped in ``[...]`` form valid
JSON only when every cut lies between two elements of the array (a JSON value read from an
element's start ends exactly at that element's end).  So the decoder's acceptance is what
proves each cut; a chunk that fails is retried at the next cut, a few times, and anything
else unexpected raises ``Unsplittable`` for the caller to decode the whole document instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import threading
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from isal import isal_zlib

from tracehouse.core.errors import TooLarge
from tracehouse.core.limits import INFLATED_CEILING


def _isal_error_class() -> type[Exception]:
    """``isal_zlib.error``: isal's stub declares it an Exception instance, but it is the class."""
    error: object = isal_zlib.error
    assert isinstance(error, type) and issubclass(error, Exception)
    return error


ISAL_ERROR = _isal_error_class()

_WS = re.compile(rb"[ \t\n\r]*")


def after_ws(buf: bytes | bytearray | memoryview, pos: int) -> int:
    """The first index at or after ``pos`` that is not JSON whitespace (``_WS`` matches the
    empty string, so it always matches)."""
    match = _WS.match(buf, pos)
    return match.end() if match else pos


_CUT = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*(?=\{)")  # one object element ends, the next begins
_END = re.compile(rb"\}[ \t\n\r]*\]")  # the last element ends
_TRIES = 8  # cuts tried per chunk before giving up on the document
_READ = 1 << 18  # compressed bytes read at a time


def inflated_past(path: Path, max_inflated_bytes: int) -> TooLarge:
    """The error of a trace whose text passes ``max_inflated_bytes``, as every reader words it."""
    return TooLarge(f"{path.name}: inflates past the {max_inflated_bytes}-byte limit on a trace's decompressed size")


class Unsplittable(Exception):
    """The document is not one this module splits; decode it whole."""


T = TypeVar("T")


def prefetched(pieces: Iterator[T], depth: int = 2, name: str = "tracehouse-gunzip") -> Generator[T, None, None]:
    """``pieces``, produced up to ``depth`` ahead on a worker thread: zlib lets go of the GIL
    while it inflates, so gunzipping runs on another core while the caller decodes (and a big
    trace's next window is attributed while this one is inserted)."""
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: T | BaseException | None) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put(item, timeout=0.05)
                return True
        return False

    def work() -> None:
        try:
            for piece in pieces:
                if not offer(piece):
                    return
            offer(None)
        except BaseException as exc:  # noqa: BLE001  whatever it is, the caller's thread raises it
            offer(exc)

    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the caller stopped early: let the worker go


class ContentDigests:
    """The sha256 of a gzip trace's content, taken from the inflate that reads it for the scan
    instead of a second one (a second gunzip of the largest shared trace costs ~50 ms of CPU).
    The ingest asks for a file's digest before it parses (``want``); ``file_pieces`` then hashes
    what it inflates of that file and, once it has inflated every member to the end, keeps the
    digest for ``take``.  A file read some other way, or not to its end, leaves none: the
    caller computes it itself.  Files are told apart by their stat (device, inode, size,
    modification time), so a file replaced in between is never given the old one's digest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: dict[tuple[int, ...], str | None] = {}

    @staticmethod
    def key(st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def want(self, path: Path) -> tuple[int, ...]:
        return self.want_key(self.key(path.stat()))

    def want_key(self, key: tuple[int, ...]) -> tuple[int, ...]:
        with self._lock:
            self._wanted.setdefault(key, None)
        return key

    def __len__(self) -> int:
        """How many files' digests are wanted or kept, not yet taken."""
        with self._lock:
            return len(self._wanted)

    def take(self, key: tuple[int, ...]) -> str | None:
        with self._lock:
            return self._wanted.pop(key, None)

    def hasher(self, fh: BinaryIO) -> Any:
        """A sha256 to update with the content of the open file ``fh``, if its digest is wanted."""
        key = self.key(os.fstat(fh.fileno()))
        with self._lock:
            wanted = key in self._wanted
        return hashlib.sha256() if wanted else None

    def keep(self, fh: BinaryIO, digest: str) -> None:
        self.keep_key(self.key(os.fstat(fh.fileno())), digest)

    def keep_key(self, key: tuple[int, ...], digest: str) -> None:
        """The digest of the file ``key`` names (its stat when it was read), if it is wanted."""
        with self._lock:
            if key in self._wanted:
                self._wanted[key] = digest


CONTENT_DIGESTS = ContentDigests()


def file_pieces(path: Path, piece_bytes: int, max_inflated_bytes: int = INFLATED_CEILING) -> Iterator[bytes]:
    """The file's bytes at most ``piece_bytes`` at a time, gunzipped when it is gzip (by magic);
    raises :class:`TooLarge` as soon as the inflated text passes ``max_inflated_bytes``.
    ISA-L inflates in about half zlib's time; its errors are raised as ``zlib.error``."""
    with path.open("rb") as fh:
        magic = fh.read(2)
        fh.seek(0)
        if magic != b"\x1f\x8b":
            while piece := fh.read(piece_bytes):
                yield piece
            return
        try:
            yield from _inflated(fh, path, piece_bytes, max_inflated_bytes)
        except ISAL_ERROR as exc:
            raise zlib.error(str(exc)) from None


def _inflated(fh: BinaryIO, path: Path, piece_bytes: int, max_inflated_bytes: int) -> Iterator[bytes]:
    """The members of a gzip file one after another (``cat a.gz b.gz`` is one file), as
    ``gunzip`` and ``kineto.read_bytes`` read them; the cap counts them all together."""
    inflate = None
    room = max_inflated_bytes
    digest = CONTENT_DIGESTS.hasher(fh)  # sha256 lets go of the GIL: hashed on this (gunzip) thread
    while data := fh.read(_READ):
        while data:
            inflate = inflate or isal_zlib.decompressobj(wbits=31)
            if piece := inflate.decompress(data, piece_bytes):
                room -= len(piece)
                if room < 0:
                    raise inflated_past(path, max_inflated_bytes)
                if digest is not None:
                    digest.update(piece)
                yield piece
            data = inflate.unconsumed_tail
            if inflate.eof:  # the next member, if any, starts in what was left over
                data, inflate = inflate.unused_data, None
    if inflate is not None:
        raise Unsplittable("truncated gzip")
    if digest is not None:
        CONTENT_DIGESTS.keep(fh, digest.hexdigest())


class ArrayChunks:
    """Iterating yields ``decode(b"[" + elements + b"]")`` for successive chunks of the array
    under top-level ``key`` (or of a top-level array); ``decode`` returns None when the text
    does not decode.  Afterwards ``rest`` is the document with that array emptied."""

    def __init__(
        self, pieces: Iterator[bytes], key: bytes, decode: Callable[[bytes], list | None], chunk_bytes: int
    ) -> None:
        self.pieces = pieces
        self.opener = re.compile(rb'"' + re.escape(key) + rb'"[ \t\n\r]*:[ \t\n\r]*\[')
        self.key = b'"' + key + b'"'
        self.decode = decode
        self.chunk_bytes = chunk_bytes
        self.buf = b""  # text read and not yet decoded
        self.prefix = b""  # the document up to the array, with the array closed again (emptied)
        self.rest = b""

    def __iter__(self) -> Iterator[list]:
        pos = self._open()
        pos = self._skip_ws(pos)
        last = self.buf[pos : pos + 1] == b"]"
        pos += last
        while not last:
            items, pos, last = self._chunk(pos)
            yield items
        tail = self.buf[pos:] + b"".join(self.pieces)
        if self.key in tail:  # the key twice: which array counts is the decoder's call
            raise Unsplittable("key repeated")
        self.rest = self.prefix + tail

    def _more(self, keep_from: int) -> bool:
        """Append the next piece, dropping the text before ``keep_from``; False at the end."""
        piece = next(self.pieces, None)
        if piece is None:
            return False
        self.buf = self.buf[keep_from:] + piece
        return True

    def _open(self) -> int:
        """Just past the array's ``[``, reading as far as it takes to find it."""
        searched = 0
        while True:
            start = after_ws(self.buf, 0)
            first = self.buf[start : start + 1]
            found = self.opener.search(self.buf, max(0, searched - 256)) if first == b"{" else None
            if first == b"[" or found:
                end = found.end() if found else start + 1
                if found and self.key in self.buf[: found.start()]:
                    raise Unsplittable("key repeated")
                self.prefix = self.buf[:end] + b"]"
                return end
            searched = len(self.buf)
            if first not in (b"", b"{") or not self._more(0):
                raise Unsplittable("no array to split")

    def _skip_ws(self, pos: int) -> int:
        while (pos := after_ws(self.buf, pos)) == len(self.buf):
            if not self._more(pos):
                raise Unsplittable("document ends inside the array")
            pos = 0
        return pos

    def _chunk(self, pos: int) -> tuple[list, int, bool]:
        """Elements from ``pos`` (an element's start) to the first proven cut past the target
        size: the decoded chunk, where the next element starts, and whether the array ended."""
        target = pos + self.chunk_bytes
        for _ in range(_TRIES):
            while (cut := _CUT.search(self.buf, target)) is None:
                if not self._more(pos):  # all text is in: the array ends in what is left
                    if (found := self._last(pos, len(self.buf))) is None:
                        raise Unsplittable("no decodable end of the array")
                    return found
                target, pos = target - pos, 0
            if (items := self._decode(pos, cut.start() + 1)) is not None:
                return items, cut.end(), False
            # Either the array ends before this cut or the cut lies inside an element.
            if (found := self._last(pos, cut.start())) is not None:
                return found
            target = cut.end()
        raise Unsplittable("no decodable cut")

    def _last(self, pos: int, limit: int) -> tuple[list, int, bool] | None:
        """The chunk ending at the array's ``]``, if that lies between ``pos`` and ``limit``."""
        for _, end in zip(range(_TRIES), _END.finditer(self.buf, pos, limit + 1), strict=False):
            if (items := self._decode(pos, end.start() + 1)) is not None:
                return items, end.end(), True
        return None

    def _decode(self, start: int, end: int) -> list | None:
        return self.decode(b"".join((b"[", memoryview(self.buf)[start:end], b"]")))
