"""Across many runs: one metric's history with its change points, and the runs × operator
matrix behind a heatmap.

History: runs alike in model, hardware and knobs (:data:`~tracehouse.analyses.compare.KNOB_COLUMNS`,
filtered like ``sweep``), ordered by ingest time — or grouped by git commit in the order each
commit first appears (``order="commit"``: a commit's runs are its repeats).  The metric is
``total`` (end-to-end), or an operator's / attention type's ``time`` or ``share``.

Change points: optimal partitioning of the log values (least squares within segments plus a
BIC-style penalty 2σ² ln n per segment, σ from the median absolute difference of neighbours),
then every cut is checked: the 95 % interval of the after / before ratio of its two
neighbouring segments (``analyses/stats.ratio_interval``) must lie wholly beyond
1 ± ``threshold``, else the weakest cut is merged away and the rest are judged again.
Segments hold at least ``min_size`` points; by commit, cuts fall only where the commit
changes (a commit's repeats are never split).
"""

from __future__ import annotations

import itertools
from typing import Unpack

import numpy as np
import polars as pl
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from tracehouse.analyses.changepoints import partition
from tracehouse.analyses.common import to_frame
from tracehouse.analyses.runs import RunFilters, count_runs, list_runs, run_ids_query
from tracehouse.analyses.stats import ratio_interval
from tracehouse.analyses.sweep import model_runs_query
from tracehouse.core.errors import BadInput
from tracehouse.core.frames import FrameSchema
from tracehouse.schema.models import OperatorRollup, Run

METRICS = ("time", "share")
# The fewest runs a segment between change points may hold (history's min_size); CLI and REST pass
# it by name so that a filter dict can never stand in for it.
MIN_SEGMENT_RUNS = 2
HISTORY_SCHEMA: FrameSchema = {
    "position": pl.Int64,
    "run_id": pl.Int64,
    "git_commit": pl.String,
    "version": pl.String,
    "created_at": pl.Datetime(time_zone="UTC"),
    "key": pl.String,
    "value": pl.Float64,
    "segment": pl.Int64,
    "change_point": pl.Boolean,
    "segment_median": pl.Float64,
    "change_ratio": pl.Float64,
    "change_low": pl.Float64,
    "change_high": pl.Float64,
}
_MATRIX_SCHEMA: FrameSchema = {
    "run_id": pl.Int64,
    "model": pl.String,
    "attention_backend": pl.String,
    "experiment": pl.String,
    "key": pl.String,
    "value": pl.Float64,
}
_SERIES_SCHEMA: FrameSchema = {
    "run_id": pl.Int64,
    "git_commit": pl.String,
    "version": pl.String,
    "created_at": pl.Datetime(time_zone="UTC"),
    "total_ns": pl.Int64,
    "ns": pl.Float64,
}


def _series(session: Session, model: str, key: str, metric: str, by: str, **filters: object) -> pl.DataFrame:
    """The alike runs (``run_id, git_commit, version, created_at``) with their ``value``, in one
    query: the filter is joined, not listed as thousands of run ids, and only these runs are read."""
    alike = model_runs_query(session, model, **filters).subquery()
    stmt = select(Run.id, Run.git_commit, Run.version, Run.created_at, Run.total_ns).join(
        alike, alike.c.run_id == Run.id
    )
    if key != "total":
        col = OperatorRollup.attention_type if by == "attention_type" else OperatorRollup.operator
        sums = (
            select(OperatorRollup.run_id, func.sum(OperatorRollup.total_ns).label("ns"))
            .join(alike, alike.c.run_id == OperatorRollup.run_id)
            .where(col == key)
            .group_by(OperatorRollup.run_id)
            .subquery()
        )
        stmt = stmt.outerjoin(sums, sums.c.run_id == Run.id).add_columns(sums.c.ns)
    else:
        stmt = stmt.add_columns(literal(None).label("ns"))
    frame = to_frame(session, stmt, _SERIES_SCHEMA).with_columns(pl.col("created_at").dt.replace_time_zone("UTC"))
    total, ns = pl.col("total_ns").cast(pl.Float64), pl.col("ns").fill_null(0.0)
    if key == "total":
        value = total if metric == "time" else pl.lit(1.0)
    else:  # a run without the key has 0; a run of no recorded time is divided by 1
        value = ns if metric == "time" else ns / pl.when(total.is_null() | (total == 0)).then(1.0).otherwise(total)
    return frame.with_columns(value=value.cast(pl.Float64)).drop("total_ns", "ns")


