"""Step times, multi-rank job grouping and the idle-time breakdown on both backends, each
recomputed from the stored kernel rows with plain Python.

The shared traces hold one rank per job, so the two-rank job here is two real rank traces
(rank 0 of a 2-GPU run and rank 3 of an 8-GPU run) given one ``job`` tag at ingest: the
grouping, per-rank figures and straggler flag are what is under test, not the pairing.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.conftest import KINETO_DIR, Database, require_shared
from tests.test_advise import _kernels
from tracehouse.analyses.idle import idle_time_breakdown
from tracehouse.analyses.rank_jobs import job_ranks
from tracehouse.analyses.steps import step_times
from tracehouse.core.meta import RunMeta
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope


def _ingest(db: Database, name: str, raw, **tags: str) -> int:  # type: ignore[no-untyped-def]
    return ingest_file(db.engine, (KINETO_DIR / name).resolve(), RunMeta(tags=tags), raw_dir=raw).run_id


def _step_ns(rows: list[dict]) -> dict[int, int]:
    spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        if r["step"] is not None:
            spans[r["step"]].append((r["start_ns"], r["start_ns"] + r["dur_ns"]))
    return {s: max(b for _, b in v) - min(a for a, _ in v) for s, v in sorted(spans.items())}


def test_jobs_group_ranks_by_tag_and_flag_the_straggler(db: Database, raw_dir) -> None:  # type: ignore[no-untyped-def]
    require_shared()
    two_gpu = _ingest(db, "a100_nccl_training.json.gz", raw_dir, job="demo")
    rank3 = _ingest(db, "a100_rank3_of8_training.json.gz", raw_dir, job="demo")
    alone = _ingest(db, "a100_record_shapes.json.gz", raw_dir)  # world size 16, no tag: a job of its own
    with session_scope(db.engine) as s:
        jobs = job_ranks(s)
        steps = step_times(s, rank3)
    expected = _step_ns(_kernels(db, rank3))
    assert dict(zip(steps["step"], steps["step_ns"], strict=False)) == expected
    assert steps["vs_median"].to_list() == pytest.approx(
        [t / statistics.median(expected.values()) for t in expected.values()]
    )
    demo = {r["run_id"]: r for r in jobs.filter(jobs["job"] == "tag:demo").to_dicts()}
    assert set(demo) == {two_gpu, rank3} and {r["ranks_stored"] for r in demo.values()} == {2}
    medians = {run: statistics.median(_step_ns(_kernels(db, run)).values()) for run in demo}
    job_median = statistics.median(medians.values())
    for run, row in demo.items():
        assert row["median_step_ns"] == pytest.approx(medians[run])
        assert row["straggler"] == (medians[run] >= 1.05 * job_median)
    assert demo[two_gpu]["straggler"] and not demo[rank3]["straggler"]
    [single] = jobs.filter(jobs["run_id"] == alone).to_dicts()
    assert single["job"].startswith("knobs:") and single["ranks_stored"] == 1 and not single["straggler"]
    shown = subprocess.run(
        [sys.executable, "-m", "tracehouse.api.cli", "jobs", "--format", "json", "--db", db.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and json.loads(shown.stdout) == json.loads(json.dumps(jobs.to_dicts()))


def test_idle_breakdown_recomputed_from_kernel_rows(db: Database, raw_dir) -> None:  # type: ignore[no-untyped-def]
    require_shared()
    run = _ingest(db, "a100_nccl_training.json.gz", raw_dir)
    delay = 30_000
    with session_scope(db.engine) as s:
        got = {
            (r["stream"], r["idle_category"]): (r["gaps"], r["idle_ns"])
            for r in idle_time_breakdown(s, run, delay).to_dicts()
        }
    streams: dict[int, list[dict]] = defaultdict(list)
    for r in _kernels(db, run):
        streams[r["stream"]].append(r)
    expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for stream, acts in streams.items():
        acts.sort(key=lambda r: (r["start_ns"], r["seq"]))
        for a, b in itertools.pairwise(acts):
            end = a["start_ns"] + a["dur_ns"]
            gap = b["start_ns"] - end
            cat = (
                "host_wait"
                if b["launch_ns"] is not None and b["launch_ns"] > end
                else "kernel_wait"
                if gap < delay
                else "other"
            )
            expected[(stream, cat)][0] += 1
            expected[(stream, cat)][1] += gap
    assert {k: v for k, v in got.items() if v[0]} == {k: tuple(v) for k, v in expected.items()}
    assert sum(v[0] for v in got.values()) > 1000
