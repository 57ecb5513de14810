"""Which host ranges enclose a point in time on a thread: vectorized, no per-event Python.

Within one thread, ranges sorted by (start, longest first) nest properly, so a range's depth
is its index minus the number of ranges that ended before it started (one ``searchsorted``).
Ranges at one depth never overlap, so for every query the candidate at each depth is found
with one more ``searchsorted``; the query is inside it when it starts before the candidate
ends.  Cost: O((ranges + queries) · log n · max depth), all in numpy.
"""

from __future__ import annotations

import numpy as np
import polars as pl

CHAIN_SCHEMA = {"query_idx": pl.UInt32, "range_idx": pl.UInt32, "depth": pl.Int32}


def range_depths(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order and nesting depth of the ranges of one thread (``end`` exclusive, > start)."""
    order = np.lexsort((-end, start))
    s, e = start[order], end[order]
    depth = np.arange(len(s)) - np.searchsorted(np.sort(e), s, side="right")
    return order, depth


def _thread_chain(start: np.ndarray, end: np.ndarray, range_ids: np.ndarray,
                  t: np.ndarray, query_ids: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    order, depth = range_depths(start, end)
    s, e, ids = start[order], end[order], range_ids[order]
    parts = []
    for level in range(int(depth.max()) + 1 if len(depth) else 0):
        at_level = np.nonzero(depth == level)[0]
        pos = np.searchsorted(s[at_level], t, side="right") - 1
        has = pos >= 0
        cand = at_level[pos[has]]
        inside = t[has] < e[cand]
        parts.append((query_ids[has][inside], ids[cand[inside]],
                      np.full(int(inside.sum()), level, dtype=np.int32)))
    return parts


def enclosing_ranges(ranges: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """Every (query, range) pair where the range encloses the query's time on the same thread.

    ``ranges``: ``range_idx, pid, tid, start_ns, dur_ns``; ``queries``: ``query_idx, pid, tid,
    t_ns``.  Returns ``query_idx, range_idx, depth`` (0 = outermost).  Zero-length ranges count
    as 1 ns so a host op with a rounded-away duration still encloses its own start.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    by_thread = ranges.partition_by(["pid", "tid"], as_dict=True)
    for key, q in queries.partition_by(["pid", "tid"], as_dict=True).items():
        r = by_thread.get(key)
        if r is None or r.is_empty():
            continue
        start = r["start_ns"].to_numpy()
        end = start + np.maximum(r["dur_ns"].to_numpy(), 1)
        parts.extend(_thread_chain(start, end, r["range_idx"].to_numpy(),
                                   q["t_ns"].to_numpy(), q["query_idx"].to_numpy()))
    if not parts:
        return pl.DataFrame(schema=CHAIN_SCHEMA)
    return pl.DataFrame({
        "query_idx": np.concatenate([p[0] for p in parts]),
        "range_idx": np.concatenate([p[1] for p in parts]),
        "depth": np.concatenate([p[2] for p in parts]),
    }).cast(CHAIN_SCHEMA)  # type: ignore[arg-type]


def top_level(ranges: pl.DataFrame) -> pl.Series:
    """Boolean mask: ranges not enclosed by another range of the same frame on their thread."""
    mask = np.zeros(ranges.height, dtype=bool)
    indexed = ranges.with_row_index("_row")
    for r in indexed.partition_by(["pid", "tid"]):
        start = r["start_ns"].to_numpy()
        end = start + np.maximum(r["dur_ns"].to_numpy(), 1)
        order, depth = range_depths(start, end)
        mask[r["_row"].to_numpy()[order][depth == 0]] = True
    return pl.Series("top_level", mask)
