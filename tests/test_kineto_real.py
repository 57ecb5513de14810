"""Every real Kineto trace in shared/ ingests, and what is stored equals an independent
reading of the raw JSON."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select

from tests import independent
from tests.conftest import KINETO_DIR, Database, kineto_traces, require_shared
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel, Run, Symbol, Trace

TRACE_NAMES = [p.name for p in kineto_traces()] or ["(no shared traces)"]
# The shared traces with NCCL kernels (cat "kernel", name containing "nccl"): 21, 60 and 80 of them.
NCCL_TRACES = {"a100_nccl_training.json.gz", "a100_rank3_of8_training.json.gz", "a100_record_shapes.json.gz"}


def _kernel_frame(db: Database, run_id: int) -> pl.DataFrame:
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Kernel.kind, Kernel.dur_ns, Kernel.operator, Kernel.correlation, Symbol.text)
            .join(Symbol, Symbol.id == Kernel.name_id)
            .where(Kernel.run_id == run_id)
        ).all()
    return pl.DataFrame(
        [tuple(r) for r in rows], orient="row", schema=["kind", "dur_ns", "operator", "correlation", "name"]
    )


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_counts_and_time_equal_raw_json(db: Database, raw_dir: Path, name: str) -> None:
    require_shared()
    path = KINETO_DIR / name
    trace = independent.load(path)
    result = ingest_file(db.engine, path, raw_dir=raw_dir)
    kernels = _kernel_frame(db, result.run_id)
    with session_scope(db.engine) as s:
        run = s.get(Run, result.run_id)
        assert run is not None
        kind, count, total = run.device_kind, run.kernel_count, run.total_ns
    if kind == "cpu":
        assert not independent.gpu_events(trace)
        assert count > 0
        return
    expected = independent.kind_counts(trace)
    assert dict(kernels.group_by("kind").len().iter_rows()) == dict(expected)
    assert count == sum(expected.values())
    assert total == independent.total_ns(trace) == kernels["dur_ns"].sum()
    assert kernels["operator"].null_count() == 0
    other = kernels.filter(pl.col("operator") == "other")["dur_ns"].sum() / max(total, 1)
    print(f"{name}: share of time attributed to 'other' = {other:.4f}")
    assert other < 0.05


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_nccl_kernels_are_communication(db: Database, raw_dir: Path, name: str) -> None:
    require_shared()
    result = ingest_file(db.engine, KINETO_DIR / name, raw_dir=raw_dir)
    kernels = _kernel_frame(db, result.run_id)
    nccl = kernels.filter(pl.col("name").str.contains("(?i)nccl"))
    if name in NCCL_TRACES:
        assert nccl.height > 0 and nccl["operator"].unique().to_list() == ["communication"]
    else:  # no NCCL kernel in the file: none may appear in the database either
        assert nccl.height == 0, nccl
    memcpy = kernels.filter(pl.col("kind") == "memcpy")
    assert memcpy["operator"].unique().to_list() in ([], ["memcpy"])


def test_a100_training_has_every_operator_family(db: Database, raw_dir: Path) -> None:
    require_shared()
    result = ingest_file(db.engine, KINETO_DIR / "a100_nccl_training.json.gz", raw_dir=raw_dir)
    times = dict(_kernel_frame(db, result.run_id).group_by("operator").agg(pl.col("dur_ns").sum()).iter_rows())
    for operator in ("conv", "linear", "elementwise", "normalization", "communication", "memcpy"):
        assert times.get(operator, 0) > 0, operator
    # cudnn convolution kernels are conv whatever launched them
    kernels = _kernel_frame(db, result.run_id)
    conv_named = kernels.filter(pl.col("name").str.contains("implicit_convolve|fprop|dgrad|wgrad"))
    assert conv_named.height > 0 and set(conv_named["operator"]) == {"conv"}


def _cpu_ops(db: Database, run_id: int) -> dict[int, str]:
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Kernel.correlation, Symbol.text)
            .join(Symbol, Symbol.id == Kernel.cpu_op_id)
            .where(Kernel.run_id == run_id)
        ).all()
    return dict(rows)


def test_new_format_launching_op_matches_external_id(db: Database, raw_dir: Path) -> None:
    """New format: our time nesting finds the same op the trace names by External id."""
    require_shared()
    path = KINETO_DIR / "a100_nccl_training.json.gz"
    expected = independent.launching_op_by_external_id(independent.load(path))
    got = _cpu_ops(db, ingest_file(db.engine, path, raw_dir=raw_dir).run_id)
    assert len(expected) > 1000
    assert {c: got.get(c) for c in expected} == expected


def test_old_format_kernels_placed_by_time_nesting(db: Database, raw_dir: Path) -> None:
    """Old format (External id = correlation): ops found by nesting on the launching thread."""
    require_shared()
    path = KINETO_DIR / "a100_record_shapes.json.gz"
    trace = independent.load(path)
    kernels = [e for e in trace["traceEvents"] if e.get("cat") == "kernel"]
    assert all(e["args"]["External id"] == e["args"]["correlation"] for e in kernels)  # old format
    expected = independent.launching_op_by_nesting(trace)
    got = _cpu_ops(db, ingest_file(db.engine, path, raw_dir=raw_dir).run_id)
    assert len(expected) > 5000
    assert {c: got.get(c) for c in expected} == expected


def test_reingest_same_file_returns_existing_run(db: Database, raw_dir: Path) -> None:
    require_shared()
    path = KINETO_DIR / "mi250_rocm.json.gz"
    first = ingest_file(db.engine, path, raw_dir=raw_dir)
    second = ingest_file(db.engine, path, raw_dir=raw_dir)
    assert first.created and not second.created
    assert second.run_id == first.run_id
    with session_scope(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 1
        trace = s.scalars(select(Trace)).one()
        raw = Path(trace.raw_path)
        assert raw.read_bytes() == path.read_bytes()
        assert trace.sha256 in raw.name


def test_trace_metadata_fills_hardware_and_rank(db: Database, raw_dir: Path) -> None:
    require_shared()
    from tracehouse.schema.models import Hardware

    result = ingest_file(db.engine, KINETO_DIR / "a100_record_shapes.json.gz", raw_dir=raw_dir)
    with session_scope(db.engine) as s:
        run = s.get(Run, result.run_id)
        hw = s.get(Hardware, run.hardware_id)
        assert (run.rank, run.world_size) == (0, 16)
        assert hw.name == "NVIDIA A100-SXM4-80GB" and hw.catalog_key == "a100-80gb"
        assert hw.sm_count == 108 and hw.peak_bf16_flops == 312e12 and hw.peak_bandwidth_bytes_s == 2039e9
