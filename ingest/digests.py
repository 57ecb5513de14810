"""The digests an ingest keys a trace by: the file's sha256 and, for a gzip trace, the sha256 of
its decompressed content (the same trace recompressed is the same run).  Light on imports
(hashlib, ISA-L): the CLI starts them on another thread before polars and numpy are imported
(``Early``), and ``pipeline`` computes them beside the parse (``_Beside``).
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from pathlib import Path
from typing import cast

from isal import isal_zlib

from tracehouse.core.errors import BadTrace, TooLarge
from tracehouse.core.limits import INFLATED_CEILING

# What a truncated or corrupt gzip raises.  isal's stubs declare its error as an instance
# (``error: Exception``), not the class it is: hence the one cast.
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, cast("type[Exception]", isal_zlib.error))


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


_INFLATE_CHUNK = 1 << 18


def gzip_content_sha256(path: Path, max_inflated_bytes: int = INFLATED_CEILING) -> str:
    """sha256 of a gzip file's decompressed bytes, inflated a bounded piece at a time so the
    trace is never held in memory and a bomb stops at ``max_inflated_bytes``; every member of a
    multi-member file counts, as gunzip has it."""
    digest, total, inflater = hashlib.sha256(), 0, None
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_INFLATE_CHUNK):
                while chunk:
                    inflater = inflater or isal_zlib.decompressobj(wbits=31)
                    piece = inflater.decompress(chunk, _INFLATE_CHUNK)
                    total += len(piece)
                    if total > max_inflated_bytes:
                        raise TooLarge(f"{path.name} inflates past the {max_inflated_bytes}-byte limit")
                    digest.update(piece)
                    chunk = inflater.unconsumed_tail
                    if inflater.eof:  # the next member, if any, starts in what was left over
                        chunk, inflater = inflater.unused_data, None
        if inflater is not None and not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
    except GZIP_ERRORS as exc:
        raise BadTrace(f"{path.name}: truncated or corrupt gzip ({exc})") from None
    return digest.hexdigest()


class _Beside(threading.Thread):
    """A content digest computed on a second thread while the trace is parsed: inflate and
    sha256 release the GIL, so a gzip trace's digest costs little wall time."""

    def __init__(self, path: Path, max_inflated_bytes: int) -> None:
        super().__init__(name="tracehouse-digest", daemon=True)
        self.path, self.cap = path, max_inflated_bytes
        self.digest = ""
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.digest = gzip_content_sha256(self.path, self.cap)
        except BaseException as exc:  # noqa: BLE001  handed to the caller by result(), which raises it
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        return self.digest


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class Early(threading.Thread):
    """The digests of trace files, computed one file after another on a thread of their own
    while the caller imports what the ingest needs: reading, inflating and hashing let go of
    the GIL, the imports (~0.25 s for polars and numpy) hold it, so the digests cost a
    whole-process ingest no wall time.  A file larger than ``max_bytes`` is skipped (the ingest
    refuses it first); ``get`` gives None for a file this thread did not finish without error,
    and the caller computes that one itself, raising what it raises in the order it always did."""

    def __init__(self, paths: list[Path], max_bytes: int, max_inflated_bytes: int) -> None:
        super().__init__(name="tracehouse-early-digests", daemon=True)
        self.paths, self.max_bytes, self.cap = paths, max_bytes, max_inflated_bytes
        self.found: dict[Path, tuple[str, int, str]] = {}
        self.start()

    def run(self) -> None:
        for path in self.paths:
            try:
                if not path.is_file() or path.stat().st_size > self.max_bytes:
                    continue
                sha256, size = file_sha256(path)
                content = gzip_content_sha256(path, self.cap) if is_gzip(path) else sha256
                self.found[path] = (sha256, size, content)
            except Exception:  # noqa: BLE001  the ingest computes it again and reports the error
                continue

    def get(self, path: Path) -> tuple[str, int, str] | None:
        """``(file sha256, size, content sha256)`` of ``path`` as given to the constructor."""
        if path not in self.paths:
            return None
        self.join()
        return self.found.get(path)
