"""History's change-point partition (``analyses/changepoints.partition``: numpy, PELT-pruned)
gives exactly the cuts of the plain O(n²) dynamic programme it replaced, kept here as the
oracle, on seeded random series: noise at several scales, steps and plateaus (exact and noisy),
constant series (every cost a tie), two-level alternations, rounded values with many ties,
restricted and odd allowed boundaries (as history's commit order makes), every min_size from 1
to past half the series.  Then the pruning is shown to prune, and history's whole answer
(change points, segments) over a real store is the one the plain partition gives."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import DATA, Database
from tests.trace_warp import op_jitter, warp_trace
from tracehouse.analyses import changepoints, history
from tracehouse.core.meta import RunMeta
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope


def plain_partition(logs: np.ndarray, allowed: Collection[int], min_size: int) -> list[int]:
    """The partition as analyses/history.py computed it before: every end, every start."""
    n = len(logs)
    if n < 2 * min_size:
        return []
    sigma = float(np.median(np.abs(np.diff(logs)))) / (0.6745 * np.sqrt(2)) or 1e-3
    beta = 2 * sigma**2 * np.log(n)
    csum, csq = np.concatenate([[0.0], np.cumsum(logs)]), np.concatenate([[0.0], np.cumsum(logs**2)])

    def sse(a: int, b: int) -> float:
        return float(csq[b] - csq[a] - (csum[b] - csum[a]) ** 2 / (b - a))

    best, back = np.full(n + 1, np.inf), np.zeros(n + 1, dtype=int)
    best[0] = -beta
    for end in range(min_size, n + 1):
        for start in range(end - min_size + 1):
            if (start and start not in allowed) or (start and start < min_size) or not np.isfinite(best[start]):
                continue
            if end < n and end not in allowed:
                continue
            cost = best[start] + sse(start, end) + beta
            if cost < best[end]:
                best[end], back[end] = cost, start
    cuts, at = [], n
    while at > 0:
        at = int(back[at])
        if at:
            cuts.append(at)
    return sorted(cuts)


def _series(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:  # noise only, at several scales
        return np.exp(rng.normal(0, rng.choice([1e-4, 0.01, 0.1, 1.0]), n))
    if kind == 1:  # steps between a few levels, exact or noisy
        levels = rng.choice([1.0, 1.2, 1.5, 2.0, 3.0], size=int(rng.integers(1, 7)))
        widths = rng.multinomial(n, np.ones(len(levels)) / len(levels))
        noise = rng.choice([0.0, 0.001, 0.03])
        return np.repeat(levels, widths) * np.exp(rng.normal(0, noise, n))
    if kind == 2:  # constant: every segment's error is 0, every choice a tie
        return np.full(n, float(rng.choice([1.0, 0.25, 3.3e8])))
    if kind == 3:  # two levels in any order
        return rng.choice([1.0, 2.0], n)
    if kind == 4:  # rounded: many equal values and near-ties
        return np.round(rng.uniform(1, 5, n), 1)
    # a plateau with a spike and a slow drift, ns-sized
    drift = 5e8 * np.exp(np.linspace(0, rng.uniform(0, 0.3), n))
    drift[int(rng.integers(0, n))] *= 4
    return drift


def _allowed(rng: np.random.Generator, n: int) -> set[int]:
    pick = rng.integers(0, 4)
    if pick == 0:
        return set(range(1, n))  # by date: anywhere
    if pick == 1:  # by commit: where the commit changes
        return {int(a) for a in np.flatnonzero(np.diff(rng.integers(0, 3, n))) + 1}
    if pick == 2:  # a random subset, with 0, n and beyond in it (which mean nothing)
        return {int(a) for a in rng.integers(0, n + 3, int(rng.integers(0, n + 2)))}
    return set()


def _cases(count: int, largest: int, seed: int) -> Iterator[tuple[np.ndarray, set[int], int]]:
    rng = np.random.default_rng(seed)
    for i in range(count):
        n = int(rng.integers(1, largest))
        min_size = int(rng.choice([1, 1, 2, 2, 3, 5, max(1, n // 2), n // 2 + 1]))
        values = _series(rng, i % 6, n)
        yield np.log(np.clip(values, 1e-12, None)), _allowed(rng, n), min_size


@pytest.mark.parametrize("seed", range(4))
def test_the_partition_equals_the_plain_programme_on_random_series(seed: int) -> None:
    for logs, allowed, min_size in _cases(1500, 90, seed):
        assert changepoints.partition(logs, allowed, min_size) == plain_partition(logs, allowed, min_size), (
            logs.tolist(),
            sorted(allowed),
            min_size,
        )


def test_the_partition_equals_the_plain_programme_on_long_series() -> None:
    for logs, allowed, min_size in _cases(30, 400, 99):
        assert changepoints.partition(logs, allowed, min_size) == plain_partition(logs, allowed, min_size)


def test_min_size_edges() -> None:
    logs = np.log(np.array([1.0, 1.0, 1.0, 3.0, 3.0, 3.0]))
    every = set(range(1, 6))
    for min_size in range(1, 8):
        assert changepoints.partition(logs, every, min_size) == plain_partition(logs, every, min_size)
    assert changepoints.partition(logs, every, 3) == [3]
    assert changepoints.partition(logs, every, 4) == []  # two segments of 4 do not fit in 6
    assert changepoints.partition(logs, {2, 4}, 1) == plain_partition(logs, {2, 4}, 1)
    assert changepoints.partition(np.array([]), set(), 1) == [] == plain_partition(np.array([]), set(), 1)
    assert changepoints.partition(np.array([0.5]), set(), 1) == []


def test_pruning_drops_starts_on_a_long_noisy_series() -> None:
    """30 steps of 100 points in noise: the answer is the steps, and a small part of the
    4.5 M (start, end) pairs of the plain programme are costed.  (PELT drops the starts before
    a change; within one long unchanging stretch every start stays, so a series with few
    changes is costed nearly whole, in numpy.)"""
    rng = np.random.default_rng(5)
    levels = np.exp(np.cumsum(rng.choice([-0.3, 0.3], 30)))
    logs = np.log(np.repeat(levels, 100) * np.exp(rng.normal(0, 0.02, 3000)))
    cuts, costed = changepoints.partition_counted(logs, set(range(1, 3000)), 2)
    assert cuts == list(range(100, 3000, 100))
    assert costed < 3000 * 3000 / 2 / 10


@pytest.fixture
def repeats(db: Database, tmp_path: Path) -> Database:
    """Twelve repeats of the committed Stable Diffusion trace with per-op noise, attention twice
    as slow from the sixth to the ninth, on commits c0..c5 (two runs each)."""
    for seed in range(12):
        slow = 2.0 if 5 <= seed < 9 else 1.0
        copy = warp_trace(
            DATA / "sd_tiny_cpu_baseline.json.gz",
            tmp_path / f"sd_{seed}.json.gz",
            op_jitter(seed, 0.05, "attention", slow),
            f"{seed}",
        )
        meta = RunMeta(model="stable-diffusion", attention_backend="baseline", git_commit=f"c{seed // 2}")
        ingest_file(db.engine, copy, meta, raw_dir=tmp_path / "raw")
    return db


def test_history_answers_as_with_the_plain_partition(repeats: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(repeats.engine, read_only=True) as s:
        answers = {
            order: history.history(s, "stable-diffusion", "attention", order=order) for order in ("date", "commit")
        }
        monkeypatch.setattr(history, "partition", plain_partition)
        for order, answer in answers.items():
            assert answer.equals(history.history(s, "stable-diffusion", "attention", order=order))
    dated = answers["date"]
    assert dated.filter(pl.col("change_point"))["position"].to_list() == [5, 9]
    assert dated["value"].to_list()[5] > 1.5 * dated["value"].to_list()[4]
