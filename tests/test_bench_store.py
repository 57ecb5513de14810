"""bench/store.py end to end on a small SQLite store: the real ingest of the seed traces, the
SQL clones, and every query answered over HTTP by a real server, so the bench cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import REPO, require_shared
from tracehouse.schema.db import make_engine, session_scope
from tracehouse.schema.launches import LaunchRollup
from tracehouse.schema.models import Kernel, KernelRollup, OperatorRollup, Run

RUNS = 20  # the smallest store on which every query of the bench has rows to answer
QUERIES = {
    "run metadata",
    "breakdown by operator",
    "breakdown by kernel",
    "kernels page (100 rows)",
    "launches",
    "compare two runs (Table II row)",
    "runs list, all",
    "runs list, 1,000 a page",
    "runs list, model+backend+lab tag",
    "runs list, since a date",
    "speedups (Table II)",
    "sweep image_size",
    "across hardware",
    "runs x operator matrix, one model",
    "runs x operator matrix, 10,000 a page",
    "history of attention time, one model",
}


@pytest.mark.slow
def test_store_bench_builds_clones_that_match_their_seeds_and_measures_every_query(tmp_path: Path) -> None:
    require_shared()
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    out = tmp_path / "store.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "store.py"),
            "--db",
            url,
            "--runs",
            str(RUNS),
            "--repeat",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["storage"]["runs"] == RUNS
    assert {q["query"] for q in report["queries"]} == QUERIES
    assert all(q["n"] == 2 and q["p50_ms"] > 0 for q in report["queries"])
    engine = make_engine(url)
    with session_scope(engine) as s:
        runs = s.execute(select(Run.id, Run.kernel_count, Run.total_ns).order_by(Run.id)).all()
        rows = dict(s.execute(select(Kernel.run_id, func.count()).group_by(Kernel.run_id)).all())
        rolled = dict(
            s.execute(
                select(KernelRollup.run_id, func.sum(KernelRollup.kernel_count)).group_by(KernelRollup.run_id)
            ).all()
        )
        launches = dict(
            s.execute(
                select(LaunchRollup.run_id, func.sum(LaunchRollup.kernels))
                .where(LaunchRollup.dimension == "operator")
                .group_by(LaunchRollup.run_id)
            ).all()
        )
        op_ns = dict(
            s.execute(
                select(OperatorRollup.run_id, func.sum(OperatorRollup.total_ns)).group_by(OperatorRollup.run_id)
            ).all()
        )
    engine.dispose()
    # Every clone is whole: its kernel rows and rollups agree with its run row, and it is a
    # copy of one of the four seeds (the first four runs, through the real ingest).
    assert report["storage"]["kernel_rows"] == sum(r.kernel_count for r in runs)
    assert all(rows[r.id] == rolled[r.id] == r.kernel_count and op_ns[r.id] == r.total_ns for r in runs)
    # The launch rollup is copied with the rest: each clone has its seed's launched kernels.
    seed_launches = {r.kernel_count: launches.get(r.id) for r in runs[:4]}
    assert any(seed_launches.values()) and all(launches.get(r.id) == seed_launches[r.kernel_count] for r in runs)
    seeds = {(r.kernel_count, r.total_ns) for r in runs[:4]}
    assert len(seeds) == 4 and {(r.kernel_count, r.total_ns) for r in runs[4:]} == seeds


def test_a_seed_replicated_k_times_makes_runs_k_times_bigger(tmp_path: Path) -> None:
    """``--seeds NAME*K``: NAME's events K times over in time, ingested as one trace of K times
    its kernels (each copy a later stretch of the run); ``--build-only`` measures nothing."""
    require_shared()
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    out = tmp_path / "store.json"
    seeds = ["a100_alexnet_small*3", "a100_alexnet_small"]
    bench = [sys.executable, str(REPO / "bench" / "store.py"), "--db", url]
    done = subprocess.run(
        [*bench, "--runs", "4", "--seeds", *seeds, "--build-only", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "queries" not in report and report["build"]["seeds"] == seeds
    engine = make_engine(url)
    with session_scope(engine) as s:
        runs = s.execute(select(Run.kernel_count, Run.span_ns, Run.total_ns).order_by(Run.id)).all()
    engine.dispose()
    (big, big_span, big_ns), (one, one_span, one_ns) = runs[0], runs[1]
    assert one > 0 and big == 3 * one and big_ns == 3 * one_ns
    assert big_span > 2.5 * one_span  # the copies follow one another, they do not overlap
    assert runs[2:] == runs[:2]  # the clones are copies of the seeds
    bad = subprocess.run([*bench, "--seeds", "a100_alexnet_small*0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "NAME*K" in bad.stderr
    assert out.exists() and Path(url.removeprefix("sqlite:///")).exists()  # refused before the old store went
