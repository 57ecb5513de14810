"""Nsight Compute runs are stored: the counters read back from the database give the same
per-kernel roofline as the files, and a bad set writes nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import SHARED_TRACES, Database
from tracehouse.analyses.counters import counter_roofline
from tracehouse.core.errors import BadInput, BadTrace
from tracehouse.core.meta import RunMeta
from tracehouse.core.ncu_metrics import ncu_wide, roofline_inputs
from tracehouse.ingest.ncu import parse_ncu_csv
from tracehouse.ingest.ncu_load import ingest_ncu
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import NcuMetric, Run

NCU = SHARED_TRACES / "ncu" / "v100_deepcam_fp32_O1_fw"


def _files() -> list[Path]:
    if not NCU.is_dir():
        pytest.skip(f"shared ncu traces not found at {NCU}")
    return sorted(NCU.glob("*.csv"))


def _rows_in(path: Path) -> int:
    """Data rows of an ncu long CSV, read with the csv module after the program output."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))
    return sum(1 for row in csv.reader(lines[start + 1 :]) if row and row[0].isdigit())


def test_ncu_run_round_trips_through_the_database(db: Database, raw_dir: Path) -> None:
    files = _files()
    result = ingest_ncu(db.engine, files, RunMeta(hardware="Tesla V100-SXM2-32GB"), raw_dir=raw_dir)
    expected = roofline_inputs(ncu_wide(parse_ncu_csv(files)), tensor_flops_per_inst=512)
    with session_scope(db.engine) as s:
        stored = s.scalar(select(func.count()).select_from(NcuMetric).where(NcuMetric.run_id == result.run_id))
        run = s.get(Run, result.run_id)
        points = counter_roofline(s, result.run_id)
    assert stored == sum(_rows_in(f) for f in files)
    assert run.kernel_count == expected.height == points.height
    cols = ["kernel_id", "flops", "dram_bytes", "time_ns", "ai_dram"]
    assert points.select(cols).equals(expected.select(cols))
    assert set(points["bound"].drop_nulls()) <= {"memory", "compute"}
    assert points["peak_bandwidth_bytes_s"][0] == 900e9  # the V100 from the catalogue
    again = ingest_ncu(db.engine, files, raw_dir=raw_dir)
    assert again.run_id == result.run_id and not again.created


def test_partial_overlap_and_bad_files_write_nothing(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    files = _files()
    ingest_ncu(db.engine, files[:2], raw_dir=raw_dir)
    with session_scope(db.engine) as s:
        before = s.scalar(select(func.count()).select_from(NcuMetric))
    with pytest.raises(BadInput, match="already belong"):
        ingest_ncu(db.engine, files[:3], raw_dir=raw_dir)
    bad = tmp_path / "bad.csv"
    bad.write_text("no ncu here\n")
    with pytest.raises(BadTrace):
        ingest_ncu(db.engine, [bad], raw_dir=raw_dir)
    with session_scope(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(NcuMetric)) == before
        assert s.scalar(select(func.count()).select_from(Run)) == 1
