"""What ingest keeps so reads stay small: the launch rollup behind ``/launches`` and the run
row's memcpy / memset counts behind the runs listing, which is paged in the database.  Each
answer is checked against the same thing computed from the kernel rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import delete, func, select, text

from tests.conftest import SHARED_TRACES, Database, require_shared
from tests.fixtures import AppServer, run_cli
from tracehouse.analyses import launches
from tracehouse.analyses.runs import count_runs, list_runs
from tracehouse.core.launches import LAUNCH_BY
from tracehouse.core.meta import meta_from_mapping
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.reingest import reingest_run
from tracehouse.schema.db import session_scope
from tracehouse.schema.launches import LaunchRollup
from tracehouse.schema.models import Kernel, Run

# A CUDA-graph trace (70 cudaGraphLaunch calls), a plain training trace with memcpys and
# memsets, and a CPU-only trace (no launches at all).
TRACES = ("a100_record_shapes", "a100_nccl_training", "cpu_only")


@pytest.fixture
def runs(db: Database, raw_dir: Path) -> dict[str, int]:
    require_shared()
    return {
        name: ingest_file(
            db.engine, SHARED_TRACES / "kineto" / f"{name}.json.gz", meta_from_mapping({"model": name}), raw_dir=raw_dir
        ).run_id
        for name in TRACES
    }


def _from_kernel_rows(session, run_id: int, by: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    grouped = launches.launch_groups(launches.launched_kernels(session, run_id), by)
    return grouped.with_columns(
        launch_per_gpu=launches.ratio("launch_ns", "gpu_ns"),
        launch_bound_share=launches.ratio("launch_bound", pl.col("kernels") - pl.col("graph_kernels")),
    ).sort("launch_ns", by, descending=[True, False], nulls_last=True)


def test_launches_come_from_the_rollup_and_match_the_kernel_rows(db: Database, runs: dict[str, int]) -> None:
    with session_scope(db.engine, read_only=True) as s:
        rolled = dict(s.execute(select(LaunchRollup.run_id, func.count()).group_by(LaunchRollup.run_id)).all())
        assert set(rolled) == {runs["a100_record_shapes"], runs["a100_nccl_training"]}  # CPU-only: none
        for name, run_id in runs.items():
            for by in LAUNCH_BY:
                answer = launches.launch_overhead(s, run_id, by)
                assert_frame_equal(answer, _from_kernel_rows(s, run_id, by))
                assert answer.is_empty() == (name == "cpu_only")
        graphs = launches.launch_overhead(s, runs["a100_record_shapes"], "operator")
        assert graphs["graph_kernels"].sum() > 0 and graphs["launches"].sum() < graphs["kernels"].sum()


def test_a_run_without_rollup_rows_is_answered_from_its_kernel_rows(db: Database, runs: dict[str, int]) -> None:
    """A run stored before the launch rollup existed: the same answer, from the kernel rows."""
    run_id = runs["a100_nccl_training"]
    with session_scope(db.engine, read_only=True) as s:
        before = {by: launches.launch_overhead(s, run_id, by) for by in LAUNCH_BY}
    with session_scope(db.engine) as s:
        s.execute(delete(LaunchRollup).where(LaunchRollup.run_id == run_id))
    with session_scope(db.engine, read_only=True) as s:
        for by in LAUNCH_BY:
            assert_frame_equal(launches.launch_overhead(s, run_id, by), before[by])


def test_reingest_writes_the_launch_rollup_again(db: Database, runs: dict[str, int]) -> None:
    run_id = runs["a100_record_shapes"]
    count = select(func.count()).select_from(LaunchRollup).where(LaunchRollup.run_id == run_id)
    with session_scope(db.engine, read_only=True) as s:
        rows, before = s.scalar(count), launches.launch_overhead(s, run_id, "kernel")
    reingest_run(db.engine, run_id)
    with session_scope(db.engine, read_only=True) as s:
        assert s.scalar(count) == rows  # replaced, not added to
        assert_frame_equal(launches.launch_overhead(s, run_id, "kernel"), before)


def test_the_listing_splits_activities_by_kind_from_the_run_row(db: Database, runs: dict[str, int]) -> None:
    with session_scope(db.engine, read_only=True) as s:
        kinds = s.execute(select(Kernel.run_id, Kernel.kind, func.count()).group_by(Kernel.run_id, Kernel.kind)).all()
        listed = {r["run_id"]: r for r in list_runs(s).to_dicts()}
    expected: dict[int, dict[str, int]] = {r: {"kernel_count": 0, "memcpy_count": 0, "memset_count": 0} for r in listed}
    for run_id, kind, n in kinds:
        expected[run_id][f"{kind}_count" if kind in ("memcpy", "memset") else "kernel_count"] += n
    for run_id, counts in expected.items():
        assert {k: listed[run_id][k] for k in counts} == counts
        assert listed[run_id]["activity_count"] == sum(counts.values())
    assert expected[runs["a100_nccl_training"]]["memcpy_count"] > 0  # else the split is not exercised


def test_the_listing_is_paged_and_sorted_in_the_database(db: Database, runs: dict[str, int]) -> None:
    with session_scope(db.engine, read_only=True) as s:
        whole = list_runs(s)
        assert count_runs(s) == whole.height == len(runs)
        pages = [list_runs(s, offset=i, limit=2) for i in range(0, whole.height, 2)]
        assert_frame_equal(pl.concat(pages), whole)
        by_time = list_runs(s, sort="total_ns", descending=True)
        assert by_time["run_id"].to_list() == whole.sort("total_ns", descending=True)["run_id"].to_list()
        assert list_runs(s, run_ids=[runs["cpu_only"]])["model"].to_list() == ["cpu_only"]
        assert count_runs(s, model="cpu_only") == 1


def _more_runs(db: Database, like: int, count: int) -> None:
    """``count`` more run rows, copies of run ``like``'s row under new ids (as bench/store.py
    clones runs): a store with more runs than one page of the listing."""
    columns = [c.name for c in Run.__table__.columns if c.name != "id"]
    names = ", ".join(f'"{c}"' for c in columns)
    with db.engine.begin() as conn:
        for _ in range(count):
            conn.execute(text(f"INSERT INTO run ({names}) SELECT {names} FROM run WHERE id = :like"), {"like": like})


def test_rest_and_cli_answer_a_page_of_100_runs_unless_asked(
    db: Database, runs: dict[str, int], tmp_path: Path
) -> None:
    _more_runs(db, runs["cpu_only"], 102)  # 105 runs in all
    srv = AppServer(db, tmp_path / "data").start()
    try:
        read = srv.token("read")
        first = srv.http.get(f"{srv.url}/v1/runs", headers=read)
        assert len(first.json()) == 100 and first.headers["x-total-count"] == "105"
        assert first.headers["x-truncated"] == "true" and "offset=100" in first.headers["link"]
        rest = srv.http.get(str(first.url.join(first.headers["link"].split(">")[0].lstrip("<"))), headers=read)
        assert len(rest.json()) == 5 and rest.headers["x-truncated"] == "false"
        ids = [r["run_id"] for r in first.json() + rest.json()]
        assert ids == sorted(ids) and len(set(ids)) == 105
        asked = srv.http.get(f"{srv.url}/v1/runs", params={"limit": 1000}, headers=read)
        assert [r["run_id"] for r in asked.json()] == ids and asked.headers["x-truncated"] == "false"
    finally:
        srv.stop()
    # A table is a page of 100; --json (what pipes into `baseline set`) is every match.
    table = run_cli("runs", "--db", db.url)
    assert table.returncode == 0 and "of 105; --offset 100 for more" in table.stderr, table.stderr
    out = run_cli("runs", "--db", db.url, "--json")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert [r["run_id"] for r in json.loads(out.stdout)] == ids
    page = run_cli("runs", "--db", db.url, "--json", "--limit", "100")
    assert len(json.loads(page.stdout)) == 100 and "of 105; --offset 100 for more" in page.stderr
    tail = json.loads(run_cli("runs", "--db", db.url, "--json", "--offset", "100").stdout)
    assert [r["run_id"] for r in tail] == ids[100:]
