"""The nesting of host ranges as ingest computed it with numpy before it moved to polars:
the oracle ``tests/test_nesting.py`` compares ``ingest/nesting.py`` with (verbatim but this docstring)."""

from __future__ import annotations

import numpy as np
import polars as pl

from tracehouse.core.frames import FrameSchema

CHAIN_SCHEMA: FrameSchema = {"query_idx": pl.UInt32, "range_idx": pl.UInt32, "depth": pl.Int32}


def range_depths(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order and nesting depth of the ranges of one thread (``end`` exclusive, > start)."""
    order = _start_then_longest(start, end)
    s, e = start[order], end[order]
    # Ends come nearly sorted (ranges are mostly short and start-ordered): the stable sort
    # (timsort) is ten times quicker there than the default introsort.
    depth = np.arange(len(s)) - np.searchsorted(np.sort(e, kind="stable"), s, side="right")
    return order, depth


def _start_then_longest(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``np.lexsort((-end, start))``, computed faster: a stable sort on the start alone (near
    free, ranges come nearly start-ordered), then the full sort only within runs of equal
    starts.  Same permutation: both are stable, and only tied starts look at the end."""
    order = np.argsort(start, kind="stable")
    s = start[order]
    tie = s[1:] == s[:-1]
    if not tie.any():
        return order
    in_run = np.zeros(len(s), dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    at = np.flatnonzero(in_run)  # each run keeps its positions: its start sorts before the next run's
    tied = order[at]
    order[at] = tied[np.lexsort((-end[tied], start[tied]))]
    return order


def _thread_chain(
    start: np.ndarray, end: np.ndarray, range_ids: np.ndarray, t: np.ndarray, query_ids: np.ndarray
) -> list[tuple[np.ndarray, ...]]:
    order, depth = range_depths(start, end)
    s, e, ids = start[order], end[order], range_ids[order]
    parts: list[tuple[np.ndarray, ...]] = []
    for level in range(int(depth.max()) + 1 if len(depth) else 0):
        at_level = np.nonzero(depth == level)[0]
        pos = np.searchsorted(s[at_level], t, side="right") - 1
        has = pos >= 0
        cand = at_level[pos[has]]
        inside = t[has] < e[cand]
        parts.append((query_ids[has][inside], ids[cand[inside]], np.full(int(inside.sum()), level, dtype=np.int32)))
    return parts


def enclosing_ranges(ranges: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """Every (query, range) pair where the range encloses the query's time on the same thread.

    ``ranges``: ``range_idx, pid, tid, start_ns, dur_ns``; ``queries``: ``query_idx, pid, tid,
    t_ns``.  Returns ``query_idx, range_idx, depth`` (0 = outermost), sorted by query then
    depth, so "innermost" is "last of its query".  Zero-length ranges count as 1 ns so a host
    op with a rounded-away duration still encloses its own start.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    by_thread = _thread_rows(ranges)
    start_ns, dur_ns = ranges["start_ns"].to_numpy(), ranges["dur_ns"].to_numpy()
    range_ids = ranges["range_idx"].to_numpy()
    t, query_ids = queries["t_ns"].to_numpy(), queries["query_idx"].to_numpy()
    for key, q in _thread_rows(queries).items():
        r = by_thread.get(key)
        if r is None or not len(r):
            continue
        start = start_ns[r]
        end = start + np.maximum(dur_ns[r], 1)
        parts.extend(_thread_chain(start, end, range_ids[r], t[q], query_ids[q]))
    if not parts:
        return pl.DataFrame(schema=CHAIN_SCHEMA)
    query = np.concatenate([p[0] for p in parts])
    # Each thread's parts come level by level, so a stable sort on the query alone orders
    # every query's ranges by depth.
    order = np.argsort(query, kind="stable")
    return (
        pl.DataFrame(
            {
                "query_idx": query[order],
                "range_idx": np.concatenate([p[1] for p in parts])[order],
                "depth": np.concatenate([p[2] for p in parts])[order],
            }
        )
        .cast(CHAIN_SCHEMA)  # type: ignore[arg-type]  # polars types the mapping key invariantly
        .set_sorted("query_idx")
    )


def _thread_rows(frame: pl.DataFrame) -> dict[tuple, np.ndarray]:
    """``(pid, tid) → the frame's row numbers on that thread``, in frame order (what
    ``partition_by`` gives, at a tenth of its cost: one stable sort of a packed thread key)."""
    pid, tid = frame["pid"], frame["tid"]
    if not (_fits_int32(pid) and _fits_int32(tid)):  # ids beyond 32 bits, or missing: polars groups them
        rows = frame.select("pid", "tid").with_row_index("_row").partition_by(["pid", "tid"], as_dict=True)
        return {key: part["_row"].to_numpy() for key, part in rows.items()}
    pids, tids = pid.to_numpy().astype(np.int64), tid.to_numpy().astype(np.int64)
    key = pids * 2**32 + (tids + 2**31)  # one int64 per thread, no two threads alike
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return {(int(pids[g[0]]), int(tids[g[0]])): g for g in np.split(order, cuts) if len(g)}


def _fits_int32(ids: pl.Series) -> bool:
    if not ids.dtype.is_integer() or ids.null_count():
        return False
    return bool(ids.is_between(-(2**31), 2**31 - 1).all())  # True for an empty series too


def top_level(ranges: pl.DataFrame) -> pl.Series:
    """Boolean mask: ranges not enclosed by another range of the same frame on their thread."""
    mask = np.zeros(ranges.height, dtype=bool)
    start_ns, dur_ns = ranges["start_ns"].to_numpy(), ranges["dur_ns"].to_numpy()
    for rows in _thread_rows(ranges).values():
        start = start_ns[rows]
        end = start + np.maximum(dur_ns[rows], 1)
        order, depth = range_depths(start, end)
        mask[rows[order][depth == 0]] = True
    return pl.Series("top_level", mask)
