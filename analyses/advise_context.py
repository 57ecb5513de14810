"""What the advice rules read about one run, each piece computed once and only when a rule
asks: the run row, operator totals, per-device utilization, per-stream idle gaps, launches,
kernel names and per-step times.  Every piece is an existing analysis or one plain query."""

from __future__ import annotations

from functools import cached_property

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.attention import temporal_vs_spatial
from tracehouse.analyses.common import get_run, to_frame
from tracehouse.analyses.compare import operator_totals
from tracehouse.analyses.idle import idle_time_breakdown
from tracehouse.analyses.steps import step_times
from tracehouse.analyses.utilization import temporal_breakdown
from tracehouse.schema.models import Hardware, Kernel, KernelRollup, Model, Run, Symbol


class RunFacts:
    """Lazily computed facts about one run (``session`` must stay open while rules run)."""

    def __init__(self, session: Session, run_id: int) -> None:
        self.session = session
        self.run: Run = get_run(session, run_id)
        self.run_id = run_id

    @property
    def is_gpu(self) -> bool:
        return self.run.device_kind == "gpu"

    @cached_property
    def model_name(self) -> str | None:
        model = self.session.get(Model, self.run.model_id) if self.run.model_id is not None else None
        return model.name if model else None

    @cached_property
    def hardware(self) -> Hardware | None:
        return self.session.get(Hardware, self.run.hardware_id) if self.run.hardware_id is not None else None

    @cached_property
    def operators(self) -> dict[str, int]:
        """Summed kernel time per operator, ns."""
        return {
            op: int(ns)
            for op, ns in operator_totals(self.session, self.run_id).select("operator", "total_ns").iter_rows()
        }

    @cached_property
    def attention_types(self) -> pl.DataFrame:
        """Per attention type: time, FLOPs and achieved FLOP/s (``temporal_vs_spatial``)."""
        return temporal_vs_spatial(self.session, self.run_id)

    @cached_property
    def utilization(self) -> pl.DataFrame:
        return temporal_breakdown(self.session, self.run_id)

    @cached_property
    def idle(self) -> pl.DataFrame:
        return idle_time_breakdown(self.session, self.run_id)

    @cached_property
    def kernel_names(self) -> pl.DataFrame:
        """Per kernel name × operator: ``kernel, kind, operator, kernel_count, total_ns``."""
        stmt = (
            select(
                Symbol.text, KernelRollup.kind, KernelRollup.operator, KernelRollup.kernel_count, KernelRollup.total_ns
            )
            .join(Symbol, Symbol.id == KernelRollup.name_id)
            .where(KernelRollup.run_id == self.run_id)
        )
        return to_frame(
            self.session,
            stmt,
            {
                "kernel": pl.String,
                "kind": pl.String,
                "operator": pl.String,
                "kernel_count": pl.Int64,
                "total_ns": pl.Int64,
            },
        )

    @cached_property
    def launched(self) -> pl.DataFrame:
        """Directly launched (not CUDA-graph) kernels with their launch call: ``dur_ns, launch_dur_ns``."""
        k = Kernel
        stmt = select(k.dur_ns, k.launch_dur_ns).where(
            k.run_id == self.run_id, k.launch_dur_ns.is_not(None), k.graph.is_(False), k.kind != "cpu"
        )
        return to_frame(self.session, stmt, {"dur_ns": pl.Int64, "launch_dur_ns": pl.Int64})

    @cached_property
    def steps(self) -> pl.DataFrame:
        """Per step, in order: ``step, kernels, start_ns, end_ns, step_ns, vs_median``."""
        return step_times(self.session, self.run_id)
