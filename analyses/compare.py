"""Two runs side by side (paper Table II and Fig 7's second bar): per-operator speedup, the
attention-module speedup and Amdahl's prediction against the measured end-to-end speedup;
and Table II itself, every stored baseline / flash pair at once.

Times are summed kernel time (``run.total_ns``: GPU busy time, or top-level host-op time on
CPU-only runs), read from the rollup tables only.  A speedup is ``baseline / other``: above
1 means the other run is faster.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.breakdown import breakdown
from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.frames import TIMELINE_FORMATS, FrameSchema
from tracehouse.schema.models import Hardware, Model, OperatorRollup, Run, Trace

# Run columns that say what a run *is*; the summary lists those that differ between the two.
KNOB_COLUMNS = (
    "model_id",
    "hardware_id",
    "attention_backend",
    "scale",
    "batch",
    "dtype",
    "image_size",
    "frames",
    "denoising_steps",
    "decode_tokens",
    "text_length",
    "device_kind",
)


# compare_summary's columns, in order.
SUMMARY_SCHEMA: FrameSchema = {
    "baseline_run_id": pl.Int64,
    "other_run_id": pl.Int64,
    "baseline_total_ns": pl.Int64,
    "other_total_ns": pl.Int64,
    "end_to_end_speedup": pl.Float64,
    "operator": pl.String,
    "operator_baseline_ns": pl.Int64,
    "operator_other_ns": pl.Int64,
    "operator_speedup": pl.Float64,
    "operator_share": pl.Float64,
    "amdahl_speedup": pl.Float64,
    "amdahl_error": pl.Float64,
    "other_normalized": pl.Float64,
    "differences": pl.String,
    "exceeds_amdahl": pl.Boolean,
}


def operator_totals(session: Session, run_id: int) -> pl.DataFrame:
    """``operator, kernel_count, total_ns`` of one run, from the rollup."""
    stmt = (
        select(OperatorRollup.operator, func.sum(OperatorRollup.kernel_count), func.sum(OperatorRollup.total_ns))
        .where(OperatorRollup.run_id == run_id)
        .group_by(OperatorRollup.operator)
    )
    return to_frame(session, stmt, {"operator": pl.String, "kernel_count": pl.Int64, "total_ns": pl.Int64})


def compare_runs(session: Session, baseline_run_id: int, other_run_id: int) -> pl.DataFrame:
    """One row per operator present in either run, largest baseline time first.

    Columns: ``operator, baseline_count, other_count, baseline_ns, other_ns`` (0 where the
    operator is absent), ``speedup`` (baseline_ns / other_ns; null when other_ns is 0),
    ``baseline_share`` (of the baseline run's total), ``other_normalized`` (other_ns / the
    baseline run's total: the paper's "normalized to baseline" second bar) and ``delta_ns``
    (other − baseline).
    """
    base_run = get_run(session, baseline_run_id)
    get_run(session, other_run_id)
    base = operator_totals(session, baseline_run_id)
    other = operator_totals(session, other_run_id)
    joined = base.join(other, on="operator", how="full", coalesce=True, suffix="_other")
    base_total = pl.lit(base_run.total_ns, pl.Int64)
    return (
        joined.select(
            "operator",
            baseline_count=pl.col("kernel_count").fill_null(0),
            other_count=pl.col("kernel_count_other").fill_null(0),
            baseline_ns=pl.col("total_ns").fill_null(0),
            other_ns=pl.col("total_ns_other").fill_null(0),
        )
        .with_columns(
            speedup=ratio(pl.col("baseline_ns"), pl.col("other_ns")),
            baseline_share=ratio(pl.col("baseline_ns"), base_total),
            other_normalized=ratio(pl.col("other_ns"), base_total),
            delta_ns=pl.col("other_ns") - pl.col("baseline_ns"),
        )
        .sort("baseline_ns", "operator", descending=[True, False])
    )


def amdahl(share: float, speedup: float | None) -> float:
    """Amdahl's law: end-to-end speedup when a fraction ``share`` of the time gets ``speedup``
    and the rest is unchanged.  ``speedup=None`` means the part vanished (infinitely fast)."""
    return 1.0 / ((1.0 - share) + (share / speedup if speedup else 0.0))


def compare_summary(
    session: Session, baseline_run_id: int, other_run_id: int, operator: str = "attention"
) -> pl.DataFrame:
    """One row: the measured end-to-end speedup next to Amdahl's prediction from ``operator``.

    Columns: ``baseline_run_id, other_run_id, baseline_total_ns, other_total_ns``,
    ``end_to_end_speedup`` (baseline.total_ns / other.total_ns), ``operator``,
    ``operator_baseline_ns, operator_other_ns``, ``operator_speedup`` (their ratio, null when
    the other run has none), ``operator_share`` (f: operator time / baseline total),
    ``amdahl_speedup`` (1 / ((1 − f) + f / s)), ``amdahl_error`` (measured / predicted − 1:
    positive when the other operators also got faster), ``other_normalized`` (other total /
    baseline total), ``differences`` (the run knobs that differ, ``key: a -> b``) and
    ``exceeds_amdahl``: the measured speedup is above what speeding up ``operator`` alone can
    give, so something else changed too (other operators, or noise between the two runs).
    """
    base_run, other_run = get_run(session, baseline_run_id), get_run(session, other_run_id)
    totals = _operator_ns(session, [baseline_run_id, other_run_id], operator)
    return pl.DataFrame([_summary_row(base_run, other_run, operator, totals)], schema=SUMMARY_SCHEMA)


def _operator_ns(session: Session, run_ids: list[int], operator: str) -> dict[int, int]:
    """run id -> its time in ``operator``, from the rollup (absent: 0), in one query."""
    stmt = (
        select(OperatorRollup.run_id, func.sum(OperatorRollup.total_ns))
        .where(OperatorRollup.run_id.in_(run_ids), OperatorRollup.operator == operator)
        .group_by(OperatorRollup.run_id)
    )
    return {run_id: int(ns or 0) for run_id, ns in session.execute(stmt)}


def _summary_row(base_run: Run, other_run: Run, operator: str, totals: dict[int, int]) -> dict[str, object]:
    """:func:`compare_summary`'s row for two loaded runs and their ``operator`` times."""
    baseline_run_id, other_run_id = base_run.id, other_run.id
    op_base, op_other = totals.get(baseline_run_id, 0), totals.get(other_run_id, 0)
    e2e = base_run.total_ns / other_run.total_ns if other_run.total_ns else None
    share = op_base / base_run.total_ns if base_run.total_ns else 0.0
    op_speedup = op_base / op_other if op_other else None
    predicted = amdahl(share, op_speedup) if op_base else 1.0
    return {
        "baseline_run_id": baseline_run_id,
        "other_run_id": other_run_id,
        "baseline_total_ns": base_run.total_ns,
        "other_total_ns": other_run.total_ns,
        "end_to_end_speedup": e2e,
        "operator": operator,
        "operator_baseline_ns": op_base,
        "operator_other_ns": op_other,
        "operator_speedup": op_speedup,
        "operator_share": share,
        "amdahl_speedup": predicted,
        "amdahl_error": e2e / predicted - 1.0 if e2e is not None else None,
        "other_normalized": other_run.total_ns / base_run.total_ns if base_run.total_ns else None,
        "differences": _differences(base_run, other_run),
        "exceeds_amdahl": e2e > predicted if e2e is not None else None,
    }