def history(
    session: Session,
    model: str,
    key: str = "total",
    metric: str = "time",
    *,
    by: str = "operator",
    order: str = "date",
    threshold: float = 0.05,
    min_size: int = MIN_SEGMENT_RUNS,
    **filters: object,
) -> pl.DataFrame:
    """One row per run, in order: ``position, run_id, git_commit, version, created_at, key,
    value`` (ns or fraction), ``segment`` (0, 1 ... between change points), ``change_point``
    (the run where a new segment begins), ``segment_median`` and, on change points,
    ``change_ratio`` (this segment's values over the previous one's) with its interval."""
    if metric not in METRICS:
        raise BadInput(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if order not in ("date", "commit") or by not in ("operator", "attention_type"):
        raise BadInput("order is date or commit; by is operator or attention_type")
    if min_size < 1:
        raise BadInput("min_size must be at least 1")
    series = _ordered(_series(session, model, key, metric, by, **filters), order).with_columns(
        key=pl.lit(key), position=pl.int_range(pl.len(), dtype=pl.Int64)
    )
    cuts = sorted(_segment(series["value"].to_numpy(), _boundaries(series, order), threshold, min_size))
    return _label(series, cuts)


def _ordered(runs: pl.DataFrame, order: str) -> pl.DataFrame:
    runs = runs.sort("created_at", "run_id")
    if order == "commit":  # commits in order of first appearance; a commit's runs together
        first = runs.group_by("git_commit").agg(pl.col("created_at").min().alias("first_seen"))
        runs = (
            runs.join(first, on="git_commit", how="left", nulls_equal=True)
            .sort("first_seen", "git_commit", "created_at", "run_id", nulls_last=True)
            .drop("first_seen")
        )
    return runs


def _boundaries(series: pl.DataFrame, order: str) -> set[int]:
    """Positions a change may begin at: any run by date; a commit's first run by commit."""
    if order == "date":
        return set(range(1, series.height))
    commits = series["git_commit"].to_list()
    return {i for i in range(1, len(commits)) if commits[i] != commits[i - 1]}


def _segment(values: np.ndarray, allowed: set[int], threshold: float, min_size: int) -> set[int]:
    """Change points (module docstring): optimal partitioning of the log values, then each cut
    kept only while the interval between its neighbouring segments supports it."""
    cuts = partition(np.log(np.clip(values, 1e-12, None)), allowed, min_size)
    while cuts:
        edges = [0, *cuts, len(values)]
        weakest = None
        for i, cut in enumerate(cuts):
            _, low, high = ratio_interval(values[edges[i] : cut].tolist(), values[cut : edges[i + 2]].tolist())
            if low is None or high is None or not (low > 1 + threshold or high < 1 / (1 + threshold)):
                weakest = cut
                break
        if weakest is None:
            break
        cuts = [c for c in cuts if c != weakest]  # merge, and judge the merged segments again
    return set(cuts)


def _label(series: pl.DataFrame, cuts: list[int]) -> pl.DataFrame:
    values = series["value"].to_list()
    edges = [0, *cuts, len(values)]
    segment = np.zeros(len(values), dtype=np.int64)
    medians = np.zeros(len(values))
    change: dict[int, tuple[float | None, float | None, float | None]] = {}
    for i, (start, end) in enumerate(itertools.pairwise(edges)):
        segment[start:end] = i
        medians[start:end] = float(np.median(values[start:end])) if end > start else np.nan
        if i:
            change[start] = ratio_interval(values[edges[i - 1] : start], values[start:end])
    out = series.with_columns(
        segment=pl.Series(segment),
        segment_median=pl.Series(medians),
        change_point=pl.Series([i in change for i in range(len(values))]),
        change_ratio=pl.Series([change.get(i, (None,))[0] for i in range(len(values))], dtype=pl.Float64),
        change_low=pl.Series([change.get(i, (None, None))[1] for i in range(len(values))], dtype=pl.Float64),
        change_high=pl.Series([change.get(i, (None, None, None))[2] for i in range(len(values))], dtype=pl.Float64),
    )
    return out.select(list(HISTORY_SCHEMA))


def matrix(
    session: Session,
    metric: str = "share",
    by: str = "operator",
    *,
    offset: int = 0,
    limit: int | None = None,
    **filters: Unpack[RunFilters],
) -> pl.DataFrame:
    """Runs × keys, the table behind a heatmap, in long form (one row per cell, as plotting
    libraries take it; ``tracehouse matrix`` pivots it for a terminal): ``run_id, model,
    attention_backend, experiment, key`` (operator or attention type) and ``value`` — its
    ``time`` (ns) or ``share`` of the run; every run × key, 0 where the run has none, ordered by
    run id then key.  ``offset`` / ``limit`` cut cells ``offset`` to ``offset + limit`` of that
    order (:func:`matrix_page` gives the total too).  ``filters`` are
    :func:`~tracehouse.analyses.runs.list_runs`' (model, family, hardware, attention_backend,
    experiment, tags, since, until)."""
    return matrix_page(session, metric, by, offset=offset, limit=limit, **filters)[0]


def matrix_page(
    session: Session,
    metric: str = "share",
    by: str = "operator",
    *,
    offset: int = 0,
    limit: int | None = None,
    **filters: Unpack[RunFilters],
) -> tuple[pl.DataFrame, int]:
    """:func:`matrix`'s cells ``offset`` to ``offset + limit`` and how many cells it has in all.
    The page is cut over the runs in the database: its K keys are every filtered run's, so cell
    ``i`` is run ``i // K``'s key ``i % K``, and only the page's runs and their rollups are read."""
    if metric not in METRICS or by not in ("operator", "attention_type"):
        raise BadInput("metric is time or share; by is operator or attention_type")
    if offset < 0 or (limit is not None and limit < 0):
        raise BadInput("offset and limit must not be negative")
    col = getattr(OperatorRollup, by)
    filtered = run_ids_query(**filters)
    found = session.scalars(select(col).where(OperatorRollup.run_id.in_(filtered), col.is_not(None)).distinct())
    keys = pl.Series("key", list(found), dtype=pl.String).sort()  # the cells' order within a run
    total = count_runs(session, **filters) * keys.len()
    if limit == 0 or offset >= total:
        return pl.DataFrame(schema=_MATRIX_SCHEMA), total
    first = offset // keys.len()
    last = total // keys.len() if limit is None else -(-(offset + limit) // keys.len())
    runs = list_runs(session, **filters, offset=first, limit=last - first)
    runs = runs.select("run_id", "model", "attention_backend", "experiment", "total_ns")
    # The page's runs joined, not sent as an IN list of up to thousands of ids.
    page_ids = filtered.order_by(Run.id).offset(first).limit(last - first).subquery()
    stmt = (
        select(OperatorRollup.run_id, col, func.sum(OperatorRollup.total_ns))
        .join(page_ids, page_ids.c.id == OperatorRollup.run_id)
        .where(col.is_not(None))
        .group_by(OperatorRollup.run_id, col)
    )
    cells = to_frame(session, stmt, {"run_id": pl.Int64, "key": pl.String, "ns": pl.Float64})
    grid = runs.join(keys.to_frame(), how="cross")
    full = grid.join(cells, on=["run_id", "key"], how="left").with_columns(pl.col("ns").fill_null(0.0))
    value = pl.col("ns") if metric == "time" else pl.col("ns") / pl.col("total_ns")
    page = (
        full.with_columns(value=pl.when(pl.col("total_ns") > 0).then(value).otherwise(0.0))
        .select(list(_MATRIX_SCHEMA))
        .sort("run_id", "key")
    )
    return page.slice(offset - first * keys.len(), limit), total
