"""Shared plumbing for analyses: SQL results into polars frames."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from sqlalchemy import Select
from sqlalchemy.orm import Session

from tracehouse.core.errors import NotFound
from tracehouse.schema.models import Run


def to_frame(session: Session, stmt: Select, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    rows = session.execute(stmt).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=dict(schema), orient="row")


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run
