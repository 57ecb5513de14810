"""A lightweight critical path (after HTA's ``critical_path_analysis``, simplified): the chain
of host launch calls, host work between them, and GPU kernels that bounds a run (or one step),
with each operator's share of it.  A step's path runs from the step's first launch call to its
last kernel's end, through whatever work (of any step) held it in that window.

Built from what the store keeps for every kernel: its stream slot, its launch call's start and
duration, and its operator; and from each run's cross-stream wait calls (``sync_edge``: each
``cudaStreamWaitEvent`` with the kernel it gates).  Walking back from the last kernel to end,
each kernel was held by whichever came later: the previous kernel on its stream (stream order)
or its own launch call (the host was late); a gated kernel that began more than
``SYNC_SLACK_NS`` after both were ready was held by the event it waited for, read as the kernel
of another stream on its device that ended last before it began (the trace names the event's
stream only in ``cuda_sync`` records, which most traces lack).  A launch call was preceded by
the previous launch call on the host (the host's time between them is charged to the operator
whose kernel the later call launched) unless the host resumed within ``SYNC_SLACK_NS`` of a
kernel's end, which is read as the host having waited on the GPU (a synchronisation:
``.item()``, a blocking copy), and the path then continues on that kernel.  A launch call that
returned only after its own activity ended (a blocking ``cudaMemcpy``) is charged as ``wait``:
the host spent it waiting on the GPU (HTA gives such calls no weight).

Why not HTA's full graph: ingest keeps no CPU-op nesting and, of the runtime's sync records,
only the wait calls, so host syncs (``cudaDeviceSynchronize``) are inferred from timing.
Rebuilding the full graph would mean reading the retained raw trace again through ingest's
parser at query time, which analyses may not import; storing CPU ops would multiply the kernel
table's size.  Host threads are not told apart (launches of all threads form one host chain).
"""

from __future__ import annotations

import bisect
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run, to_frame
from tracehouse.core.frames import FrameSchema
from tracehouse.schema.models import Kernel
from tracehouse.schema.sync import SyncEdge

SYNC_SLACK_NS = 10_000
RESOURCES = ("kernel", "launch", "host", "wait")
# One kernel as a dict of its _load columns (a frame row from ``to_dicts``).
KernelRow = dict[str, Any]
# (resource, operator, start_ns, end_ns)
Segment = tuple[str, str, int, int]
_SCHEMA: FrameSchema = {
    "seq": pl.Int64,
    "device": pl.Int64,
    "stream": pl.Int64,
    "start_ns": pl.Int64,
    "dur_ns": pl.Int64,
    "launch_ns": pl.Int64,
    "launch_dur_ns": pl.Int64,
    "operator": pl.String,
}
PATH_SCHEMA: FrameSchema = {
    "resource": pl.String,
    "operator": pl.String,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "dur_ns": pl.Int64,
}


def _load(session: Session, run_id: int, step: int | None) -> pl.DataFrame:
    """Every kernel (a step's first kernels wait on the previous step's last ones), ``in_step``
    marking those the path may use, ``gated`` those a cross-stream wait call gates."""
    k = Kernel
    stmt = select(
        k.seq, k.device, k.stream, k.start_ns, k.dur_ns, k.launch_ns, k.launch_dur_ns, k.operator, k.step, k.correlation
    ).where(k.run_id == run_id, k.kind != "cpu")
    frame = to_frame(session, stmt, {**_SCHEMA, "step": pl.Int64, "correlation": pl.Int64}).sort("start_ns", "seq")
    waits = select(SyncEdge.dst_correlation).where(SyncEdge.run_id == run_id, SyncEdge.dst_correlation.is_not(None))
    gated = to_frame(session, waits, {"dst_correlation": pl.Int64})["dst_correlation"]
    return frame.with_columns(
        in_step=pl.lit(True) if step is None else (pl.col("step") == step).fill_null(False),
        gated=pl.col("correlation").is_in(gated.implode()).fill_null(False),
    )


