"""Reads of stored Nsight Compute counters that ingest (re-linking after a re-ingest) and the
analyses (roofline, counters) both need."""

from __future__ import annotations

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.core.ncu_metrics import LONG_SCHEMA
from tracehouse.schema.models import NcuMetric, Symbol


def has_counters(session: Session, run_id: int) -> bool:
    return session.scalar(select(NcuMetric.id).where(NcuMetric.run_id == run_id).limit(1)) is not None


def stored_metrics(session: Session, run_id: int) -> pl.DataFrame:
    """A run's counters back in ``parse_ncu_csv``'s long shape (launch attributes not kept)."""
    result = session.execute(
        select(NcuMetric.kernel_id, Symbol.text, NcuMetric.metric_name, NcuMetric.metric_unit, NcuMetric.value)
        .join(Symbol, Symbol.id == NcuMetric.name_id)
        .where(NcuMetric.run_id == run_id)
    ).all()
    frame = pl.DataFrame(
        [tuple(r) for r in result],
        orient="row",
        schema={
            "kernel_id": pl.Int64,
            "kernel_name": pl.String,
            "metric_name": pl.String,
            "metric_unit": pl.String,
            "metric_value": pl.Float64,
        },
    )
    return frame.with_columns(
        pl.lit(None, dtype).alias(c) for c, dtype in LONG_SCHEMA.items() if c not in frame.columns
    ).select(LONG_SCHEMA.keys())
