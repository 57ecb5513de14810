"""Independent readings the analysis tests compare against: a trace's manifest and its raw
attention annotations read with the standard library, the paper's attention FLOPs by hand, and
synthetic GPU traces (``gpu_trace``) whose kernel durations make expected figures exact."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from sqlalchemy import func, select

from tests.conftest import DATA, Database
from tracehouse.core.meta import RunMeta
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel

BASELINE = DATA / "sd_tiny_cpu_baseline.json.gz"
FLASH = DATA / "sd_tiny_cpu_flash.json.gz"


# ------------------------------------------------------------------ independent readings


def manifest_of(trace: Path) -> dict:
    return json.loads(trace.with_name(trace.name.replace(".json.gz", ".manifest.json")).read_text())


def annotation_keys(name: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in name.split("|")[1:] if "=" in part)


def raw_attention_calls(trace: Path) -> list[dict]:
    """Every ``th|op=attention`` range in time order, with the component and step of the
    innermost enclosing range that names them (plain scan, no ingest code)."""
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    ranges = sorted(
        (e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("th|")),
        key=lambda e: float(e["ts"]),
    )
    out = []
    for e in ranges:
        k = annotation_keys(e["name"])
        if k.get("op") != "attention":
            continue
        call = {
            "type": k["attn"],
            "sq": int(k["sq"]),
            "skv": int(k["skv"]),
            "b": int(k["b"]),
            "h": int(k["h"]),
            "d": int(k["d"]),
            "comp": None,
            "step": None,
        }
        t = float(e["ts"])
        enclosing = [r for r in ranges if float(r["ts"]) <= t <= float(r["ts"]) + float(r["dur"])]
        for r in sorted(enclosing, key=lambda r: float(r["ts"])):  # later start = more inner
            rk = annotation_keys(r["name"])
            call["comp"] = rk.get("comp", call["comp"])
            call["step"] = int(rk["step"]) if "step" in rk else call["step"]
        out.append(call)
    return out


def flops(c: dict) -> int:
    return 4 * c["b"] * c["h"] * c["sq"] * c["skv"] * c["d"]


def ingest_run(db: Database, raw_dir: Path, path: Path, meta: RunMeta | None = None) -> int:
    return ingest_file(db.engine, path, meta, raw_dir=raw_dir).run_id


def kernel_ns(db: Database, run_id: int, operator: str | None = None) -> int:
    with session_scope(db.engine) as s:
        stmt = select(func.sum(Kernel.dur_ns)).where(Kernel.run_id == run_id)
        if operator:
            stmt = stmt.where(Kernel.operator == operator)
        return int(s.scalar(stmt) or 0)


def gpu_trace(path: Path, device: str, calls: list[tuple[str, list[float]]], mem_gib: int = 80) -> Path:
    """A minimal Kineto GPU trace: each call is an annotation range enclosing one launch per
    kernel duration (µs), kernels back to back on one stream."""
    events, cpu_t, gpu_t, corr = [], 0.0, 1000.0, 0
    for name, durations in calls:
        start = cpu_t
        for dur in durations:
            corr += 1
            events.append(
                {
                    "ph": "X",
                    "cat": "cuda_runtime",
                    "name": "cudaLaunchKernel",
                    "pid": 1,
                    "tid": 1,
                    "ts": cpu_t + 0.1,
                    "dur": 0.5,
                    "args": {"correlation": corr},
                }
            )
            events.append(
                {
                    "ph": "X",
                    "cat": "kernel",
                    "name": f"kernel_{corr % 3}",
                    "pid": 0,
                    "tid": 7,
                    "ts": gpu_t,
                    "dur": dur,
                    "args": {"correlation": corr, "device": 0, "stream": 7},
                }
            )
            gpu_t += dur + 1
            cpu_t += 1
        # "aten::..." names an unannotated op (dims in brackets after it), else an annotation.
        op, _, dims = name.partition("@")
        events.append(
            {
                "ph": "X",
                "cat": "cpu_op" if op.startswith("aten::") else "user_annotation",
                "name": op,
                "pid": 1,
                "tid": 1,
                "ts": start,
                "dur": cpu_t - start + 0.05,
                "args": {"Input Dims": json.loads(dims)} if dims else {},
            }
        )
        cpu_t += 1
    trace = {
        "schemaVersion": 1,
        "traceEvents": events,
        "deviceProperties": [{"id": 0, "name": device, "totalGlobalMem": mem_gib * 2**30}],
    }
    path.write_bytes(gzip.compress(json.dumps(trace).encode()))
    return path


ATTN = "th|op=attention|attn={t}|sq={sq}|skv={skv}|b={b}|h={h}|d={d}"
