"""Across many runs: one metric's history with its change points, and the runs × operator
matrix behind a heatmap.

History: runs alike in model, hardware and knobs (:data:`~tracehouse.analyses.compare.KNOB_COLUMNS`,
filtered like ``sweep``), ordered by ingest time — or grouped by git commit in the order each
commit first appears (``order="commit"``: a commit's runs are its repeats).  The metric is
``total`` (end-to-end), or an operator's / attention type's ``time`` or ``share``.

Change points: binary segmentation on the ordered points.  The split of a segment that
maximises ``|mean(log after) − mean(log before)| · sqrt(n₁n₂ / (n₁ + n₂))`` is kept when the
95 % interval of the after / before ratio (``analyses/stats.ratio_interval``) lies wholly
beyond 1 ± ``threshold``; both halves are then searched again.  Segments hold at least
``min_size`` points (a group of commit repeats is one point per run, never split inside).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import to_frame
from tracehouse.analyses.runs import list_runs
from tracehouse.analyses.stats import ratio_interval
from tracehouse.analyses.sweep import model_runs
from tracehouse.core.errors import BadInput
from tracehouse.schema.models import OperatorRollup, Run

METRICS = ("time", "share")
HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "position": pl.Int64, "run_id": pl.Int64, "git_commit": pl.String, "version": pl.String,
    "created_at": pl.Datetime(time_zone="UTC"), "key": pl.String, "value": pl.Float64, "segment": pl.Int64,
    "change_point": pl.Boolean, "segment_median": pl.Float64, "change_ratio": pl.Float64,
    "change_low": pl.Float64, "change_high": pl.Float64,
}


def _values(session: Session, run_ids: list[int], key: str, metric: str, by: str) -> dict[int, float]:
    if key == "total":
        rows = session.execute(select(Run.id, Run.total_ns).where(Run.id.in_(run_ids))).all()
        return {r: float(v) if metric == "time" else 1.0 for r, v in rows}
    col = OperatorRollup.attention_type if by == "attention_type" else OperatorRollup.operator
    stmt = (select(OperatorRollup.run_id, func.sum(OperatorRollup.total_ns))
            .where(OperatorRollup.run_id.in_(run_ids), col == key).group_by(OperatorRollup.run_id))
    found = {r: float(v) for r, v in session.execute(stmt).all()}
    totals = dict(session.execute(select(Run.id, Run.total_ns).where(Run.id.in_(run_ids))).all())
    return {r: (found.get(r, 0.0) if metric == "time" else found.get(r, 0.0) / (totals[r] or 1)) for r in run_ids}


def history(session: Session, model: str, key: str = "total", metric: str = "time", *, by: str = "operator",
            order: str = "date", threshold: float = 0.05, min_size: int = 2, **filters: object) -> pl.DataFrame:
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
    ids = model_runs(session, model, **filters)["run_id"].to_list()
    runs = list_runs(session, model=model).filter(pl.col("run_id").is_in(ids))
    series = _ordered(runs.select("run_id", "git_commit", "version", "created_at"), order)
    values = _values(session, series["run_id"].to_list(), key, metric, by)
    series = series.with_columns(value=pl.col("run_id").replace_strict(values, return_dtype=pl.Float64),
                                 key=pl.lit(key), position=pl.int_range(pl.len(), dtype=pl.Int64))
    cuts = sorted(_segment(series["value"].to_numpy(), _boundaries(series, order), threshold, min_size))
    return _label(series, cuts)


def _ordered(runs: pl.DataFrame, order: str) -> pl.DataFrame:
    runs = runs.sort("created_at", "run_id")
    if order == "commit":  # commits in order of first appearance; a commit's runs together
        first = runs.group_by("git_commit").agg(pl.col("created_at").min().alias("first_seen"))
        runs = runs.join(first, on="git_commit", how="left", nulls_equal=True).sort(
            "first_seen", "git_commit", "created_at", "run_id", nulls_last=True).drop("first_seen")
    return runs


def _boundaries(series: pl.DataFrame, order: str) -> set[int]:
    """Positions a change may begin at: any run by date; a commit's first run by commit."""
    if order == "date":
        return set(range(1, series.height))
    commits = series["git_commit"].to_list()
    return {i for i in range(1, len(commits)) if commits[i] != commits[i - 1]}


