"""Lookups by key that ingest (run edits) and the analyses both make."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tracehouse.core.errors import NotFound
from tracehouse.schema.models import Run


def get_run(session: Session, run_id: int) -> Run:
    """The run, or :class:`NotFound` (a 404 over REST, exit 4 on the CLI)."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run
