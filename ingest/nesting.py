"""Which host ranges enclose a point in time on a thread: vectorized, no per-event Python.

Within one thread, ranges sorted by (start, longest first) nest properly, so a range's depth
is its index minus the number of ranges that ended before it started (one sorted search per
thread).  Ranges at one depth never overlap, so for every query the candidate at each depth is
the last range of that depth starting at or before it (an as-of join by thread and depth); the
query is inside it when it starts before the candidate ends.  All in polars, so the ingest
needs no numpy (its import is ~70 ms of a whole ``tracehouse ingest``);
``tests/test_nesting.py`` checks the answers equal the numpy version's on every shared trace.
"""

from __future__ import annotations

import polars as pl

from tracehouse.core.frames import FrameSchema

CHAIN_SCHEMA: FrameSchema = {"query_idx": pl.UInt32, "range_idx": pl.UInt32, "depth": pl.Int32}
_THREAD = ["pid", "tid"]


def _nested(ranges: pl.DataFrame) -> pl.DataFrame:
    """``ranges`` (``pid, tid, start_ns, dur_ns`` and whatever else) with ``start``, ``end``
    (exclusive; a zero-length range counts as 1 ns) and ``depth`` on its thread, sorted by
    thread, start, longest first (ties in frame order)."""
    spans = ranges.with_columns(
        start=pl.col("start_ns"), end=pl.col("start_ns") + pl.col("dur_ns").clip(lower_bound=1)
    ).sort([*_THREAD, "start", "end"], descending=[False, False, False, True], nulls_last=True, maintain_order=True)
    # Per thread: position in that order minus the ranges that ended at or before its start.
    ended = pl.col("end").sort().search_sorted(pl.col("start"), side="right")
    depth = (pl.int_range(pl.len(), dtype=pl.Int64) - ended.cast(pl.Int64)).over(_THREAD)
    return spans.with_columns(depth=depth.cast(pl.Int32))


def enclosing_ranges(ranges: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """Every (query, range) pair where the range encloses the query's time on the same thread.

    ``ranges``: ``range_idx, pid, tid, start_ns, dur_ns``; ``queries``: ``query_idx, pid, tid,
    t_ns``.  Returns ``query_idx, range_idx, depth`` (0 = outermost), sorted by query then
    depth, so "innermost" is "last of its query".  Zero-length ranges count as 1 ns so a host
    op with a rounded-away duration still encloses its own start.
    """
    if ranges.is_empty() or queries.is_empty():
        return pl.DataFrame(schema=CHAIN_SCHEMA)
    nested = _nested(ranges.select("range_idx", *_THREAD, "start_ns", "dur_ns"))
    # Threads as one integer key (a null pid or tid is a thread of its own, as in a group-by).
    threads = nested.select(_THREAD).unique(maintain_order=True).with_row_index("thread")
    levels = (
        nested.group_by(_THREAD)
        .agg(levels=pl.int_range(pl.col("depth").max() + 1, dtype=pl.Int32))
        .join(threads, on=_THREAD, nulls_equal=True)
        .select("thread", depth=pl.col("levels"))
        .explode("depth")
    )
    spans = (
        nested.join(threads, on=_THREAD, nulls_equal=True, maintain_order="left")
        .select("thread", "depth", "start", "end", "range_idx")
        .sort("start")
    )
    asked = (
        queries.select("query_idx", *_THREAD, t="t_ns")
        .join(threads, on=_THREAD, nulls_equal=True)
        .join(levels, on="thread")
        .sort("t")
    )
    # Both sorted by time just above; within a thread and depth that is the order the as-of join needs.
    found = asked.join_asof(
        spans, left_on="t", right_on="start", by=["thread", "depth"], strategy="backward", check_sortedness=False
    )
    return (
        found.filter(pl.col("t") < pl.col("end"))
        .select("query_idx", "range_idx", "depth")
        .cast(CHAIN_SCHEMA)  # type: ignore[arg-type]  # polars types the mapping key invariantly
        .sort("query_idx", "depth")
    )


def top_level(ranges: pl.DataFrame) -> pl.Series:
    """Boolean mask: ranges not enclosed by another range of the same frame on their thread."""
    if ranges.is_empty():
        return pl.Series("top_level", [], dtype=pl.Boolean)
    nested = _nested(ranges.select(*_THREAD, "start_ns", "dur_ns").with_row_index("_row"))
    return nested.sort("_row").select(top_level=pl.col("depth") == 0).to_series()
