"""Statistics over repeats: how sure a ratio or a median is, from the spread of repeats.

Method (stated in every table that uses it as ``method``):

* **Ratio of two sets of samples** (B over A, e.g. a new run's attention time over a
  baseline's): a residual bootstrap on the log scale.  The log ratio is
  ``mean(log b) − mean(log a)``; the residuals of each sample from its own side's mean are
  pooled (both sides are taken to share one relative noise: the workload is the same, the
  machine is the same) and inflated by ``sqrt(N / (N − 2))`` (``N`` samples, two means
  fitted) so that few repeats do not understate the spread; each of ``BOOTSTRAP_RESAMPLES``
  resamples draws ``len(a)`` and ``len(b)`` residuals with replacement, and the 2.5th / 97.5th
  percentiles of the resampled log ratios give the 95 % interval.  Pooling lets one new run
  be judged against a baseline of several repeats.  With no spread to pool (fewer than three
  samples, or two sides of one sample each) there is no interval (null).
* **Median of one set** (a Table II speedup over repeats): percentile bootstrap of the median.

The seed is fixed, so one query gives one answer on every interface.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
LEVEL = 0.95
SEED = 20261130
RATIO_METHOD = "log-ratio residual bootstrap, 95%"
MEDIAN_METHOD = "median, percentile bootstrap 95%"


def _positive_logs(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return np.log(np.clip(arr, 1.0, None))  # ns: a zero time counts as 1 ns, never -inf


def ratio_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """``(ratio, low, high)``: geometric-mean ratio of ``b`` over ``a`` and its 95 % interval
    (module docstring); ``(None, None, None)`` when a side is empty."""
    if len(a) == 0 or len(b) == 0:
        return None, None, None
    # Sorted: the resampling must not depend on the order a query returned the samples in.
    la, lb = np.sort(_positive_logs(a)), np.sort(_positive_logs(b))
    observed = float(lb.mean() - la.mean())
    n = len(la) + len(lb)
    residuals = np.concatenate([la - la.mean(), lb - lb.mean()])
    if n < 3:
        return float(np.exp(observed)), None, None
    residuals = residuals * np.sqrt(n / (n - 2))
    rng = np.random.default_rng(SEED)
    draws_a = rng.choice(residuals, size=(BOOTSTRAP_RESAMPLES, len(la))).mean(axis=1)
    draws_b = rng.choice(residuals, size=(BOOTSTRAP_RESAMPLES, len(lb))).mean(axis=1)
    spread = draws_b - draws_a
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(spread, [tail, 100 - tail])
    return float(np.exp(observed)), float(np.exp(observed + low)), float(np.exp(observed + high))


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
