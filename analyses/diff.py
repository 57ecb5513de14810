"""What changed between two runs, or two sets of repeats: one row per operator (attention
type, kernel, component) with its time in A and B, the delta, the ratio B / A with an interval
from the noise, each side's share, and a status.

Samples (what the interval's noise comes from, column ``samples``):

* ``runs`` — a side of two runs or more: each run's time per key is one sample (repeats);
* ``steps`` — one run on each side, both cut into steps (``analyses/steps``): each
  steady-state step's time per key is one sample; keys outside the steps (prefill, the VAE)
  get no interval;
* ``single`` — nothing to measure the noise with: no interval.

The interval is :func:`tracehouse.analyses.stats.ratio_interval` (Student t on the log
ratio, 95 %), rescaled so that it brackets the reported ratio of mean times.  Status:
``added`` / ``removed`` (no time on one side); ``slower`` when the ratio exceeds
1 + ``threshold`` and, where there is an interval, its low end is above 1; ``faster``
likewise below 1 / (1 + threshold); ``same`` otherwise.  Kernels are keyed by base name
(``ingest/kernel_names.rule_name``), so a library's renamed template instances still match.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, to_frame
from tracehouse.analyses.stats import LEVEL, RATIO_METHOD, ratio_interval
from tracehouse.analyses.steps import run_steps
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.frames import FrameSchema
from tracehouse.core.kernel_names import rule_name
from tracehouse.schema.models import Kernel, KernelRollup, OperatorRollup, Run, Symbol

DIFF_BY = ("operator", "attention_type", "kernel", "component")
TOTAL_KEY = "(total)"
NO_KEY = "(none)"
DEFAULT_THRESHOLD = 0.05
MAX_RUN_ID = 2**31 - 1  # run.id is a 32-bit INTEGER on PostgreSQL

DIFF_SCHEMA: FrameSchema = {
    "key": pl.String,
    "a_ns": pl.Float64,
    "b_ns": pl.Float64,
    "delta_ns": pl.Float64,
    "ratio": pl.Float64,
    "ratio_low": pl.Float64,
    "ratio_high": pl.Float64,
    "a_share": pl.Float64,
    "b_share": pl.Float64,
    "a_samples": pl.Int64,
    "b_samples": pl.Int64,
    "samples": pl.String,
    "status": pl.String,
    "method": pl.String,
}
# One DIFF_SCHEMA row: key, a_ns, b_ns, delta_ns, ratio, ratio_low, ratio_high, a_share, b_share,
# a_samples, b_samples, samples, status, method.
DiffRow = tuple[
    str,
    float,
    float,
    float,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    int,
    int,
    str,
    str,
    str,
]
_SAMPLE_SCHEMA: FrameSchema = {"sample": pl.String, "key": pl.String, "ns": pl.Float64}


def run_key_times(session: Session, run_ids: Sequence[int], by: str) -> pl.DataFrame:
    """``run_id, key, ns``: each run's time per key (rollups only; kernels by base name)."""
    if by == "kernel":
        stmt = (
            select(KernelRollup.run_id, Symbol.text, func.sum(KernelRollup.total_ns))
            .join(Symbol, Symbol.id == KernelRollup.name_id)
            .where(KernelRollup.run_id.in_(run_ids))
            .group_by(KernelRollup.run_id, Symbol.text)
        )
        frame = to_frame(session, stmt, {"run_id": pl.Int64, "key": pl.String, "ns": pl.Float64})
        frame = frame.with_columns(pl.col("key").map_elements(rule_name, return_dtype=pl.String))
    else:
        col = getattr(OperatorRollup, by)
        stmt = (
            select(OperatorRollup.run_id, col, func.sum(OperatorRollup.total_ns))
            .where(OperatorRollup.run_id.in_(run_ids))
            .group_by(OperatorRollup.run_id, col)
        )
        if by == "attention_type":
            stmt = stmt.where(OperatorRollup.operator == "attention")
        frame = to_frame(session, stmt, {"run_id": pl.Int64, "key": pl.String, "ns": pl.Float64})
    totals = to_frame(
        session, select(Run.id, Run.total_ns).where(Run.id.in_(run_ids)), {"run_id": pl.Int64, "ns": pl.Float64}
    ).with_columns(key=pl.lit(TOTAL_KEY))
    frame = frame.with_columns(pl.col("key").fill_null(NO_KEY)).group_by("run_id", "key").agg(pl.col("ns").sum())
    return pl.concat([frame, totals.select("run_id", "key", "ns")])


