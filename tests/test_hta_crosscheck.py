"""Per-kernel-name totals equal HTA's ``get_gpu_kernel_breakdown`` on the same file.

HTA's documented differences, switched off here: it drops the last ProfilerStep unless told
not to (we pass ``include_last_profiler_step=True``), and it rounds ns-resolution traces to
whole µs (ceil the start, floor the end) unless ``HTA_DISABLE_NS_ROUNDING=1``.  With both off
the only difference left is float arithmetic on HTA's µs floats: tolerance 1 ns per kernel.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from tests.conftest import KINETO_DIR, Database, require_shared
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import KernelRollup, Symbol

hta = pytest.importorskip("hta.trace_analysis", reason="holistictraceanalysis not installed (extra 'hta')")
pytestmark = pytest.mark.slow  # HTA reads each whole trace through pandas: seconds a test


def _ingested(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, backend: str = "sqlite"
) -> tuple[Database, Path, int]:
    """A shared trace ingested into a fresh database, HTA's ns rounding switched off."""
    require_shared()
    monkeypatch.setenv("HTA_DISABLE_NS_ROUNDING", "1")
    path = KINETO_DIR / name
    db = Database(backend, tmp_path).migrate()
    return db, path, ingest_file(db.engine, path, raw_dir=tmp_path / "raw").run_id


def _hta(path: Path):  # type: ignore[no-untyped-def]
    return hta.TraceAnalysis(trace_files={0: str(path)}, trace_dir="/", include_last_profiler_step=True)


def _hta_per_name(path: Path) -> dict[str, float]:
    _, per_kernel = _hta(path).get_gpu_kernel_breakdown(
        visualize=False, duration_ratio=1.0, num_kernels=10**9, include_memory_kernels=True
    )
    totals = dict(zip(per_kernel["name"], per_kernel["sum (us)"].astype(float), strict=True))
    # HTA adds synthetic "Stream Wait Event" rows for cudaStreamWaitEvent calls (host-side
    # synchronisation, no GPU activity in the trace); they are not kernels.
    totals.pop("Stream Wait Event", None)
    return totals


@pytest.mark.parametrize(
    "name",
    ["a100_nccl_training.json.gz", "v100_ns_resolution.json.gz", "mi250_rocm.json.gz", "a100_alexnet_small.json.gz"],
)
@pytest.mark.parametrize("backend", ["sqlite"])
def test_per_kernel_totals_match_hta(tmp_path: Path, backend: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db, path, run_id = _ingested(tmp_path, name, monkeypatch, backend)
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Symbol.text, KernelRollup.kernel_count, KernelRollup.total_ns)
            .join(Symbol, Symbol.id == KernelRollup.name_id)
            .where(KernelRollup.run_id == run_id)
        ).all()
    ours = (
        pl.DataFrame([tuple(r) for r in rows], orient="row", schema=["name", "count", "total_ns"])
        .group_by("name")
        .agg(pl.col("count").sum(), pl.col("total_ns").sum())
    )
    theirs = _hta_per_name(path)
    assert set(ours["name"]) == set(theirs)
    for kernel, count, total_ns in ours.iter_rows():
        assert abs(total_ns - theirs[kernel] * 1000) <= count, kernel


@pytest.mark.parametrize(
    "name",
    [
        "a100_nccl_training.json.gz",
        "a100_rank3_of8_training.json.gz",
        "v100_ns_resolution.json.gz",
        "mi250_rocm.json.gz",
        "old_format_inference.json.gz",
    ],
)
def test_utilization_matches_hta_temporal_breakdown_and_overlap(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle / compute / non-compute time and communication overlap equal HTA's.  Tolerance 0.5 µs:
    HTA holds absolute-epoch µs timestamps (the V100 file) in float64, which keeps ~0.25 µs."""
    from tracehouse.analyses.utilization import temporal_breakdown

    db, path, run_id = _ingested(tmp_path, name, monkeypatch)
    with session_scope(db.engine) as s:
        [ours] = temporal_breakdown(s, run_id).to_dicts()
    analysis = _hta(path)
    [theirs] = analysis.get_temporal_breakdown(visualize=False).to_dict("records")
    for mine, hta_col in (
        ("span_ns", "kernel_time(us)"),
        ("idle_ns", "idle_time(us)"),
        ("compute_ns", "compute_time(us)"),
        ("non_compute_ns", "non_compute_time(us)"),
    ):
        assert ours[mine] == pytest.approx(theirs[hta_col] * 1000, abs=500), mine
    overlap = analysis.get_comm_comp_overlap(visualize=False)["comp_comm_overlap_pctg"][0]
    if ours["communication_ns"]:
        assert round(100 * ours["comm_overlap_share"], 2) == pytest.approx(overlap, abs=0.011)
    else:
        assert ours["comm_overlap_share"] is None


@pytest.mark.parametrize(
    "name",
    [
        "a100_nccl_training.json.gz",
        "a100_rank3_of8_training.json.gz",
        "v100_ns_resolution.json.gz",
        "a100_alexnet_small.json.gz",
    ],
)
def test_launch_times_match_hta_launch_stats(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per launch, the stored launch call and kernel durations and the queue delay equal HTA's
    ``get_cuda_kernel_launch_stats``; the per-operator summary is their sums and counts."""
    from tracehouse.analyses.launches import launch_overhead
    from tracehouse.schema.models import Kernel

    db, path, run_id = _ingested(tmp_path, name, monkeypatch)
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(
                Kernel.correlation,
                Kernel.operator,
                Kernel.start_ns,
                Kernel.dur_ns,
                Kernel.launch_ns,
                Kernel.launch_dur_ns,
            ).where(Kernel.run_id == run_id)
        ).all()
        summary = launch_overhead(s, run_id, "operator")
    ours = pl.DataFrame(
        [tuple(r) for r in rows],
        orient="row",
        schema=["correlation", "operator", "start_ns", "dur_ns", "launch_ns", "launch_dur_ns"],
    )
    analysis = _hta(path)
    theirs = pl.from_pandas(analysis.get_cuda_kernel_launch_stats(visualize=False)[0])
    joined = theirs.join(ours, on="correlation", how="left")
    assert theirs.height > 0 and joined["launch_ns"].null_count() == 0
    delay = (pl.col("start_ns") - pl.col("launch_ns") - pl.col("launch_dur_ns")).clip(lower_bound=0)
    worst = joined.select(
        cpu=(pl.col("launch_dur_ns") - pl.col("cpu_duration") * 1000).abs().max(),
        gpu=(pl.col("dur_ns") - pl.col("gpu_duration") * 1000).abs().max(),
        delay=(delay - pl.col("launch_delay") * 1000).abs().max(),
    ).row(0, named=True)
    # HTA holds µs floats: exact to the ns on relative traces, ~0.25 µs on the epoch-µs V100 one.
    assert worst["cpu"] < 1 and worst["gpu"] < 1 and worst["delay"] <= 500, worst
    launched = ours.filter(pl.col("launch_ns").is_not_null())
    expected = launched.group_by("operator").agg(
        kernels=pl.len(),
        gpu_ns=pl.col("dur_ns").sum(),
        launch_ns=pl.col("launch_dur_ns").sum(),
        launch_bound=(pl.col("dur_ns") < pl.col("launch_dur_ns")).sum(),
    )
    got = summary.select("operator", "kernels", "gpu_ns", "launch_ns", "launch_bound").sort("operator")
    assert got.rows() == expected.sort("operator").select(got.columns).rows()
