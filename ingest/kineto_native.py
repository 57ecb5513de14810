"""The fast path of the Kineto parse: ``_kineto_scan`` (C, ``_kineto_scan.c``) reads a whole
gunzipped document into Arrow columns in one pass, without a Python object per event.

It is narrow on purpose: it accepts only documents whose fields have the plain shapes Kineto
writes, and declines everything else (a grid that is not three ints, an int beyond int64, a
key with escapes, invalid UTF-8 ...).  A declined document, or a build without the extension,
takes the msgspec path in ``kineto.py``, which stays the reference for what a trace means and
for every error message; ``tests/test_kineto_native.py`` checks that both give equal frames.
"""

from __future__ import annotations

import polars as pl

from tracehouse.ingest.kineto_pieces import CATEGORIES, GPU_KINDS, LAUNCH_CATS, RANGE_CATS, SCANNER

# The compiled scanner (interface in _kineto_scan.pyi, held by kineto_pieces.SCANNER) is None
# where nothing could compile it, and the msgspec path does it all.
AVAILABLE = SCANNER is not None

_FIRST_LAUNCH, _FIRST_RANGE = len(GPU_KINDS), len(GPU_KINDS) + len(LAUNCH_CATS)


class _ArrowArray:
    """Hands the scanner's capsules to polars through the Arrow PyCapsule interface."""

    def __init__(self, schema: object, array: object) -> None:
        self._capsules = (schema, array)

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        return self._capsules


class Scanned:
    """What one scan found: the kept events' columns (``cat`` is the index of the event's
    category in the tuple scanned for), how many events the array held, and where the array
    lies in the text (so the caller can decode the rest, the small header, on its own).
    ``threads`` is 2 where a big array's second half was scanned on a second thread."""

    __slots__ = ("array_end", "array_start", "columns", "event_count", "threads")

    def __init__(self, parts: list[tuple[object, object]], event_count: int, array_start: int, array_end: int) -> None:
        self.columns = pl.concat([pl.DataFrame(_ArrowArray(*part)) for part in parts])
        self.event_count = event_count
        self.array_start = array_start
        self.array_end = array_end
        self.threads = len(parts)


def scan(raw: bytes) -> Scanned | int | None:
    """The complete (``ph`` X) events of the ``KEPT`` categories in ``raw``; the byte offset
    where the scanner declined the document, or None when the extension is not built."""
    if SCANNER is None:
        return None
    found = SCANNER.scan(raw, CATEGORIES)
    if isinstance(found, int):
        return found
    return Scanned(*found)


def table_frames(table: tuple[object, object]) -> dict[str, pl.DataFrame]:
    """:func:`frames` of one table the piece scanner gave (its Arrow schema and array capsules)."""
    return frames(pl.DataFrame(_ArrowArray(*table)))


def frames(columns: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The scanned columns as the gpu / launch / range frames ``kineto.py`` builds from
    msgspec's structs, with the same columns, types and fallbacks (a kernel's device and
    stream default to its pid and tid; ``External id`` to the very old ``external id``)."""
    code = pl.col("cat")
    times = (pl.col("dur").cast(pl.Float64), pl.col("ts"))
    gpu_kind = dict(enumerate(GPU_KINDS.values()))
    range_kind = {i + _FIRST_RANGE: kind for i, kind in enumerate(RANGE_CATS.values())}
    return {
        "gpu": columns.filter(code < _FIRST_LAUNCH).select(
            code.replace_strict(gpu_kind, return_dtype=pl.String).alias("kind"),
            "name",
            pl.coalesce("device", "pid").alias("device"),
            pl.coalesce("stream", "tid").alias("stream"),
            "correlation",
            pl.coalesce("external_id", "external_id_old").alias("external_id"),
            "bytes",
            *(f"{dim}_{axis}" for axis in "xyz" for dim in ("grid", "block")),
            *times,
        ),
        "launch": columns.filter(code.is_between(_FIRST_LAUNCH, _FIRST_RANGE, closed="left")).select(
            "pid", "tid", "correlation", "name", *times
        ),
        "range": columns.filter(code >= _FIRST_RANGE).select(
            "pid",
            "tid",
            "name",
            code.replace_strict(range_kind, return_dtype=pl.String).alias("cat"),
            "input_dims",
            "concrete_inputs",
            "input_types",
            *times,
        ),
    }
