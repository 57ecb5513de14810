"""What the peak memory of a run is made of, per component: weights (parameters × bytes per
element), activations (the profiler's allocator peak inside the component's range) and, of
those, the largest attention similarity matrix (the paper's §V term), beside the run's peak.

Sources, all already in the store: the collector reads the profiler's ``[memory]`` events at
record time and keeps, as run tags, the allocator peak overall and per component range
(``peak_activation_bytes[.<component>]``, or ``peak_allocated_bytes`` on CUDA, which includes
the weights), the parameters per component (``params.<component>``) and ``weight_bytes``; the
similarity matrix comes from the stored attention shapes (e·B·H·Lq·Lkv of the largest call;
0 on a fused backend, which never materialises it).  Runs without those tags (traces recorded
elsewhere) get null activations.  ``measured_peak_bytes`` is the peak the stored memory events
themselves give (``memory_timeline``: the main device's allocated total at its highest, overall
and inside each component), null for a run ingested without them.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, ratio
from tracehouse.analyses.memory_timeline import measured_peaks
from tracehouse.analyses.roofline import DTYPES, FUSED_BACKENDS, run_dtype
from tracehouse.analyses.runs import run_tags
from tracehouse.analyses.sequence import attention_calls

SCHEMA = {
    "component": pl.String,
    "params": pl.Int64,
    "weight_bytes": pl.Int64,
    "activation_peak_bytes": pl.Int64,
    "similarity_bytes": pl.Int64,
    "peak_bytes": pl.Int64,
    "weight_share": pl.Float64,
    "activation_share": pl.Float64,
    "similarity_share": pl.Float64,
    "measured_peak_bytes": pl.Int64,
}


def _tag_int(tags: dict[str, str], key: str) -> int | None:
    value = tags.get(key)
    return int(value) if value is not None and value.isdigit() else None


def memory_peak(session: Session, run_id: int) -> pl.DataFrame:
    """One row per component the run's tags or attention calls name, then ``component`` null
    for the whole run: ``params, weight_bytes`` (params × the dtype's bytes),
    ``activation_peak_bytes`` (allocator peak less weights), ``similarity_bytes`` (largest
    similarity matrix), ``peak_bytes`` (weights + activation peak; the whole-run row uses the
    run's stored peak when it has one), the shares of ``peak_bytes`` and
    ``measured_peak_bytes`` (from the run's memory events)."""
    run = get_run(session, run_id)
    tags = run_tags(session, run_id)
    elem = DTYPES[run_dtype(run)][0]
    cuda = "peak_allocated_bytes" in tags  # CUDA's allocator peak already includes the weights
    activation_key = "peak_allocated_bytes" if cuda else "peak_activation_bytes"
    similarity = _largest_similarity(session, run_id, elem, (run.attention_backend or "").lower() in FUSED_BACKENDS)
    components = sorted(
        {k.split(".", 1)[1] for k in tags if k.startswith(("params.", f"{activation_key}."))} | set(similarity)
    )
    rows = []
    for comp in [*components, None]:
        params = _tag_int(tags, f"params.{comp}") if comp else (run.param_count or _tag_int(tags, "params"))
        weights = params * elem if params is not None else None
        if comp is None and _tag_int(tags, "weight_bytes") is not None:
            weights = _tag_int(tags, "weight_bytes")  # what the weights really took (mixed dtypes)
        allocated = _tag_int(tags, f"{activation_key}.{comp}" if comp else activation_key)
        activations = allocated - (weights or 0) if cuda and allocated is not None else allocated
        peak = (weights or 0) + activations if activations is not None else None
        if comp is None and run.peak_memory_bytes:
            peak = run.peak_memory_bytes
        rows.append(
            {
                "component": comp,
                "params": params,
                "weight_bytes": weights,
                "activation_peak_bytes": activations,
                "similarity_bytes": similarity.get(comp) if comp else max(similarity.values(), default=None),
                "peak_bytes": peak,
            }
        )
    frame = pl.DataFrame(rows, schema={k: SCHEMA[k] for k in list(SCHEMA)[:6]})
    measured = measured_peaks(session, run_id)
    return frame.with_columns(
        weight_share=ratio("weight_bytes", "peak_bytes"),
        activation_share=ratio("activation_peak_bytes", "peak_bytes"),
        similarity_share=ratio("similarity_bytes", "peak_bytes"),
        measured_peak_bytes=pl.Series([measured.get(c) for c in frame["component"]], dtype=pl.Int64),
    )


def _largest_similarity(session: Session, run_id: int, elem: int, fused: bool) -> dict[str, int]:
    calls = attention_calls(session, run_id).filter(pl.col("seq_q").is_not_null() & pl.col("seq_kv").is_not_null())
    if calls.is_empty():
        return {}
    size = elem * pl.col("batch").fill_null(1) * pl.col("heads").fill_null(1) * pl.col("seq_q") * pl.col("seq_kv")
    per = calls.group_by(pl.col("component").fill_null("")).agg(bytes=size.max())
    return {c or "": 0 if fused else int(b) for c, b in per.iter_rows()}
