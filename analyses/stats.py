"""Statistics over repeats: how sure a ratio or a median is, from the spread of repeats.

Method (stated in every table that uses it as ``method``):

* **Ratio of two sets of samples** (B over A, e.g. a new run's attention time over a
  baseline's): Student's t interval on the log scale.  The log ratio is
  ``mean(log b) − mean(log a)``; its standard error comes from the residuals of each sample
  from its own side's mean, pooled (the workload and the machine are the same, so both sides
  are taken to share one relative noise; this is what lets one new run be judged against a
  baseline of several repeats): ``s² = Σ residual² / (N − 2)``, ``SE = s·sqrt(1/n_a + 1/n_b)``,
  interval ``exp(log ratio ± t₀.₉₇₅(N − 2)·SE)``.  The t quantile, not a normal or bootstrap
  one, keeps the interval honest with three to five repeats: a residual bootstrap (tried
  first) raised false alarms in a quarter of the checks of unchanged repeats on a busy
  machine (docs/NOTES-exp.md).  With no spread to pool (fewer than three samples) there is
  no interval (null).
* **Median of one set** (a Table II speedup over repeats): percentile bootstrap of the median.

The seed is fixed, so one query gives one answer on every interface.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
LEVEL = 0.95
SEED = 20261130
RATIO_METHOD = "log-ratio Student t, pooled residuals, 95%"
MEDIAN_METHOD = "median, percentile bootstrap 95%"


def _positive_logs(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    logs: np.ndarray = np.log(np.clip(arr, 1.0, None))  # ns: a zero time counts as 1 ns, never -inf
    return logs


# Kept per (level, df): one integration is ~10 ms, and a sweep asks for the same few
# quantiles once per series and operator.
@functools.lru_cache(maxsize=256)
def t_quantile(level: float, df: int) -> float:
    """Two-sided Student t quantile: ``P(|T| ≤ t) = level`` with ``df`` degrees of freedom.
    Computed, not tabled (no scipy here): with ``x = sqrt(df)·tan θ`` the t density becomes
    ``∝ cos(θ)^(df − 1)`` on ``[0, π/2)``, smooth enough for a cumulative trapezoid sum."""
    theta = np.linspace(0.0, np.pi / 2, 200_001)
    density = np.cos(theta) ** (df - 1)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cumulative /= cumulative[-1]
    return float(np.sqrt(df) * np.tan(np.interp(level, cumulative, theta)))


def ratio_interval(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL
) -> tuple[float | None, float | None, float | None]:
    """``(ratio, low, high)``: geometric-mean ratio of ``b`` over ``a`` and its ``level``
    interval (module docstring); ``(None, None, None)`` when a side is empty."""
    if len(a) == 0 or len(b) == 0:
        return None, None, None
    # Sorted: sums in one order, so every interface gets the same last bits.
    la, lb = np.sort(_positive_logs(a)), np.sort(_positive_logs(b))
    observed = float(lb.mean() - la.mean())
    df = len(la) + len(lb) - 2
    if df < 1:
        return float(np.exp(observed)), None, None
    residuals = np.concatenate([la - la.mean(), lb - lb.mean()])
    spread = float(np.sqrt((residuals**2).sum() / df) * np.sqrt(1 / len(la) + 1 / len(lb)))
    half = t_quantile(level, df) * spread
    return float(np.exp(observed)), float(np.exp(observed - half)), float(np.exp(observed + half))


def median_interval(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """``(median, low, high)``: the median and its percentile-bootstrap 95 % interval; no
    interval from fewer than two values."""
    arr = np.sort(np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float))
    if arr.size == 0:
        return None, None, None
    median = float(np.median(arr))
    if arr.size < 2:
        return median, None, None
    rng = np.random.default_rng(SEED)
    medians = np.median(rng.choice(arr, size=(BOOTSTRAP_RESAMPLES, arr.size)), axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return median, float(low), float(high)
