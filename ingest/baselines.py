"""Named baselines: the runs (repeats) a regression check compares new runs against."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tracehouse.core.errors import BadInput, NotFound
from tracehouse.schema.experiments import Baseline, BaselineRun
from tracehouse.schema.models import Run

MAX_NAME = 200


def set_baseline(session: Session, name: str, run_ids: Sequence[int], note: str | None = None) -> int:
    """Create or replace baseline ``name`` with ``run_ids``; returns its id."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise BadInput(f"a baseline needs a name of 1 to {MAX_NAME} characters")
    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if not ids:
        raise BadInput(f"baseline {name!r}: name at least one run")
    found = set(session.scalars(select(Run.id).where(Run.id.in_([r for r in ids if 1 <= r < 2**31]))))
    missing = [r for r in ids if r not in found]
    if missing:
        raise NotFound(f"run {', '.join(map(str, missing))} does not exist")
    baseline = session.scalars(select(Baseline).where(Baseline.name == name)).one_or_none()
    if baseline is None:
        baseline = Baseline(name=name, note=note, created_at=datetime.now(UTC))
        session.add(baseline)
        session.flush()
    else:
        baseline.note, baseline.created_at = note, datetime.now(UTC)
        session.execute(delete(BaselineRun).where(BaselineRun.baseline_id == baseline.id))
    session.add_all(BaselineRun(baseline_id=baseline.id, run_id=r) for r in ids)
    session.flush()
    return baseline.id


def delete_baseline(session: Session, name: str) -> None:
    baseline = session.scalars(select(Baseline).where(Baseline.name == name)).one_or_none()
    if baseline is None:
        raise NotFound(f"baseline {name!r} does not exist")
    session.execute(delete(BaselineRun).where(BaselineRun.baseline_id == baseline.id))
    session.delete(baseline)
    session.flush()
