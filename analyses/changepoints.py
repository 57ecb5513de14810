"""Optimal partitioning of a series into segments (least squares within each, a penalty per
segment), exact, in numpy with PELT's pruning (Killick, Fearnhead & Eckley 2012).

The answer is the one the plain O(n²) dynamic programme gives, to the last bit: each end's
candidate costs are the same floating-point operations in the same order, the cheapest start
wins and a tie goes to the earliest start, as in the loop ``for start in range(...)`` with a
strict ``<``.  Pruning only drops a start that can never again be that winner (see
:func:`partition`), so it changes the work, not the answer; ``tests/test_history_partition.py``
checks it against the plain programme on many series.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np


def penalty(logs: np.ndarray) -> float:
    """β = 2σ² ln n per segment, σ from the median absolute first difference (robust to the
    shifts themselves)."""
    sigma = float(np.median(np.abs(np.diff(logs)))) / (0.6745 * np.sqrt(2)) or 1e-3
    return float(2 * sigma**2 * np.log(len(logs)))


def partition(logs: np.ndarray, allowed: Collection[int], min_size: int) -> list[int]:
    """Cuts minimising Σ within-segment squared error + β per segment (:func:`penalty`).
    Segments hold at least ``min_size`` points; a segment may begin only at 0 or at a position
    in ``allowed`` (and end only at one, or at the end).

    Pruning: a start ``s`` is dropped once an allowed cut ``t`` after it has
    ``F(s) + C(s, t) > F(t) + tol`` (``F`` the best cost up to a point, ``C`` a segment's squared
    error).  As ``C(s, u) ≥ C(s, t) + C(t, u)`` for any ``u`` past ``t``, ``s`` then costs more
    than ``t`` at every later end where ``t`` may start a segment (``u ≥ t + min_size``, when the
    drop takes effect), so it is never the cheapest.  ``tol`` is wider than the rounding of the
    sums the costs are made of, so the argument holds for the computed costs too."""
    return partition_counted(logs, allowed, min_size)[0]


def partition_counted(logs: np.ndarray, allowed: Collection[int], min_size: int) -> tuple[list[int], int]:
    """:func:`partition`, and how many (start, end) candidates it costed: the work pruning saves."""
    n, costed = len(logs), 0
    if n < 2 * min_size:
        return [], costed
    beta = penalty(logs)
    csum, csq = np.concatenate([[0.0], np.cumsum(logs)]), np.concatenate([[0.0], np.cumsum(logs**2)])
    tol = 64 * n * np.finfo(float).eps * (1.0 + float(csq[n]) + n * beta)
    may_cut = np.zeros(n + 1, dtype=bool)
    cuts_at = np.fromiter((a for a in allowed if 0 < a < n), dtype=np.int64)
    may_cut[cuts_at] = True
    best, back = np.full(n + 1, np.inf), np.zeros(n + 1, dtype=np.int64)
    best[0] = -beta
    # The usable starts, ascending, with their best cost and sums beside them (gathered once,
    # when a start becomes usable, not at every end): the first ``k`` of each buffer.
    starts, start_best = np.empty(n + 1, dtype=np.int64), np.empty(n + 1)
    start_csum, start_csq = np.empty(n + 1), np.empty(n + 1)
    k = 0
    dropped: dict[int, np.ndarray] = {}  # end -> starts dropped from then on
    for end in range(min_size, n + 1):
        start = end - min_size  # the start that becomes usable at this end
        if (start == 0 or (may_cut[start] and start >= min_size)) and np.isfinite(best[start]):
            starts[k], start_best[k], start_csum[k], start_csq[k] = start, best[start], csum[start], csq[start]
            k += 1
        if end in dropped:
            kept = ~np.isin(starts[:k], dropped.pop(end), assume_unique=True)
            k = int(kept.sum())
            for buffer in (starts, start_best, start_csum, start_csq):
                buffer[:k] = buffer[: len(kept)][kept]
        if (end < n and not may_cut[end]) or not k:
            continue
        # float_power is the C library's pow, as ``np.float64 ** 2`` in the plain loop; ``** 2``
        # on an array multiplies, which differs in the last bit for ~0.1 % of values and so
        # can break a near-tie between two partitions the other way.
        squared = np.float_power(csum[end] - start_csum[:k], 2.0)
        costs = start_best[:k] + (csq[end] - start_csq[:k] - squared / (end - starts[:k])) + beta
        costed += k
        at = int(np.argmin(costs))
        if np.isnan(costs[at]):  # argmin stops at a NaN, which the plain loop's < skips
            costs = np.where(np.isnan(costs), np.inf, costs)
            at = int(np.argmin(costs))
        if costs[at] < np.inf:
            best[end], back[end] = costs[at], starts[at]
        if end < n and end >= min_size and np.isfinite(best[end]):
            beaten = starts[:k][costs - beta > best[end] + tol]
            if beaten.size:
                dropped[end + min_size] = beaten
    return _cuts(back, n), costed


def _cuts(back: np.ndarray, n: int) -> list[int]:
    """The cuts of the best partition of ``[0, n)``, followed back from its end."""
    cuts, at = [], n
    while at > 0:
        at = int(back[at])
        if at:
            cuts.append(at)
    return sorted(cuts)
