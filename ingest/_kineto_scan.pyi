# The C scanner's interface (ingest/_kineto_scan.c), for type checkers: the extension is optional
# and compiled, so mypy has no source to read.
from typing import Any

def scan(raw: bytes, categories: tuple[bytes, ...], /) -> int | tuple[Any, ...]:
    """The kept complete events as columns (unpacked into kineto_native.Scanned), or the byte
    offset where the scanner declined the document."""
