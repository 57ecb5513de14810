"""Stretch chosen time ranges of a real Kineto trace by known factors, keeping every event's
nesting: a monotone time warp ``t -> t + Σ (f_i − 1) · clamp(t − s_i, 0, e_i − s_i)`` is
applied to every event's start and end.  So a collector annotation range (``th|op=attention``)
stretched ×2 makes the ops inside it — the run's attention time — exactly twice as long, and
nothing else changes but the times after it shifting later."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np


def warp_trace(src: Path, dst: Path, factor_of: Callable[[dict], float | None], tag: str) -> Path:
    """Write ``src`` to ``dst`` with each user annotation for which ``factor_of`` gives a
    factor stretched by it; ``tag`` goes into the trace name so every copy is new content."""
    data = json.loads(gzip.decompress(src.read_bytes()))
    events = data["traceEvents"]
    ranges = [
        (e["ts"], e["ts"] + e["dur"], f)
        for e in events
        if e.get("cat") == "user_annotation" and e.get("ph") == "X" and (f := factor_of(e)) is not None and f != 1.0
    ]
    base = min((e["ts"] for e in events if isinstance(e.get("ts"), (int, float))), default=0)
    # Times as offsets from the first: at ~4.6e12 µs a float's step is ~1 ns, too coarse to warp in.
    starts = np.array([r[0] - base for r in ranges], dtype=float)
    lengths = np.array([r[1] - r[0] for r in ranges], dtype=float)
    extra = np.array([r[2] - 1.0 for r in ranges], dtype=float)
    timed = [e for e in events if "ts" in e and isinstance(e["ts"], (int, float))]
    spans = [e for e in timed if isinstance(e.get("dur"), (int, float))]
    begins = np.array([e["ts"] - base for e in timed], dtype=float)
    ends = np.array([e["ts"] - base + e["dur"] for e in spans], dtype=float)

    def warp(t: np.ndarray) -> np.ndarray:
        # The warp is linear between the ranges' ends, so it is computed exactly at those knots
        # (and at the extreme times) and interpolated: one pass instead of a sum per event.
        if not ranges or not len(t):
            return t
        knots = np.unique(np.concatenate([starts, starts + lengths, [t.min(), t.max()]]))
        at_knots = knots + (extra * np.clip(knots[:, None] - starts, 0.0, lengths)).sum(axis=1)
        return np.interp(t, knots, at_knots)

    warped_begins = warp(begins)
    start_of = {id(e): start for e, start in zip(timed, warped_begins.tolist(), strict=True)}
    for e, end in zip(spans, warp(ends).tolist(), strict=True):
        e["dur"] = round(end - start_of[id(e)], 3)
    for e, start in zip(timed, (warped_begins + base).tolist(), strict=True):
        e["ts"] = round(start, 3)
    data["traceName"] = f"{data.get('traceName', '')}#{tag}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    # One C-encoded string and a fast deflate: streaming json.dump into gzip took 2 s a copy.
    dst.write_bytes(gzip.compress(json.dumps(data).encode(), compresslevel=1))
    return dst


def op_jitter(
    seed: int, sigma: float, slow_op: str | None = None, slow_factor: float = 1.0
) -> Callable[[dict], float | None]:
    """Factors for :func:`warp_trace`: every ``th|op=...`` range stretched by its own
    log-normal noise (``sigma``), and ``slow_op``'s ranges ``slow_factor`` times more."""
    rng = np.random.default_rng(seed)

    def factor(event: dict) -> float | None:
        name = event.get("name", "")
        if not name.startswith("th|op="):
            return None
        f = float(np.exp(rng.normal(0.0, sigma)))
        return f * slow_factor if slow_op and name.startswith(f"th|op={slow_op}|") else f

    return factor