def step_key_times(session: Session, run_id: int, by: str) -> pl.DataFrame:
    """``sample, key, ns`` over a run's steady-state steps (``phase:step``), stages left out."""
    steps = run_steps(session, run_id).filter((pl.col("kind") == "step") & ~pl.col("warmup"))
    if steps.height < 2:
        return pl.DataFrame(schema=_SAMPLE_SCHEMA)
    key = Symbol.text if by == "kernel" else getattr(Kernel, by)
    stmt = (
        select(Kernel.component, Kernel.step, key, func.sum(Kernel.dur_ns))
        .where(Kernel.run_id == run_id, Kernel.step.is_not(None))
        .group_by(Kernel.component, Kernel.step, key)
    )
    if by == "kernel":
        stmt = stmt.join(Symbol, Symbol.id == Kernel.name_id)
    if by == "attention_type":
        stmt = stmt.where(Kernel.operator == "attention")
    frame = to_frame(session, stmt, {"phase": pl.String, "step": pl.Int64, "key": pl.String, "ns": pl.Float64})
    if by == "kernel":
        frame = frame.with_columns(pl.col("key").map_elements(rule_name, return_dtype=pl.String))
    frame = frame.with_columns(pl.col("phase").fill_null("step"), pl.col("key").fill_null(NO_KEY))
    frame = frame.join(steps.select("phase", "step"), on=["phase", "step"])  # steady steps only
    per_step = frame.group_by("phase", "step").agg(pl.col("ns").sum()).with_columns(key=pl.lit(TOTAL_KEY))
    both = pl.concat(
        [frame.group_by("phase", "step", "key").agg(pl.col("ns").sum()), per_step.select("phase", "step", "key", "ns")]
    )
    return both.select(sample=pl.format("{}:{}", "phase", "step"), key="key", ns="ns")


def _samples(
    session: Session, a: Sequence[int], b: Sequence[int], by: str, times: pl.DataFrame
) -> tuple[str, pl.DataFrame, pl.DataFrame]:
    """The sampling unit and each side's ``sample, key, ns`` (every key present in a sample,
    0 where it has no time there)."""
    if len(a) >= 2 or len(b) >= 2:
        unit = "runs"
        side = {
            name: times.filter(pl.col("run_id").is_in(ids)).select(
                sample=pl.col("run_id").cast(pl.String), key="key", ns="ns"
            )
            for name, ids in (("a", a), ("b", b))
        }
    else:
        side = {"a": step_key_times(session, a[0], by), "b": step_key_times(session, b[0], by)}
        unit = "steps" if side["a"]["sample"].n_unique() >= 2 and side["b"]["sample"].n_unique() >= 2 else "single"
        if unit == "single":
            side = {"a": pl.DataFrame(schema=_SAMPLE_SCHEMA), "b": pl.DataFrame(schema=_SAMPLE_SCHEMA)}
    return unit, _filled(side["a"]), _filled(side["b"])


def _filled(samples: pl.DataFrame) -> pl.DataFrame:
    """Every key × sample, zeros where a sample lacks the key: a step without attention took
    no attention time, it is not a missing measurement."""
    if samples.is_empty():
        return samples
    grid = samples.select("sample").unique().join(samples.select("key").unique(), how="cross")
    return grid.join(samples, on=["sample", "key"], how="left").with_columns(pl.col("ns").fill_null(0.0))


def decide(
    ratio: float | None, low: float | None, a_ns: float, b_ns: float, high: float | None, threshold: float
) -> str:
    """The status of one row (module docstring)."""
    if a_ns <= 0 and b_ns > 0:
        return "added"
    if b_ns <= 0 and a_ns > 0:
        return "removed"
    if ratio is None:
        return "same"
    if ratio > 1 + threshold and (low is None or low > 1):
        return "slower"
    if ratio < 1 / (1 + threshold) and (high is None or high < 1):
        return "faster"
    return "same"


