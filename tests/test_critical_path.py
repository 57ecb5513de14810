"""The lightweight critical path: a contiguous chain from the first event it reaches to the
last kernel's end, whose kernel segments are real kernels of the run, that is mostly kernel
time on a GPU-bound trace and mostly host time on a host-bound one; CLI == REST == Python."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KINETO_DIR, Database, require_shared
from tests.test_advise import _kernels
from tests.test_suite import _rest
from tracehouse.analyses.critical_path import critical_path, critical_path_segments
from tracehouse.ingest.pipeline import ingest_file
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
