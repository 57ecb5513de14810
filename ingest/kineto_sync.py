"""Cross-stream waits of a parsed trace into ``sync_edge`` rows (see ``schema/sync.py``); a
Kineto trace's, and an Nsight Systems export's (``nsys.assembled`` keeps its wait calls).

``cudaStreamWaitEvent`` is a runtime call, so it is already in the parse's launch frame (every
``cuda_runtime`` event is): no second read of the file.  Each call gates the next GPU activity
its host thread launches, as HTA's ``_get_cuda_stream_wait_event_df`` pairs them (HTA also
matches the stream, which only the ``cuda_sync`` "Stream Wait Event" records name: traces
recorded without them, most of ours, give none, so the next launch on the thread is taken).
Which kernel the event was recorded after is not stored: the trace says so only through
``cuda_sync`` records and ``cudaEventRecord`` calls, absent from most traces; the critical path
infers it from time (the kernel of another stream that ended last before the gated one began).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tracehouse.core.frames import ParsedTrace, conform

# The per-thread default stream's variant (``--default-stream per-thread``) waits the same way,
# and so does the driver's call (Triton's and XLA's launchers use the driver API).
WAIT_CALLS = (
    "cudaStreamWaitEvent",
    "cudaStreamWaitEvent_ptsz",
    "cuStreamWaitEvent",
    "cuStreamWaitEvent_ptsz",
    "hipStreamWaitEvent",
)


def sync_rows(parsed: ParsedTrace) -> pl.DataFrame:
    """One row per wait call, earliest first: ``seq, tid, call_ns, dst_correlation``; the whole
    trace is one window to :class:`WaitGates`."""
    waits = parsed.launches.filter(pl.col("start_ns").is_not_null() & pl.col("name").is_in(WAIT_CALLS))
    gates = WaitGates.of(waits.select("pid", "tid", "correlation", call_ns="start_ns"))
    gates.see(parsed)
    return gates.rows()


# The order of the wait calls, and so of their ``seq``.
WAIT_ORDER = ("call_ns", "tid", "pid")


def one_per_call(waits: pl.DataFrame) -> pl.DataFrame:
    """``waits`` (``pid, tid, correlation, call_ns``) with one row per call, in ``WAIT_ORDER``:
    where a runtime call and the driver call it makes are both recorded under one correlation
    id, the earlier record, the runtime's, stands for the call."""
    ordered = waits.sort(WAIT_ORDER)
    known = pl.col("correlation").is_not_null()
    once = ordered.filter(known).unique(["pid", "correlation"], keep="first", maintain_order=True)
    return pl.concat([once, ordered.filter(~known)]).sort(WAIT_ORDER).drop("correlation")


def next_launches(waits: pl.DataFrame, launches: pl.DataFrame) -> pl.DataFrame:
    """``waits`` (``pid, tid, call_ns``, in that order) with ``gate_ns, dst_correlation``: the
    first of ``launches`` (calls that enqueued a GPU activity) on the wait's thread of the
    wait's process at or after its start, the lower id on a tie; null where there is none.  A
    thread is its process's: two processes' threads can share a number (containers, an nsys
    export of several processes).  A windowed ingest asks this of each window's launches and
    keeps the earliest answer (:class:`WaitGates`)."""
    thread = [pl.col("pid").cast(pl.Int64).fill_null(-1), pl.col("tid").cast(pl.Int64)]
    launched = (
        launches.filter(pl.col("start_ns").is_not_null())
        .select(*thread, call_ns="start_ns", gate_ns="start_ns", dst_correlation="correlation")
        .sort("call_ns", "dst_correlation")
    )
    asked = waits.with_columns(thread)
    return asked.join_asof(launched, on="call_ns", by=["pid", "tid"], strategy="forward", check_sortedness=False)


@dataclass
class WaitGates:
    """:func:`sync_rows` of a trace read window by window (``kineto_windows``, ``nsys_windows``):
    each wait call and the launch it gates among the windows' launches seen so far.  A wait
    gates the first launch of a GPU activity on its thread at or after it, which may be in any
    window (windows follow kernel order, not call order), so a window's candidate replaces an
    earlier window's only when it was called earlier."""

    gates: pl.DataFrame  # pid, tid, call_ns, gate_ns, dst_correlation

    @classmethod
    def of(cls, waits: pl.DataFrame) -> WaitGates:
        """``waits``: ``pid, tid, correlation, call_ns``, every wait call record of the trace."""
        schema = {
            "pid": pl.Int64,
            "tid": pl.Int64,
            "call_ns": pl.Int64,
            "gate_ns": pl.Int64,
            "dst_correlation": pl.Int64,
        }
        return cls(conform(one_per_call(waits), schema))  # as sync_rows has them

    def see(self, window: ParsedTrace) -> None:
        """A window's launches: its calls that enqueued its GPU activity (a window of a
        multi-process export can hold another process's wait call whose raw id is one of its
        kernels'; qualified, it enqueued nothing, and must not gate itself)."""
        activity = window.gpu_events["correlation"].drop_nulls().unique()
        launches = window.launches.filter(pl.col("correlation").is_in(activity.implode()))
        if self.gates.is_empty() or launches.is_empty():
            return
        here = next_launches(self.gates.select("pid", "tid", "call_ns"), launches)
        here_ns, gate_ns = here["gate_ns"], pl.col("gate_ns")
        # Called earlier, or at the same ns with a lower id (as the whole trace's sort has it).
        before = (here_ns < gate_ns) | ((here_ns == gate_ns) & (here["dst_correlation"] < pl.col("dst_correlation")))
        earlier = here_ns.is_not_null() & (gate_ns.is_null() | before)
        self.gates = self.gates.select(
            "pid",
            "tid",
            "call_ns",
            gate_ns=pl.when(earlier).then(here_ns).otherwise("gate_ns"),
            dst_correlation=pl.when(earlier).then(here["dst_correlation"]).otherwise("dst_correlation"),
        )

    def rows(self) -> pl.DataFrame:
        """``sync_rows``' rows, once every window has been seen."""
        return self.gates.with_row_index("seq").select(
            pl.col("seq").cast(pl.Int64), "tid", "call_ns", "dst_correlation"
        )
