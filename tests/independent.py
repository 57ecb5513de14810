"""Independent readings of raw Kineto JSON with the standard library only, for tests to
compare the ingest against.  Deliberately shares no code with ``tracehouse.ingest``."""

from __future__ import annotations

import bisect
import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

GPU_CATS = {
    "kernel": "kernel",
    "Kernel": "kernel",
    "gpu_memcpy": "memcpy",
    "Memcpy": "memcpy",
    "gpu_memset": "memset",
    "Memset": "memset",
}


def load(path: Path) -> dict:
    data = json.loads(gzip.decompress(path.read_bytes()), parse_float=Decimal)
    return data if isinstance(data, dict) else {"traceEvents": data}


def gpu_events(trace: dict) -> list[dict]:
    return [
        e
        for e in trace["traceEvents"]
        if e.get("ph") == "X" and e.get("cat") in GPU_CATS and e.get("dur") is not None and e["dur"] >= 0
    ]


def ns(value) -> int:  # type: ignore[no-untyped-def]
    return int((Decimal(value) * 1000).to_integral_value())


def kind_counts(trace: dict) -> Counter:
    return Counter(GPU_CATS[e["cat"]] for e in gpu_events(trace))


def total_ns(trace: dict) -> int:
    return sum(ns(e["dur"]) for e in gpu_events(trace))


def per_name_ns(trace: dict) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for e in gpu_events(trace):
        entry = out.setdefault(e["name"], [0, 0])
        entry[0] += 1
        entry[1] += ns(e["dur"])
    return {k: (v[0], v[1]) for k, v in out.items()}


def launching_op_by_external_id(trace: dict) -> dict[int, str]:
    """New-format traces: a kernel's ``External id`` names the cpu_op that launched it."""
    ops = {
        e["args"]["External id"]: e["name"]
        for e in trace["traceEvents"]
        if e.get("cat") == "cpu_op" and "External id" in e.get("args", {})
    }
    return {
        e["args"]["correlation"]: ops[e["args"]["External id"]]
        for e in gpu_events(trace)
        if e.get("cat") == "kernel" and e["args"].get("External id") in ops
    }


def launching_op_by_nesting(trace: dict) -> dict[int, str]:
    """Old-format traces: the innermost cpu_op on the launching thread enclosing the runtime call
    (the latest-starting op that still contains the call), by a plain backwards scan."""
    runtime = {
        e["args"]["correlation"]: e
        for e in trace["traceEvents"]
        if e.get("cat") in ("cuda_runtime", "Runtime", "cuda_driver")
        and e.get("ph") == "X"
        and "correlation" in e.get("args", {})
    }
    ops_by_thread: dict[tuple, list[tuple[int, int, str]]] = {}
    for e in trace["traceEvents"]:
        if e.get("cat") in ("cpu_op", "Operator") and e.get("ph") == "X":
            start = ns(e["ts"])
            ops_by_thread.setdefault((e["pid"], e["tid"]), []).append((start, start + max(ns(e["dur"]), 1), e["name"]))
    for ops in ops_by_thread.values():
        ops.sort(key=lambda op: (op[0], -op[1]))
    starts = {k: [op[0] for op in v] for k, v in ops_by_thread.items()}
    out = {}
    for e in gpu_events(trace):
        launch = runtime.get(e["args"].get("correlation"))
        if launch is None:
            continue
        key, t = (launch["pid"], launch["tid"]), ns(launch["ts"])
        ops = ops_by_thread.get(key, [])
        i = bisect.bisect_right(starts.get(key, []), t) - 1
        while i >= 0 and not ops[i][0] <= t < ops[i][1]:
            i -= 1
        if i >= 0:
            out[e["args"]["correlation"]] = ops[i][2]
    return out
