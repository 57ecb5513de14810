"""The launch rollup: per run and grouping (operator, kernel, attention type, component), the
launch statistics of its launched kernels, written at ingest so ``/launches`` reads a few
rows instead of every kernel row of the run (as the operator and kernel rollups do for the
breakdowns).  Medians and percentiles do not add up across groups, so each grouping is kept
whole rather than derived from the finest one."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tracehouse.schema.models import Base


class LaunchRollup(Base):
    __tablename__ = "launch_rollup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    dimension: Mapped[str] = mapped_column(String(16))  # one of core.launches.LAUNCH_BY
    # The group: its kernel name for ``kernel``, else the operator / attention type /
    # component (null is a group of its own, as in the kernel rows).
    name_id: Mapped[int | None] = mapped_column(ForeignKey("symbol.id"))
    group_key: Mapped[str | None] = mapped_column(String(64))
    kernels: Mapped[int] = mapped_column(BigInteger)
    graph_kernels: Mapped[int] = mapped_column(BigInteger)
    launches: Mapped[int] = mapped_column(BigInteger)
    gpu_ns: Mapped[int] = mapped_column(BigInteger)
    launch_ns: Mapped[int] = mapped_column(BigInteger)
    launch_bound: Mapped[int] = mapped_column(BigInteger)
    delay_median_ns: Mapped[float | None] = mapped_column(Float)
    delay_p95_ns: Mapped[float | None] = mapped_column(Float)
    delay_max_ns: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_launch_rollup_run_id_dimension", "run_id", "dimension"),)