def _differences(a: Run, b: Run) -> str:
    return "; ".join(f"{k}: {getattr(a, k)} -> {getattr(b, k)}" for k in KNOB_COLUMNS if getattr(a, k) != getattr(b, k))


def breakdown_normalized(session: Session, run_id: int, reference_run_id: int, by: str = "operator") -> pl.DataFrame:
    """``breakdown(run_id, by)`` plus ``normalized``: time / the reference run's total.

    With a baseline run as the reference this is the paper's Fig 7 second bar: the bars of
    the optimised run sum to ``run.total_ns / reference.total_ns`` (1 / end-to-end speedup).
    """
    reference = get_run(session, reference_run_id)
    frame = breakdown(session, run_id, by)
    return frame.with_columns(normalized=ratio(pl.col("total_ns"), pl.lit(reference.total_ns, pl.Int64)))


# Knobs two runs must share to be a baseline / optimised pair (everything but the backend).
PAIR_KEYS = tuple(k for k in KNOB_COLUMNS if k != "attention_backend")
PAIR_TYPES: FrameSchema = {k: pl.String if k in ("scale", "dtype", "device_kind") else pl.Int64 for k in PAIR_KEYS}
# The pair's knobs as Table II shows them (model and hardware come as names instead of ids).
PAIR_KNOBS = tuple(k for k in PAIR_KEYS if k not in ("model_id", "hardware_id"))


