"""The lightweight critical path: a contiguous chain from the first event it reaches to the
last kernel's end, whose kernel segments are real kernels of the run, that is mostly kernel
time on a GPU-bound trace and mostly host time on a host-bound one; CLI == REST == Python."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import KINETO_DIR, Database, require_shared
from tests.test_advise import _kernels
from tests.test_suite import _rest
from tracehouse.analyses.critical_path import critical_path, critical_path_segments
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.reingest import reingest_run
from tracehouse.schema.db import session_scope


def _ingest(db: Database, name: str, raw: Path) -> int:
    require_shared()
    return ingest_file(db.engine, (KINETO_DIR / name).resolve(), raw_dir=raw).run_id


@pytest.mark.parametrize(
    ("name", "bound_by", "at_least"),
    [
        ("v100_ns_resolution.json.gz", ("kernel",), 0.95),  # 98% busy GPU
        ("a100_alexnet_small.json.gz", ("host", "launch"), 0.9),  # the GPU idles 99% of the span
    ],
)
def test_path_is_contiguous_real_and_bound_where_the_trace_is(
    db: Database, raw_dir: Path, name: str, bound_by: tuple[str, ...], at_least: float
) -> None:
    run = _ingest(db, name, raw_dir)
    with session_scope(db.engine) as s:
        path = critical_path_segments(s, run)
        shares = critical_path(s, run)
    rows = _kernels(db, run)
    segs = path.to_dicts()
    assert segs and all(s["dur_ns"] > 0 for s in segs)
    assert all(a["end_ns"] == b["start_ns"] for a, b in itertools.pairwise(segs)), "segments must tile the path"
    assert segs[-1]["end_ns"] == max(r["start_ns"] + r["dur_ns"] for r in rows)
    by_start: dict[int, list[tuple[int, str]]] = {}
    for r in rows:
        by_start.setdefault(r["start_ns"], []).append((r["start_ns"] + r["dur_ns"], r["operator"]))
    for seg in (s for s in segs if s["resource"] == "kernel"):
        # A kernel segment is a kernel, cut short at most where the later segment begins.
        assert any(
            seg["end_ns"] <= end and op == seg["operator"] for end, op in by_start.get(seg["start_ns"], [])
        ) or any(
            a <= seg["start_ns"] and seg["end_ns"] <= a + d and op == seg["operator"]
            for a, d, op in ((r["start_ns"], r["dur_ns"], r["operator"]) for r in rows)
        ), seg
    length = segs[-1]["end_ns"] - segs[0]["start_ns"]
    assert shares["path_ns"].sum() == length and shares["share"].sum() == pytest.approx(1.0)
    on = sum(s["dur_ns"] for s in segs if s["resource"] in bound_by)
    assert on / length >= at_least, (on / length, bound_by)
    # An operator cannot spend more kernel time on the path than it ran.
    ran: dict[str, int] = {}
    for r in rows:
        ran[r["operator"]] = ran.get(r["operator"], 0) + r["dur_ns"]
    for row in shares.to_dicts():
        assert row["kernel_ns"] <= ran.get(row["operator"], 0)


def test_step_path_stays_inside_the_step_and_interfaces_agree(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    run = _ingest(db, "a100_nccl_training.json.gz", raw_dir)
    step_rows = [r for r in _kernels(db, run) if r["step"] == 5]
    with session_scope(db.engine) as s:
        path = critical_path_segments(s, run, step=5)
        python = json.loads(json.dumps(critical_path(s, run, step=5).to_dicts()))
    assert path["end_ns"].max() == max(r["start_ns"] + r["dur_ns"] for r in step_rows)
    assert path["start_ns"].min() >= min(min(r["start_ns"], r["launch_ns"] or r["start_ns"]) for r in step_rows)
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracehouse.api.cli",
            "critical-path",
            str(run),
            "--step",
            "5",
            "--format",
            "json",
            "--db",
            db.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    rest = _rest(db, tmp_path, f"/v1/runs/{run}/critical-path", {"step": 5})
    assert json.loads(shown.stdout) == python == rest and python


def _wait_calls(name: str) -> list[dict]:
    """The trace's ``cudaStreamWaitEvent`` calls, read with the standard library's JSON."""
    with gzip.open(KINETO_DIR / name) as f:
        events = json.load(f)["traceEvents"]
    return [e for e in events if e.get("name") == "cudaStreamWaitEvent" and e.get("ph") == "X"]


def test_a_cross_stream_wait_moves_the_path_to_the_stream_waited_for(db: Database, raw_dir: Path) -> None:
    """a100_rank3_of8_training step 1010: every wait call is stored with the kernel it gates;
    with them, the path reaches gated kernels from another stream's kernel, and without them
    (the rows deleted) it does not; a reingest stores them again."""
    name = "a100_rank3_of8_training.json.gz"
    run = _ingest(db, name, raw_dir)
    rows = {r["seq"]: r for r in _kernels(db, run)}
    with db.engine.connect() as conn:
        edges = conn.execute(text("SELECT tid, call_ns, dst_correlation FROM sync_edge WHERE run_id = :r"), {"r": run})
        edges = [dict(e._mapping) for e in edges]
        corr = dict(conn.execute(text("SELECT correlation, seq FROM kernel WHERE run_id = :r"), {"r": run}).all())
    assert len(edges) == len(_wait_calls(name)) == 186
    gated = {corr[e["dst_correlation"]] for e in edges if e["dst_correlation"] is not None}
    for e in edges:  # the kernel a wait gates was launched after it, by its thread
        if e["dst_correlation"] is not None:
            assert rows[corr[e["dst_correlation"]]]["launch_ns"] >= e["call_ns"]
    with session_scope(db.engine) as s:
        linked = critical_path_segments(s, run, step=1010)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM sync_edge WHERE run_id = :r"), {"r": run})
    with session_scope(db.engine) as s:
        unlinked = critical_path_segments(s, run, step=1010)
    crossings = _cross_stream_holds(linked.to_dicts(), rows, gated)
    assert crossings, "no gated kernel reached from another stream"
    assert not _cross_stream_holds(unlinked.to_dicts(), rows, gated)
    # The kernel it waited for ended no later than the gated kernel began.
    assert all(rows[a]["start_ns"] + rows[a]["dur_ns"] <= rows[b]["start_ns"] for a, b in crossings)
    assert linked["end_ns"].max() == unlinked["end_ns"].max()
    # A run without the rows (ingested before they were kept) gets them back from a reingest.
    reingest_run(db.engine, run)
    with session_scope(db.engine) as s:
        again = critical_path_segments(s, run, step=1010)
    assert again.equals(linked)


def _cross_stream_holds(segs: list[dict], rows: dict[int, dict], gated: set[int]) -> list[tuple[int, int]]:
    """(held, gated) kernel pairs where the path steps from a kernel of one stream, through at
    most a wait, to a gated kernel of another: kernel segments are matched to kernels by start."""
    by_start = {(r["start_ns"], r["operator"]): seq for seq, r in rows.items()}
    kernels = [
        (i, by_start.get((s["start_ns"], s["operator"]))) for i, s in enumerate(segs) if s["resource"] == "kernel"
    ]
    pairs = []
    for (i, a), (j, b) in itertools.pairwise(kernels):
        between = {s["resource"] for s in segs[i + 1 : j]}
        if a is not None and b in gated and between <= {"wait"} and rows[a]["stream"] != rows[b]["stream"]:
            pairs.append((a, b))
    return pairs
