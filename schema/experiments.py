"""Baselines: named sets of runs (several runs = repeats) that ``tracehouse check`` compares
new runs against.  A baseline keeps its runs by id; deleting a run drops it from the set."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tracehouse.schema.models import Base


class Baseline(Base):
    __tablename__ = "baseline"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BaselineRun(Base):
    __tablename__ = "baseline_run"
    baseline_id: Mapped[int] = mapped_column(ForeignKey("baseline.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True, index=True)
