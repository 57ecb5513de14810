# The C scanner's interface (ingest/_kineto_scan.c), for type checkers: the extension is optional
# and compiled, so mypy has no source to read.
from typing import Any

def scan(raw: bytes, categories: tuple[bytes, ...], /) -> int | tuple[Any, ...]:
    """The kept complete events as columns (unpacked into kineto_native.Scanned), or the byte
    offset where the scanner declined the document."""

def scan_piece(
    buffer: bytes, categories: tuple[bytes, ...], at_start: bool, /
) -> int | tuple[tuple[Any, Any], int, int, bool]:
    """One piece of the events array: ((schema, array) capsules, events, bytes consumed, whether
    the array ended), or the byte offset where the scanner declined the piece."""