def backend_speedups(
    session: Session,
    baseline: str = "baseline",
    other: str = "flash",
    *,
    model: str | None = None,
    hardware: str | None = None,
    operator: str = "attention",
) -> pl.DataFrame:
    """The paper's Table II over every stored pair: for each model × hardware × knobs that has a
    ``baseline`` run and an ``other`` run (the latest of each when repeated), one
    :func:`compare_summary` row (both run ids, ``exceeds_amdahl`` ...), with ``model``,
    ``family``, ``hardware`` and the pair's knobs (:data:`PAIR_KNOBS`: ``image_size``,
    ``batch`` ...) in front, so the rows of a sweep can be told apart.
    ``model`` / ``hardware`` filter (hardware: substring of the device name)."""
    cols = [getattr(Run, k) for k in PAIR_KEYS]
    # Counter-only (ncu) runs have no timeline to time; they never stand in for a run.
    timed = select(Trace.run_id).where(Trace.format.in_(TIMELINE_FORMATS))
    stmt = (
        select(func.max(Run.id), Run.attention_backend, *cols)
        .where(Run.attention_backend.in_([baseline, other]), Run.id.in_(timed))
        .group_by(Run.attention_backend, *cols)
    )
    runs = to_frame(session, stmt, {"run_id": pl.Int64, "backend": pl.String, **PAIR_TYPES})
    pairs = runs.filter(pl.col("backend") == baseline).join(
        runs.filter(pl.col("backend") == other), on=list(PAIR_KEYS), nulls_equal=True, suffix="_other"
    )
    names = {r.id: (r.name, r.family) for r in session.execute(select(Model.id, Model.name, Model.family))}
    devices = dict(session.execute(select(Hardware.id, Hardware.name)).all())
    kept = [
        pair
        for pair in pairs.iter_rows(named=True)
        if not (model and names.get(pair["model_id"], (None,))[0] != model)
        and not (hardware and hardware not in (devices.get(pair["hardware_id"]) or ""))
    ]
    # Every pair's runs and operator times in two queries, not four per pair: Table II over a
    # store of thousands of runs stays one round trip's worth of rollup reads.
    ids = sorted({r for pair in kept for r in (pair["run_id"], pair["run_id_other"])})
    loaded = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)))} if ids else {}
    totals = _operator_ns(session, ids, operator) if ids else {}
    rows = []
    for pair in kept:
        name, family = names.get(pair["model_id"], (None, None))
        row = _summary_row(loaded[pair["run_id"]], loaded[pair["run_id_other"]], operator, totals)
        rows.append(
            {
                "model": name,
                "family": family,
                "hardware": devices.get(pair["hardware_id"]),
                **{k: pair[k] for k in PAIR_KNOBS},
                **row,
            }
        )
    schema = {
        "model": pl.String,
        "family": pl.String,
        "hardware": pl.String,
        **{k: PAIR_TYPES[k] for k in PAIR_KNOBS},
        **SUMMARY_SCHEMA,
    }
    return pl.DataFrame(rows, schema=schema).sort("family", "model", "hardware", *PAIR_KNOBS, nulls_last=True)
