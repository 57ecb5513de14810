"""The CI gate: new runs against a named baseline (its runs are repeats).

A key (operator, attention type, kernel or component; ``(total)`` is the end-to-end time)
*regressed* when the whole interval of its time ratio new / baseline lies above
1 + ``threshold`` — slower by more than the threshold with statistical support — and it
holds at least ``min_share`` of either side's time (a 0.1 % op doubling is not a gate
failure).  The gate looks at ``m`` keys at once, so each interval's level is
``1 − 0.05 / m`` (Bonferroni): the chance of any false alarm stays near 5 %, where per-key
95 % intervals alarmed on a tenth of the checks of unchanged repeats (docs/NOTES-exp.md).  The interval is :func:`tracehouse.analyses.diff.diff`'s (Student t on the log
ratio over repeats, or over steps when both sides are one run).  With no interval (one
run on each side and no steps) nothing can be supported, and nothing is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import to_frame
from tracehouse.analyses.diff import DEFAULT_THRESHOLD, diff
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.schema.experiments import Baseline, BaselineRun

DEFAULT_MIN_SHARE = 0.05  # measured: 1% let tiny, dispatch-bound ops raise alarms (NOTES-exp)
FAMILY_ERROR = 0.05  # chance of any false alarm in one check, split over the keys (Bonferroni)


def list_baselines(session: Session) -> pl.DataFrame:
    """``baseline, run_ids, run_count, note, created_at``, by name."""
    stmt = select(Baseline.name, BaselineRun.run_id, Baseline.note, Baseline.created_at).join(
        BaselineRun, BaselineRun.baseline_id == Baseline.id, isouter=True
    )
    rows = to_frame(
        session,
        stmt,
        {"baseline": pl.String, "run_id": pl.Int64, "note": pl.String, "created_at": pl.Datetime(time_zone="UTC")},
    )
    return (
        rows.group_by("baseline", "note", "created_at")
        .agg(run_ids=pl.col("run_id").drop_nulls().sort())
        .with_columns(
            run_count=pl.col("run_ids").list.len().cast(pl.Int64),
            created_at=pl.col("created_at").dt.replace_time_zone("UTC"),
        )
        .select("baseline", "run_ids", "run_count", "note", "created_at")
        .sort("baseline")
    )


def baseline_run_ids(session: Session, name: str) -> list[int]:
    baseline_id = session.scalar(select(Baseline.id).where(Baseline.name == name))
    if baseline_id is None:
        raise NotFound(f"baseline {name!r} does not exist; create it with `tracehouse baseline set {name} RUN_ID...`")
    ids = list(
        session.scalars(
            select(BaselineRun.run_id).where(BaselineRun.baseline_id == baseline_id).order_by(BaselineRun.run_id)
        )
    )
    if not ids:
        raise NotFound(f"baseline {name!r} has no runs left (they were deleted)")
    return ids


def check(
    session: Session,
    run_ids: Sequence[int],
    baseline: str,
    by: str = "operator",
    threshold: float = DEFAULT_THRESHOLD,
    min_share: float = DEFAULT_MIN_SHARE,
) -> pl.DataFrame:
    """:func:`diff` of the baseline's runs (A) against ``run_ids`` (B), plus ``regressed``
    (module docstring), ``threshold`` and ``baseline``; regressions first."""
    if not run_ids:
        raise BadInput("check needs at least one run id")
    if not 0 <= min_share <= 1:
        raise BadInput(f"min_share {min_share} must be a fraction between 0 and 1")
    base_ids = baseline_run_ids(session, baseline)
    big_enough = pl.max_horizontal(pl.col("a_share").fill_null(0), pl.col("b_share").fill_null(0)) >= min_share
    keys = diff(session, base_ids, list(run_ids), by, threshold).filter(big_enough).height
    frame = diff(session, base_ids, list(run_ids), by, threshold, level=1 - FAMILY_ERROR / max(keys, 1))
    regressed = (pl.col("ratio_low") > 1 + threshold) & big_enough
    return frame.with_columns(
        regressed=regressed.fill_null(False), threshold=pl.lit(threshold), baseline=pl.lit(baseline)
    ).sort(pl.col("regressed").not_(), maintain_order=True)


def regressions(frame: pl.DataFrame) -> list[str]:
    """One line per regressed key: what, by how much, with the interval."""
    return [
        f"{r['key']}: {r['ratio']:.3f}x slower (95% interval {r['ratio_low']:.3f}-{r['ratio_high']:.3f}, "
        f"{r['a_ns'] / 1e6:.3f} ms -> {r['b_ns'] / 1e6:.3f} ms)"
        for r in frame.filter(pl.col("regressed")).iter_rows(named=True)
    ]