def _ids(run_ids: int | Sequence[int], side: str) -> list[int]:
    ids = [run_ids] if isinstance(run_ids, int) else list(dict.fromkeys(run_ids))
    if not ids:
        raise BadInput(f"side {side} names no run")
    for run_id in ids:  # an id no row can have, before the database must bind it
        if not 1 <= run_id <= MAX_RUN_ID:
            raise NotFound(f"run {run_id} does not exist")
    return ids


def diff(
    session: Session,
    a: int | Sequence[int],
    b: int | Sequence[int],
    by: str = "operator",
    threshold: float = DEFAULT_THRESHOLD,
    level: float = LEVEL,
) -> pl.DataFrame:
    """One row per key of either side (``(total)``: the run's whole time), largest first:
    ``a_ns, b_ns`` (mean over each side's runs), ``delta_ns``, ``ratio`` (B / A) with
    ``ratio_low, ratio_high``, ``a_share, b_share``, sample counts, ``samples`` (runs / steps
    / single), ``status`` and ``method``.  ``a`` and ``b`` are a run id or several (repeats);
    ``level`` is the intervals' confidence (``check`` widens it for the number of keys)."""
    if by not in DIFF_BY:
        raise BadInput(f"unknown diff key {by!r}; choose one of {', '.join(DIFF_BY)}")
    if not 0 <= threshold < 10:
        raise BadInput(f"threshold {threshold} must be a fraction such as 0.05")
    a_ids, b_ids = _ids(a, "A"), _ids(b, "B")
    for run_id in (*a_ids, *b_ids):
        get_run(session, run_id)
    times = run_key_times(session, [*a_ids, *b_ids], by)
    unit, a_samples, b_samples = _samples(session, a_ids, b_ids, by, times)
    means = {
        name: times.filter(pl.col("run_id").is_in(ids)).group_by("key").agg(pl.col("ns").sum() / len(ids))
        for name, ids in (("a", a_ids), ("b", b_ids))
    }
    joined = means["a"].join(means["b"], on="key", how="full", coalesce=True, suffix="_b").fill_null(0.0)
    totals = (
        dict(joined.filter(pl.col("key") == TOTAL_KEY).select("ns", "ns_b").row(0, named=True))
        if joined.filter(pl.col("key") == TOTAL_KEY).height
        else {"ns": 0.0, "ns_b": 0.0}
    )
    rows = [
        _row(key, a_ns, b_ns, totals, a_samples, b_samples, unit, threshold, level)
        for key, a_ns, b_ns in joined.select("key", "ns", "ns_b").iter_rows()
    ]
    frame = pl.DataFrame(rows, schema=DIFF_SCHEMA, orient="row")
    return frame.sort(
        pl.col("key") != TOTAL_KEY, pl.max_horizontal("a_ns", "b_ns"), "key", descending=[False, True, False]
    )


def _row(
    key: str,
    a_ns: float,
    b_ns: float,
    totals: dict[str, float],
    a_samples: pl.DataFrame,
    b_samples: pl.DataFrame,
    unit: str,
    threshold: float,
    level: float,
) -> DiffRow:
    sa = a_samples.filter(pl.col("key") == key)["ns"].to_list() if not a_samples.is_empty() else []
    sb = b_samples.filter(pl.col("key") == key)["ns"].to_list() if not b_samples.is_empty() else []
    ratio = b_ns / a_ns if a_ns > 0 else None
    low = high = None
    if ratio is not None and b_ns > 0 and sa and sb:
        center, lo, hi = ratio_interval(sa, sb, level)
        if center and lo is not None and hi is not None:
            low, high = ratio * lo / center, ratio * hi / center  # bracket the ratio of means
    status = decide(ratio, low, a_ns, b_ns, high, threshold)
    has_interval = low is not None
    return (
        key,
        a_ns,
        b_ns,
        b_ns - a_ns,
        ratio,
        low,
        high,
        a_ns / totals["ns"] if totals["ns"] else None,
        b_ns / totals["ns_b"] if totals["ns_b"] else None,
        len(sa),
        len(sb),
        unit if has_interval or unit == "single" else f"{unit} (none for this key)",
        status,
        _method(level) if has_interval else "no interval: single value",
    )


def _method(level: float) -> str:
    return RATIO_METHOD if level == LEVEL else RATIO_METHOD.replace("95%", f"{level:.2%}")
