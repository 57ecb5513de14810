"""Table II over repeats: every baseline / optimised pair of runs alike in model, hardware and
knobs (and, when asked, one experiment), with each figure a median over the repeats and its
95 % interval, so one noisy run no longer passes for a result.

The i-th baseline run is paired with the i-th optimised run (by run id: ``collect --repeat``
runs them back to back); a pair is one sample of the end-to-end and operator speedups and of
Amdahl's prediction.  Each figure is the median over pairs with a percentile-bootstrap interval
(``analyses/stats``); with one pair the figure is marked ``single run`` and has no interval.
``exceeds_amdahl`` is true only when the end-to-end interval lies wholly above the
prediction's: faster than speeding up the operator alone can explain, beyond the noise.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import to_frame
from tracehouse.analyses.compare import PAIR_KEYS, PAIR_KNOBS, PAIR_TYPES, compare_summary
from tracehouse.analyses.stats import MEDIAN_METHOD, median_interval
from tracehouse.core.frames import TIMELINE_FORMATS, FrameSchema
from tracehouse.schema.models import Hardware, Model, Run, Trace

FIGURES = ("end_to_end_speedup", "operator_speedup", "amdahl_speedup", "operator_share")
REPEAT_SCHEMA: FrameSchema = {
    "model": pl.String,
    "family": pl.String,
    "hardware": pl.String,
    **{k: PAIR_TYPES[k] for k in PAIR_KNOBS},
    "experiment": pl.String,
    "operator": pl.String,
    "repeats": pl.Int64,
    "baseline_run_ids": pl.List(pl.Int64),
    "other_run_ids": pl.List(pl.Int64),
    **{f"{f}{s}": pl.Float64 for f in FIGURES for s in ("", "_low", "_high")},
    "exceeds_amdahl": pl.Boolean,
    "method": pl.String,
}


def _runs(session: Session, backends: tuple[str, str], experiment: str | None) -> pl.DataFrame:
    timed = select(Trace.run_id).where(Trace.format.in_(TIMELINE_FORMATS))
    stmt = (
        select(Run.id, Run.attention_backend, Run.experiment, *(getattr(Run, k) for k in PAIR_KEYS))
        .where(Run.attention_backend.in_(backends), Run.id.in_(timed))
        .order_by(Run.id)
    )
    if experiment is not None:
        stmt = stmt.where(Run.experiment == experiment)
    return to_frame(session, stmt, {"run_id": pl.Int64, "backend": pl.String, "experiment": pl.String, **PAIR_TYPES})


def speedups_over_repeats(
    session: Session,
    baseline: str = "baseline",
    other: str = "flash",
    *,
    experiment: str | None = None,
    model: str | None = None,
    hardware: str | None = None,
    operator: str = "attention",
) -> pl.DataFrame:
    """One row per model × hardware × knobs × experiment with both backends: ``repeats`` (pairs),
    both sides' run ids, each of :data:`FIGURES` as median with ``_low`` / ``_high``, and
    ``exceeds_amdahl`` (module docstring)."""
    runs = _runs(session, (baseline, other), experiment)
    names = {r.id: (r.name, r.family) for r in session.execute(select(Model.id, Model.name, Model.family))}
    devices = dict(session.execute(select(Hardware.id, Hardware.name)).all())
    rows = []
    for group in runs.partition_by(*PAIR_KEYS, "experiment", maintain_order=True):
        base_ids = group.filter(pl.col("backend") == baseline)["run_id"].to_list()
        other_ids = group.filter(pl.col("backend") == other)["run_id"].to_list()
        first = group.row(0, named=True)
        name, family = names.get(first["model_id"], (None, None))
        device = devices.get(first["hardware_id"])
        if not base_ids or not other_ids or (model and name != model) or (hardware and hardware not in (device or "")):
            continue
        pairs = [
            compare_summary(session, b, o, operator).row(0, named=True)
            for b, o in zip(base_ids, other_ids, strict=False)
        ]
        row = {
            "model": name,
            "family": family,
            "hardware": device,
            **{k: first[k] for k in PAIR_KNOBS},
            "experiment": first["experiment"],
            "operator": operator,
            "repeats": len(pairs),
            "baseline_run_ids": base_ids[: len(pairs)],
            "other_run_ids": other_ids[: len(pairs)],
        }
        for figure in FIGURES:
            mid, low, high = median_interval([p[figure] for p in pairs if p[figure] is not None])
            row |= {figure: mid, f"{figure}_low": low, f"{figure}_high": high}
        row["exceeds_amdahl"] = (
            row["end_to_end_speedup_low"] > row["amdahl_speedup_high"]
            if row["end_to_end_speedup_low"] is not None and row["amdahl_speedup_high"] is not None
            else None
        )
        row["method"] = MEDIAN_METHOD if len(pairs) > 1 else "single run"
        rows.append(row)
    frame = pl.DataFrame(rows, schema=REPEAT_SCHEMA)
    return frame.sort("family", "model", "hardware", *PAIR_KNOBS, "experiment", nulls_last=True)
