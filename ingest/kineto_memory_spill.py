"""A big trace's memory events, for the windowed ingest: written to the spill folder as they
are read, and handed back in time order a window at a time.

Held in memory are each event's time and place in the file (16 bytes, where a held event is
72 and sorting the held events takes as much again) and one window's events.  A window is a
stretch of the time order (file order on ties) given by rank, numbered by ``seq`` exactly as
``kineto_memory.in_time_order`` numbers the whole trace's events: the rows stored are the same
whichever way the trace was read.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tracehouse.ingest.kineto_memory import EVENT_SCHEMA, MemoryChunks

PART_EVENTS = 1 << 15  # events written to one file (about 2.5 MB): fewer, bigger reads
_ORDER_SCHEMA = {"ts_ns": pl.Int64, "file_order": pl.Int64}


@dataclass(frozen=True, slots=True)
class _MemoryPart:
    path: Path
    lo: int  # its earliest and latest event's time (relative to the trace's base)
    hi: int


@dataclass
class SpilledMemory:
    """A trace's memory events in ``folder``'s parts, and every event's (time, file order)."""

    folder: Path
    parts: list[_MemoryPart]
    order: pl.DataFrame  # every event's ts_ns (relative) and file_order, in time order
    base: int

    @property
    def times(self) -> pl.Series:
        """Every event's time (relative to the trace's base), in time order."""
        return self.order["ts_ns"]

    def ranked(self, start: int, end: int) -> pl.DataFrame:
        """Events ``start`` to ``end`` (exclusive) of the time order: ``seq`` then
        ``EVENT_SCHEMA``, their time absolute, as ``in_time_order`` gives them."""
        first, last = self.order.row(start), self.order.row(end - 1)
        after_first = (pl.col("ts_ns") > first[0]) | (
            (pl.col("ts_ns") == first[0]) & (pl.col("file_order") >= first[1])
        )
        before_last = (pl.col("ts_ns") < last[0]) | ((pl.col("ts_ns") == last[0]) & (pl.col("file_order") <= last[1]))
        held = [
            pl.read_ipc(part.path.read_bytes()).filter(after_first & before_last)
            for part in self.parts
            if part.hi >= first[0] and part.lo <= last[0]
        ]
        window = pl.concat(held).sort("ts_ns", "file_order")
        if window.height != end - start:  # the order and the parts were written together
            raise RuntimeError(f"memory window {start}..{end} read {window.height} events")
        return (
            window.drop("file_order")
            .with_columns(pl.col("ts_ns") + self.base)
            .with_row_index("seq", offset=start)
            .with_columns(pl.col("seq").cast(pl.Int64))
        )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def spill_memory(path: Path, max_inflated_bytes: int, folder: Path) -> SpilledMemory:
    """The trace's readable memory events (none where its header does not say memory was
    recorded, or where the pass trips on its text, as ``read_memory_events``), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks = MemoryChunks(path, max_inflated_bytes)
    parts: list[_MemoryPart] = []
    orders: list[pl.DataFrame] = []
    pending = pl.DataFrame(schema={**EVENT_SCHEMA, "file_order": pl.Int64})
    read = 0
    for frame in chunks:
        numbered = frame.with_columns(file_order=pl.int_range(read, read + frame.height, dtype=pl.Int64))
        pending, read = pl.concat([pending, numbered]), read + frame.height
        while pending.height >= PART_EVENTS:  # each part a bounded read, however big the chunk
            _write_part(pending.head(PART_EVENTS), folder, parts, orders)
            pending = pending.slice(PART_EVENTS)
    if chunks.failed:  # as read_memory_events: none of them (``remove`` takes the parts written)
        parts, orders = [], []
    elif pending.height:
        _write_part(pending, folder, parts, orders)
    order = pl.concat([pl.DataFrame(schema=_ORDER_SCHEMA), *orders]).sort("ts_ns", "file_order")
    return SpilledMemory(folder, parts, order, chunks.base)


def _write_part(frame: pl.DataFrame, folder: Path, parts: list[_MemoryPart], orders: list[pl.DataFrame]) -> None:
    path = folder / f"memory{len(parts):06d}.arrow"
    frame.select(*EVENT_SCHEMA, "file_order").rechunk().write_ipc(path)  # one batch, not one per chunk read
    times = frame["ts_ns"]
    parts.append(_MemoryPart(path, int(times.min()), int(times.max())))  # type: ignore[arg-type]
    orders.append(frame.select("ts_ns", "file_order"))