def _segment(values: np.ndarray, allowed: set[int], threshold: float, min_size: int,
             lo: int = 0, hi: int | None = None) -> set[int]:
    hi = len(values) if hi is None else hi
    logs = np.log(np.clip(values[lo:hi], 1e-12, None))
    best, best_score = None, 0.0
    for cut in range(lo + min_size, hi - min_size + 1):
        if cut not in allowed:
            continue
        n1, n2 = cut - lo, hi - cut
        score = abs(logs[cut - lo:].mean() - logs[:cut - lo].mean()) * np.sqrt(n1 * n2 / (n1 + n2))
        if score > best_score:
            best, best_score = cut, score
    if best is None:
        return set()
    _, low, high = ratio_interval(values[lo:best].tolist(), values[best:hi].tolist())
    if low is None or high is None or not (low > 1 + threshold or high < 1 / (1 + threshold)):
        return set()
    return {best} | _segment(values, allowed, threshold, min_size, lo, best) | \
        _segment(values, allowed, threshold, min_size, best, hi)


def _label(series: pl.DataFrame, cuts: list[int]) -> pl.DataFrame:
    values = series["value"].to_list()
    edges = [0, *cuts, len(values)]
    segment = np.zeros(len(values), dtype=np.int64)
    medians = np.zeros(len(values))
    change: dict[int, tuple] = {}
    for i, (start, end) in enumerate(zip(edges, edges[1:])):
        segment[start:end] = i
        medians[start:end] = float(np.median(values[start:end])) if end > start else np.nan
        if i:
            change[start] = ratio_interval(values[edges[i - 1]:start], values[start:end])
    out = series.with_columns(segment=pl.Series(segment), segment_median=pl.Series(medians),
                              change_point=pl.Series([i in change for i in range(len(values))]),
                              change_ratio=pl.Series([change.get(i, (None,))[0] for i in range(len(values))],
                                                     dtype=pl.Float64),
                              change_low=pl.Series([change.get(i, (None, None))[1] for i in range(len(values))],
                                                   dtype=pl.Float64),
                              change_high=pl.Series([change.get(i, (None, None, None))[2]
                                                     for i in range(len(values))], dtype=pl.Float64))
    return out.select(list(HISTORY_SCHEMA))


def matrix(session: Session, metric: str = "share", by: str = "operator", **filters: object) -> pl.DataFrame:
    """Runs × keys, the table behind a heatmap, in long form (one row per cell, as plotting
    libraries take it; ``tracehouse matrix`` pivots it for a terminal): ``run_id, model,
    attention_backend, experiment, key`` (operator or attention type) and ``value`` — its
    ``time`` (ns) or ``share`` of the run; every run × key, 0 where the run has none.
    ``filters`` are :func:`~tracehouse.analyses.runs.list_runs`' (model, family, hardware,
    attention_backend, experiment, tags, since, until)."""
    if metric not in METRICS or by not in ("operator", "attention_type"):
        raise BadInput("metric is time or share; by is operator or attention_type")
    runs = list_runs(session, **filters).select("run_id", "model", "attention_backend", "experiment", "total_ns")
    col = getattr(OperatorRollup, by)
    stmt = (select(OperatorRollup.run_id, col, func.sum(OperatorRollup.total_ns))
            .where(OperatorRollup.run_id.in_(runs["run_id"].to_list()), col.is_not(None))
            .group_by(OperatorRollup.run_id, col))
    cells = to_frame(session, stmt, {"run_id": pl.Int64, "key": pl.String, "ns": pl.Float64})
    grid = runs.join(cells.select("key").unique(), how="cross")
    full = grid.join(cells, on=["run_id", "key"], how="left").with_columns(pl.col("ns").fill_null(0.0))
    value = pl.col("ns") if metric == "time" else pl.col("ns") / pl.col("total_ns")
    return (full.with_columns(value=pl.when(pl.col("total_ns") > 0).then(value).otherwise(0.0))
            .select("run_id", "model", "attention_backend", "experiment", "key", "value").sort("run_id", "key"))
