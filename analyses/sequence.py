"""Sequence-length profile of one run (paper Fig 8, 9): every attention call in execution
order, the histogram of sequence lengths, and the fundamental period (the minimal repeating
pattern, e.g. one UNet pass per denoising step).

A *call* is one invocation of an attention module.  Kernel rows are grouped into calls:
attention rows adjacent in execution order (``kernel.seq`` consecutive) that carry the same
collector annotation (``annotation_id``) — or, for unannotated traces, the same shape keys —
form one call.  Any other kernel in between (a projection, a memset) starts a new call, so an
unannotated GPU trace whose attention kernels are interleaved with other kernels splits calls.
Only attention rows are read (through ``ix_kernel_run_id_operator``), never the whole run.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, to_frame
from tracehouse.core.errors import BadInput
from tracehouse.core.frames import FrameSchema
from tracehouse.schema.models import Kernel

SHAPE_KEYS = ("attention_type", "seq_q", "seq_kv", "batch", "heads", "head_dim", "component", "step")
_ROW_SCHEMA: FrameSchema = {
    "seq": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "annotation_id": pl.Int64,
    "attention_type": pl.String,
    "seq_q": pl.Int64,
    "seq_kv": pl.Int64,
    "batch": pl.Int64,
    "heads": pl.Int64,
    "head_dim": pl.Int64,
    "component": pl.String,
    "step": pl.Int64,
}
CALL_SCHEMA: FrameSchema = {
    "call": pl.Int64,
    "first_seq": pl.Int64,
    "last_seq": pl.Int64,
    "kernel_count": pl.Int64,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "dur_ns": pl.Int64,
    **{k: _ROW_SCHEMA[k] for k in SHAPE_KEYS},
}
HIST_KEYS = ("seq_q", "seq_kv")
WEIGHTS = ("count", "time")


def _attention_rows(session: Session, run_id: int) -> pl.DataFrame:
    stmt = (
        select(
            Kernel.seq, Kernel.start_ns, Kernel.dur_ns, Kernel.annotation_id, *(getattr(Kernel, k) for k in SHAPE_KEYS)
        )
        .where(Kernel.run_id == run_id, Kernel.operator == "attention")
        .order_by(Kernel.seq)
    )
    return to_frame(session, stmt, _ROW_SCHEMA)


def group_calls(rows: pl.DataFrame) -> pl.DataFrame:
    """Kernel rows (sorted by seq) -> one row per call; see the module docstring for the rule."""
    if rows.is_empty():
        return pl.DataFrame(schema=CALL_SCHEMA)
    # ne_missing: two nulls are equal, so unannotated rows with the same shapes stay together.
    changed = pl.lit(False)
    for key in ("annotation_id", *SHAPE_KEYS):
        changed = changed | pl.col(key).ne_missing(pl.col(key).shift(1))
    starts = changed | (pl.col("seq") != pl.col("seq").shift(1) + 1) | (pl.int_range(pl.len()) == 0)
    calls = (
        rows.with_columns(call=(starts.fill_null(True).cast(pl.Int64).cum_sum() - 1))
        .group_by("call", maintain_order=True)
        .agg(
            *(pl.col(k).first() for k in SHAPE_KEYS),
            first_seq=pl.col("seq").first(),
            last_seq=pl.col("seq").last(),
            kernel_count=pl.len().cast(pl.Int64),
            start_ns=pl.col("start_ns").min(),
            end_ns=(pl.col("start_ns") + pl.col("dur_ns")).max(),
            dur_ns=pl.col("dur_ns").sum(),
        )
    )
    return calls.select(list(CALL_SCHEMA)).cast(CALL_SCHEMA)  # type: ignore[arg-type]


def attention_calls(session: Session, run_id: int) -> pl.DataFrame:
    """Every attention call in execution order.

    Columns: ``call`` (0-based ordinal), ``first_seq``/``last_seq`` (kernel.seq range),
    ``kernel_count``, ``start_ns``/``end_ns`` (first kernel start, last kernel end),
    ``dur_ns`` (sum of the call's kernel durations: busy time, not wall), and the call's
    ``attention_type, seq_q, seq_kv, batch, heads, head_dim, component, step``.
    """
    get_run(session, run_id)
    return group_calls(_attention_rows(session, run_id))


def seq_len_histogram(session: Session, run_id: int, weight: str = "count", key: str = "seq_q") -> pl.DataFrame:
    """Distribution of attention sequence lengths (Fig 9), by call count or by time.

    ``key`` is the length bucketed: ``seq_q`` (query tokens: the latent H·W for UNet
    self/cross attention, the paper's "sequence length") or ``seq_kv``.  Calls without a
    stored length are left out.  Columns: ``seq_len, call_count, total_ns, weight, fraction``
    where ``weight`` is ``call_count`` or ``total_ns`` and ``fraction`` sums to 1; sorted by length.
    """
    if weight not in WEIGHTS:
        raise BadInput(f"unknown weight {weight!r}; choose one of {', '.join(WEIGHTS)}")
    if key not in HIST_KEYS:
        raise BadInput(f"unknown sequence-length key {key!r}; choose one of {', '.join(HIST_KEYS)}")
    calls = attention_calls(session, run_id).filter(pl.col(key).is_not_null())
    hist = (
        calls.group_by(pl.col(key).alias("seq_len"))
        .agg(call_count=pl.len().cast(pl.Int64), total_ns=pl.col("dur_ns").sum())
        .sort("seq_len")
    )
    chosen = pl.col("call_count" if weight == "count" else "total_ns")
    return hist.with_columns(weight=chosen).with_columns(fraction=pl.col("weight") / pl.col("weight").sum())


def find_period(tokens: np.ndarray) -> tuple[int, int, int]:
    """``(period, offset, repeats)`` of the longest stretch of ``tokens`` that is a block
    repeated back to back at least twice; ties go to the shortest block.  A period ``p``
    covers ``L + p`` tokens when ``L`` consecutive positions satisfy ``t[i] == t[i + p]``.
    Without any repetition the whole sequence is the period (``repeats == 1``)."""
    n = len(tokens)
    best = (n, 0, 1 if n else 0)
    best_cover = 0
    for p in range(1, n // 2 + 1):
        eq = np.concatenate(([False], tokens[p:] == tokens[:-p], [False]))
        edges = np.flatnonzero(np.diff(eq.astype(np.int8)))
        if edges.size == 0:
            continue
        lengths = edges[1::2] - edges[::2]
        i = int(np.argmax(lengths))
        run_len = int(lengths[i])
        if run_len >= p and run_len + p > best_cover:
            best_cover = run_len + p
            best = (p, int(edges[2 * i]), (run_len + p) // p)
    return best


def fundamental_period(session: Session, run_id: int) -> pl.DataFrame:
    """The minimal repeating pattern of the calls' ``(attention_type, seq_q, seq_kv)`` sequence.

    Columns: ``position`` (0..period-1), ``attention_type, seq_q, seq_kv, component`` of the
    pattern's calls, and, on every row, ``period`` (calls per repetition), ``offset`` (call
    ordinal where the repeating stretch starts), ``repeats`` (whole repetitions found) and
    ``call_count`` (calls in the run).  Empty when the run has no attention calls.
    """
    calls = attention_calls(session, run_id)
    keys = ["attention_type", "seq_q", "seq_kv"]
    # Each distinct (type, seq_q, seq_kv) becomes one integer token, so comparison is exact.
    tokens = calls.select(pl.struct(keys).rank("dense")).to_series().to_numpy() if calls.height else np.array([])
    period, offset, repeats = find_period(tokens)
    pattern = calls.slice(offset, period).select(*keys, "component")
    return pattern.with_columns(
        position=pl.int_range(pl.len(), dtype=pl.Int64),
        period=pl.lit(period, pl.Int64),
        offset=pl.lit(offset, pl.Int64),
        repeats=pl.lit(repeats, pl.Int64),
        call_count=pl.lit(calls.height, pl.Int64),
    ).select("position", *keys, "component", "period", "offset", "repeats", "call_count")
