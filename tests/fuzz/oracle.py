"""The fuzz oracle for the C Kineto scanner: on any bytes, the scanner either declines cleanly
(an offset inside the input) or gives exactly the parse of the msgspec reference path, error
for error.  Anything else -- a crash, a sanitizer report, an exception, a difference -- fails.

The scan first runs over a copy of the input in a buffer of exactly its length from
``malloc``, so that under AddressSanitizer a read one byte past the end is reported (a
``bytes`` object always has a NUL after its last byte, which would hide it)."""

from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path

from tests.kineto_docs import assert_same_parse, parse_or_error
from tracehouse.core.frames import ParsedTrace
from tracehouse.ingest import kineto, kineto_native, kineto_pieces, kineto_stream
from tracehouse.ingest.kineto_pieces import CATEGORIES
from tracehouse.ingest.timestamps import us_text_to_ns

_LIBC = ctypes.CDLL(None)  # malloc / free as the process has them: ASan's, when preloaded
_LIBC.malloc.restype = ctypes.c_void_p
_LIBC.malloc.argtypes = [ctypes.c_size_t]
_LIBC.free.argtypes = [ctypes.c_void_p]


def scan_exact(data: bytes) -> object:
    """``_kineto_scan.scan`` over a buffer that ends where ``data`` ends."""
    scanner = kineto_pieces.SCANNER
    assert scanner is not None, "the C scanner is not built"
    if not data:
        return scanner.scan(b"", CATEGORIES)
    address = _LIBC.malloc(len(data))
    if not address:
        raise MemoryError
    try:
        ctypes.memmove(address, data, len(data))
        found = scanner.scan(memoryview((ctypes.c_char * len(data)).from_address(address)), CATEGORIES)
        if not isinstance(found, int):
            kineto_native.Scanned(*found)  # the capsules must import into polars
        return found
    finally:
        _LIBC.free(address)


def _parse(path: Path, *, native: bool) -> tuple[ParsedTrace | None, str | None]:
    # "native" where the scanner took the document (check() made sure), else the msgspec reference.
    return parse_or_error(path, "native" if native else "reference")


def assert_same_pieces(path: Path, whole: kineto_native.Scanned, piece_sizes: tuple[int, ...]) -> None:
    """The document scanned a few bytes at a time gives the whole-document scan's frames: every
    cut an element can have (in a key, a string, a number, between two elements) is made."""
    expected = {
        kind: frame.with_columns(us_text_to_ns(frame["ts"]).alias("ts"))  # pieces keep ns, not text
        for kind, frame in kineto_native.frames(whole.columns).items()
    }
    for piece_bytes in piece_sizes:
        streamed = kineto_stream.scan_file(path, piece_bytes=piece_bytes)
        assert streamed is not None and streamed.event_count == whole.event_count
        for kind, frame in expected.items():
            assert streamed.frames[kind].equals(frame), (kind, piece_bytes)


class Oracle:
    """Checks one input at a time; the text goes to a file because the parse reads a path."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = Path(folder or tempfile.mkdtemp(prefix="th-fuzz-"))
        self.accepted = 0

    def check(self, data: bytes) -> str:
        found = scan_exact(data)
        if isinstance(found, int):
            assert 0 <= found <= len(data), f"declined at {found}, outside the {len(data)}-byte input"
            return "declined"
        if data[:2] == b"\x1f\x8b":
            return "gzip"  # the parse would gunzip it: a different document from the one scanned
        path = self._folder / "input.json"
        path.write_bytes(data)
        native, native_error = _parse(path, native=True)
        if native_error is not None and native_error.startswith(f"{kineto.NativeDeclined.__name__}:"):
            return "header declined"  # the rest of the document is msgspec's: nothing to compare
        # Cuts every few bytes in a small input, a few dozen in a big one (a shared trace as seed);
        # cuts at every byte are tests/test_kineto_stream.py's: per fuzz input they cost the
        # fuzzer most of its executions.
        sizes = (7,) if len(data) < 4096 else (len(data) // 37 + 1,)
        assert_same_pieces(path, kineto_native.scan(data), sizes)  # (the capsules in `found` are spent)
        reference, reference_error = _parse(path, native=False)
        assert native_error == reference_error, (native_error, reference_error)
        if native is not None and reference is not None:
            assert_same_parse(native, reference)
        self.accepted += 1
        return "agreed"