def critical_path_segments(session: Session, run_id: int, step: int | None = None) -> pl.DataFrame:
    """The path itself, earliest first: ``resource`` (``kernel``: GPU time; ``launch``: the
    launch call; ``host``: host time between launch calls; ``wait``: a kernel waiting in its
    queue or the host waiting on a kernel), ``operator``, ``start_ns, end_ns, dur_ns``.
    Contiguous: the segments tile the path from its first event to the last kernel's end."""
    get_run(session, run_id)
    ks = _load(session, run_id, step).to_dicts()
    segments: list[Segment] = []
    if any(k["in_step"] for k in ks):
        _walk(ks, segments)
    if not segments:
        return pl.DataFrame(schema=PATH_SCHEMA)
    frame = pl.DataFrame(segments[::-1], schema=list(PATH_SCHEMA)[:4], orient="row")
    return frame.with_columns(dur_ns=pl.col("end_ns") - pl.col("start_ns")).cast(PATH_SCHEMA)  # type: ignore[arg-type]


def _walk(ks: list[KernelRow], out: list[Segment]) -> None:
    """Back from the last kernel to end; ``cap`` keeps each node's segment from overlapping the
    one already charged after it (host and device clocks may disagree by a little)."""
    prev_on_stream: dict[int, int | None] = {}
    last: dict[tuple[int, int], int] = {}
    for i, k in enumerate(ks):
        key = (k["device"], k["stream"])
        prev_on_stream[i] = last.get(key)
        last[key] = i
    # One host node per launch call: a CUDA graph's kernels share theirs.
    calls = sorted({k["launch_ns"]: i for i, k in reversed(list(enumerate(ks))) if k["launch_ns"] is not None}.items())
    host = _Host(
        [t for t, _ in calls], [i for _, i in calls], sorted((k["start_ns"] + k["dur_ns"], i) for i, k in enumerate(ks))
    )
    mine = [k for k in ks if k["in_step"]]
    # A step's window opens at its first launch call (its first kernel without one): the path
    # is cut there, as HTA cuts it at the step annotation's start.
    floor = min(k["launch_ns"] if k["launch_ns"] is not None else k["start_ns"] for k in mine)
    last_end, last_kernel = max((t, i) for t, i in host.by_end if ks[i]["in_step"])
    node: tuple[str, int, int] | None = ("kernel", last_kernel, last_end)
    for _ in range(4 * len(ks) + 4):  # every step goes back in time; the bound only guards bad data
        if node is None or node[2] <= floor:
            break
        node = (
            _step_kernel(ks, node[1], node[2], prev_on_stream, host, out)
            if node[0] == "kernel"
            else _step_launch(ks, node[1], node[2], host, out)
        )
    out[:] = [(r, op, max(a, floor), b) for r, op, a, b in out if b > floor]


class _Host:
    def __init__(self, call_starts: list[int], call_kernels: list[int], by_end: list[tuple[int, int]]) -> None:
        self.call_starts, self.call_kernels, self.by_end = call_starts, call_kernels, by_end
        self.ends = [t for t, _ in by_end]


def _emit(out: list[Segment], resource: str, operator: str, start: int, end: int) -> None:
    if end > start:
        out.append((resource, operator, start, end))


def _step_kernel(
    ks: list[KernelRow], i: int, cap: int, prev_on_stream: dict[int, int | None], host: _Host, out: list[Segment]
) -> tuple[str, int, int] | None:
    k = ks[i]
    start = min(k["start_ns"], cap)
    _emit(out, "kernel", k["operator"], start, min(k["start_ns"] + k["dur_ns"], cap))
    p = prev_on_stream[i]
    stream_ready = ks[p]["start_ns"] + ks[p]["dur_ns"] if p is not None else None
    launch_ready = k["launch_ns"] + k["launch_dur_ns"] if k["launch_ns"] is not None else None
    held = max((t for t in (stream_ready, launch_ready) if t is not None), default=None)
    src = _event_source(ks, i, held, host) if k["gated"] else None
    if src is not None:  # a cross-stream wait let it start only after another stream's kernel
        ready, nxt = min(ks[src]["start_ns"] + ks[src]["dur_ns"], start), ("kernel", src)
    elif stream_ready is None and launch_ready is None:
        return None
    # Held by the stream's previous kernel unless the launch call came later (or there is none).
    elif p is not None and (launch_ready is None or launch_ready <= stream_ready):
        ready, nxt = min(stream_ready, start), ("kernel", p)
    else:
        ready, nxt = min(launch_ready, start), ("launch", i)
    _emit(out, "wait", k["operator"], ready, start)
    return (*nxt, ready)


