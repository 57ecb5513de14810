"""Nsight Systems exports go through the same attribution and loader as Kineto traces."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import SHARED_TRACES, Database
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Hardware, Kernel, Run

NSYS = SHARED_TRACES / "nsys"


def _sql_count_and_ns(path: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    count = total = 0
    for table in ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"):
        if table in tables:
            n, ns = con.execute(f"SELECT count(*), coalesce(sum(end - start), 0) FROM {table}").fetchone()
            count, total = count + n, total + ns
    return count, total


@pytest.mark.parametrize(
    ("name", "gpu"), [("rtx4060ti_nvtx_layers.sqlite", "4060 Ti"), ("rtx3060_vecadd_2025.sqlite", "3060")]
)
def test_nsys_export_ingests_like_a_kineto_trace(db: Database, raw_dir: Path, name: str, gpu: str) -> None:
    path = NSYS / name
    if not path.exists():
        pytest.skip(f"shared nsys traces not found at {NSYS}")
    result = ingest_file(db.engine, path, raw_dir=raw_dir)
    count, total = _sql_count_and_ns(path)
    with session_scope(db.engine) as s:
        run = s.get(Run, result.run_id)
        assert (run.kernel_count, run.total_ns) == (count, total)
        assert s.scalar(select(func.count()).select_from(Kernel).where(Kernel.operator.is_(None))) == 0
        assert gpu in s.get(Hardware, run.hardware_id).name
