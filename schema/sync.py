"""Cross-stream waits: one row per ``cudaStreamWaitEvent`` (``hipStreamWaitEvent``) call of a
run, with the kernel it gates (the next GPU activity its host thread launched).  The critical
path reads them to let a kernel be held by another stream's work, which the kernel rows alone
cannot show (see ``analyses/critical_path.py``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from tracehouse.schema.models import Base


class SyncEdge(Base):
    __tablename__ = "sync_edge"
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # order of the wait calls in time
    trace_id: Mapped[int] = mapped_column(ForeignKey("trace.id", ondelete="CASCADE"), index=True)
    tid: Mapped[int | None] = mapped_column(BigInteger)  # the host thread that made the call
    call_ns: Mapped[int] = mapped_column(BigInteger)  # the wait call's start, on the kernel rows' clock
    # ``kernel.correlation`` of the activity the wait gates: the next one launched on the
    # call's thread (HTA's rule; the trace names no stream for the call without cuda_sync
    # records).  Null when the thread launched nothing after it.
    dst_correlation: Mapped[int | None] = mapped_column(BigInteger)
