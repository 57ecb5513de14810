"""``ingest/nesting.py`` (polars) gives the numpy version's answers (``tests/nesting_numpy.py``,
what ingest ran before it stopped importing numpy): on every shared trace's host ranges and
launch calls, and on made-up threads with ties, zero-length ranges, missing and 64-bit ids."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests import nesting_numpy
from tests.conftest import KINETO_DIR, SHARED_TRACES, require_shared
from tracehouse.ingest import nesting
from tracehouse.ingest.pipeline import detect_format, parse_trace


def _shared() -> list[Path]:
    return sorted(KINETO_DIR.glob("*.json.gz")) + sorted((SHARED_TRACES / "nsys").glob("*.sqlite"))


def _same(ranges: pl.DataFrame, queries: pl.DataFrame) -> int:
    expected = nesting_numpy.enclosing_ranges(ranges, queries)
    got = nesting.enclosing_ranges(ranges, queries)
    assert got.schema == expected.schema
    assert got.equals(expected)
    assert nesting.top_level(ranges).to_list() == nesting_numpy.top_level(ranges).to_list()
    return got.height


@pytest.mark.parametrize("path", _shared(), ids=lambda p: p.name)
def test_the_shared_traces_nest_as_numpy_nested_them(path: Path) -> None:
    require_shared()
    parsed = parse_trace(path, detect_format(path))
    ranges = parsed.ranges.with_row_index("range_idx").select("range_idx", "pid", "tid", "start_ns", "dur_ns")
    launches = parsed.launches.filter(pl.col("start_ns").is_not_null())
    queries = launches.with_row_index("query_idx").select("query_idx", "pid", "tid", t_ns="start_ns")
    pairs = _same(ranges, queries)
    if path.name.startswith(("a100_rank3", "a100_record", "v100")):
        assert pairs > queries.height  # launches sit several ranges deep


def test_ties_zero_lengths_missing_and_wide_ids() -> None:
    big = 2**40  # a pid past 32 bits: the numpy version groups such threads another way
    ranges = pl.DataFrame(
        {
            "pid": [1, 1, 1, 1, 1, 1, None, None, big, big, 1],
            "tid": [7, 7, 7, 7, 7, 7, 3, 3, 5, 5, 8],
            "start_ns": [0, 0, 10, 10, 10, 50, 0, 5, 100, 100, 20],
            "dur_ns": [100, 100, 20, 20, 0, 10, 10, 0, 30, 30, 5],
        },
        schema_overrides={"pid": pl.Int64, "tid": pl.Int64},
    ).with_row_index("range_idx")
    queries = pl.DataFrame(
        {
            "pid": [1, 1, 1, 1, None, None, big, 1, 2, 1],
            "tid": [7, 7, 7, 7, 3, 3, 5, 8, 7, 7],
            "t_ns": [0, 10, 29, 30, 5, 10, 100, 25, 5, 100],
        },
        schema_overrides={"pid": pl.Int64, "tid": pl.Int64},
    ).with_row_index("query_idx")
    assert _same(ranges, queries) > 0
    assert _same(ranges.head(0), queries) == 0
    assert _same(ranges, queries.head(0)) == 0