def _event_source(ks: list[KernelRow], i: int, held: int | None, host: _Host) -> int | None:
    """The kernel a gated kernel waited for: when it began more than ``SYNC_SLACK_NS`` after
    both its stream and its launch were ready, the kernel of another stream on its device
    that ended last before it began (and after they were ready)."""
    k = ks[i]
    if held is not None and k["start_ns"] - held <= SYNC_SLACK_NS:
        return None
    e = bisect.bisect_right(host.ends, k["start_ns"]) - 1
    while e >= 0 and (held is None or host.ends[e] > held):
        j = host.by_end[e][1]
        if ks[j]["device"] == k["device"] and ks[j]["stream"] != k["stream"]:
            return j
        e -= 1
    return None


def _step_launch(ks: list[KernelRow], i: int, cap: int, host: _Host, out: list[Segment]) -> tuple[str, int, int] | None:
    k = ks[i]
    start = min(k["launch_ns"], cap)
    call_end = k["launch_ns"] + k["launch_dur_ns"]
    # A call that returned only after its own copy or kernel ended (a blocking cudaMemcpy) spent
    # its time waiting on the GPU, not launching: HTA gives such calls no weight.
    blocking = call_end >= k["start_ns"] + k["dur_ns"]
    _emit(out, "wait" if blocking else "launch", k["operator"], start, min(call_end, cap))
    j = bisect.bisect_left(host.call_starts, k["launch_ns"]) - 1
    prev = ks[host.call_kernels[j]] if j >= 0 else None
    prev_end = prev["launch_ns"] + prev["launch_dur_ns"] if prev is not None else None
    # The host resumed right after a kernel ended, later than its previous call: it waited on the GPU.
    e = bisect.bisect_right(host.ends, start) - 1
    if e >= 0 and start - host.ends[e] <= SYNC_SLACK_NS and (prev_end is None or host.ends[e] > prev_end):
        _emit(out, "wait", k["operator"], host.ends[e], start)
        return ("kernel", host.by_end[e][1], host.ends[e])
    if prev is None:
        return None
    ready = min(prev_end, start)
    _emit(out, "host", k["operator"], ready, start)
    return ("launch", host.call_kernels[j], ready)


def critical_path(session: Session, run_id: int, step: int | None = None) -> pl.DataFrame:
    """One row per operator on the path: ``kernel_ns, launch_ns, host_ns, wait_ns`` (see
    :func:`critical_path_segments`), ``path_ns`` (their sum) and ``share`` of the path, largest
    first.  ``step``: only that step's kernels (``tracehouse steps`` lists them)."""
    path = critical_path_segments(session, run_id, step)
    wide = (
        path.pivot(on="resource", index="operator", values="dur_ns", aggregate_function="sum")
        if path.height
        else pl.DataFrame({"operator": []}, schema={"operator": pl.String})
    )
    for resource in RESOURCES:
        if resource not in wide.columns:
            wide = wide.with_columns(pl.lit(0, pl.Int64).alias(resource))
    wide = wide.with_columns(pl.col(r).fill_null(0).cast(pl.Int64).alias(f"{r}_ns") for r in RESOURCES)
    total = path["dur_ns"].sum()
    return (
        wide.select("operator", *[f"{r}_ns" for r in RESOURCES])
        .with_columns(path_ns=pl.sum_horizontal(*[f"{r}_ns" for r in RESOURCES]))
        .with_columns(share=pl.col("path_ns") / total if total else pl.lit(None, pl.Float64))
        .sort("path_ns", "operator", descending=[True, False])
    )
