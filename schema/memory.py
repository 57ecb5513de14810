"""The profiler's memory events: one row per allocation or free the allocator reported (a
Kineto ``[memory]`` instant), with the counters after it and the annotated range it happened
in.  The memory timeline and the live-at-peak breakdown are read from these rows."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tracehouse.schema.models import Base


class MemoryEvent(Base):
    __tablename__ = "memory_event"
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # order in the trace (time, then file order)
    trace_id: Mapped[int] = mapped_column(ForeignKey("trace.id", ondelete="CASCADE"), index=True)
    ts_ns: Mapped[int] = mapped_column(BigInteger)  # exact ns, on the kernel rows' clock
    # c10's DeviceType (0 CPU, 1 CUDA ...) and index (-1 for the CPU).
    device_type: Mapped[int] = mapped_column(SmallInteger)
    device_id: Mapped[int] = mapped_column(SmallInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)  # signed: an allocation > 0, a free < 0
    total_allocated: Mapped[int | None] = mapped_column(BigInteger)
    total_reserved: Mapped[int | None] = mapped_column(BigInteger)
    addr: Mapped[int | None] = mapped_column(BigInteger)  # pairs an allocation with its free
    # The innermost of our annotations' keys enclosing the event on its thread, and the
    # operator (annotation, else the best-ranked enclosing op's rule); null where none.
    component: Mapped[str | None] = mapped_column(String(32))
    operator: Mapped[str | None] = mapped_column(String(32))
    attention_type: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[int | None] = mapped_column(Integer)
    cpu_op_id: Mapped[int | None] = mapped_column(ForeignKey("symbol.id"))  # the outermost host op

    __table_args__ = (Index("ix_memory_event_run_id_device_type_device_id", "run_id", "device_type", "device_id"),)
