"""Shared plumbing for analyses: SQL results into polars frames."""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import Select
from sqlalchemy.orm import Session

from tracehouse.core.frames import SchemaLike
from tracehouse.schema.lookups import get_run as get_run  # re-exported: the analyses import it from here


def ratio(num: pl.Expr | str, den: pl.Expr | str) -> pl.Expr:
    """``num / den``, null (never inf or NaN) where the denominator is missing or not positive."""
    num = pl.col(num) if isinstance(num, str) else num
    den = pl.col(den) if isinstance(den, str) else den
    return pl.when(den > 0).then(num / den)


def with_bounds(points: pl.DataFrame, intensity: str) -> pl.DataFrame:
    """``attainable_flops_s`` (min(peak, intensity × bandwidth)) and ``bound`` (``memory`` below
    the ridge point peak / bandwidth, else ``compute``) from ``peak_flops_s`` and
    ``peak_bandwidth_bytes_s``; both null where the intensity or a peak is unknown."""
    ai = pl.col(intensity)
    ridge = pl.col("peak_flops_s") / pl.col("peak_bandwidth_bytes_s")
    known = ai.is_not_null() & ridge.is_not_null()
    return points.with_columns(
        attainable_flops_s=pl.when(known).then(
            pl.min_horizontal("peak_flops_s", ai * pl.col("peak_bandwidth_bytes_s"))
        ),
        bound=pl.when(~known).then(None).when(ai < ridge).then(pl.lit("memory")).otherwise(pl.lit("compute")),
    )


def to_frame(session: Session, stmt: Select[*tuple[Any, ...]], schema: SchemaLike) -> pl.DataFrame:
    rows = session.execute(stmt).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=dict(schema), orient="row")
