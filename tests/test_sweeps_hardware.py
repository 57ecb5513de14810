"""Sweeps, Table II backend pairs and hardware comparison (issue 4, queries 5 and 9) on
synthetic traces whose kernel durations make the expected speedups and growth exponents exact."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.analysis_readings import (
    ATTN,
    BASELINE,
    FLASH,
    gpu_trace,
    ingest_run,
)
from tests.conftest import Database
from tracehouse.analyses.compare import backend_speedups, compare_summary
from tracehouse.analyses.hardware_compare import compare_hardware
from tracehouse.analyses.sweep import sweep
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import RunMeta
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Run

# ------------------------------------------------------------------ sweeps and hardware (query 5, 9)


def _sized_run(
    db: Database,
    raw_dir: Path,
    tmp: Path,
    size: int,
    backend: str,
    attn_us: float,
    conv_us: float,
    batch: int = 1,
    device: str = "NVIDIA A100-SXM4-80GB",
) -> int:
    calls = [
        (ATTN.format(t="self", sq=size * size, skv=size * size, b=batch, h=1, d=8), [attn_us]),
        ("th|op=conv", [conv_us]),
    ]
    path = gpu_trace(tmp / f"{device[7:11]}_{size}_{backend}_{batch}_{attn_us}.json.gz", device, calls)
    return ingest_run(
        db,
        raw_dir,
        path,
        RunMeta(
            model="synthetic-sd",
            image_size=size,
            batch=batch,
            attention_backend=backend,
            dtype="fp16",
            denoising_steps=1,
        ),
    )


def test_sweep_fits_the_growth_exponent(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    sizes = [16, 32, 64, 128]
    for size in sizes:  # baseline attention ∝ size², flash ∝ size, conv ∝ size (no two files alike)
        _sized_run(db, raw_dir, tmp_path, size, "baseline", size * size / 16, float(size))
        _sized_run(db, raw_dir, tmp_path, size, "flash", size / 2, float(size))
    _sized_run(db, raw_dir, tmp_path, 32, "baseline", 999.0, 3.0, batch=2)  # another series
    with session_scope(db.engine) as s:
        frame = sweep(s, "synthetic-sd", "image_size", ("attention", "conv", "total"))
        flash_only = sweep(s, "synthetic-sd", "image_size", attention_backend="flash", batch=1)
        with pytest.raises(BadInput):
            sweep(s, "synthetic-sd", "colour")
        with pytest.raises(NotFound):
            sweep(s, "no-such-model", "image_size")

    def exponent(backend: str, op: str, batch: int = 1) -> float:
        rows = frame.filter(
            (pl.col("attention_backend") == backend) & (pl.col("operator") == op) & (pl.col("batch") == batch)
        )
        return rows["exponent"][0]

    assert exponent("baseline", "attention") == pytest.approx(2.0, abs=1e-9)
    assert exponent("flash", "attention") == pytest.approx(1.0, abs=1e-9)
    assert exponent("baseline", "conv") == pytest.approx(1.0, abs=1e-9)
    assert exponent("baseline", "attention", batch=2) is None  # one point: no fit
    base_attn = frame.filter(
        (pl.col("attention_backend") == "baseline") & (pl.col("operator") == "attention") & (pl.col("batch") == 1)
    )
    assert base_attn["image_size"].to_list() == sizes
    assert base_attn["total_ns"].to_list() == [s * s / 16 * 1000 for s in sizes]
    total = frame.filter((pl.col("operator") == "total") & (pl.col("attention_backend") == "flash"))
    assert total["total_ns"].to_list() == [1.5 * s * 1000 for s in sizes]
    assert set(flash_only["attention_backend"]) == {"flash"} and set(flash_only["operator"]) == {"attention", "conv"}


def test_table_ii_pairs_runs_alike_but_for_the_backend(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    sd_base, sd_flash = ingest_run(db, raw_dir, BASELINE), ingest_run(db, raw_dir, FLASH)
    attn = ATTN.format(t="causal", sq=512, skv=512, b=1, h=8, d=64)

    def run(name: str, attn_us: float, backend: str, **knobs: object) -> int:
        path = gpu_trace(
            tmp_path / f"{name}.json.gz", "NVIDIA A100-SXM4-80GB", [(attn, [attn_us]), ("th|op=linear", [60.0])]
        )
        return ingest_run(db, raw_dir, path, RunMeta(model="toy-llm", attention_backend=backend, **knobs))

    run("old-baseline", 100.0, "baseline", batch=1)
    base = run("baseline", 90.0, "baseline", batch=1)  # a repeat: the latest one counts
    flash = run("flash", 30.0, "flash", batch=1)
    run("flash-batch-4", 35.0, "flash", batch=4)  # no baseline at batch 4: unpaired
    # Later Nsight Compute counters with the same metadata have no timeline: never a pair's side.
    from tests.test_ncu_link import write_ncu_csv
    from tracehouse.ingest.ncu_load import ingest_ncu

    ingest_ncu(
        db.engine,
        [write_ncu_csv(tmp_path / "ncu.csv", ["k(int)"])],
        RunMeta(model="toy-llm", attention_backend="flash", batch=1),
        raw_dir=raw_dir,
    )
    with session_scope(db.engine) as s:
        table = backend_speedups(s)
        expected = {r: compare_summary(s, *r).row(0, named=True) for r in ((sd_base, sd_flash), (base, flash))}
        only_toy = backend_speedups(s, model="toy-llm")
        none = backend_speedups(s, hardware="H100")
    assert sorted(zip(table["baseline_run_id"], table["other_run_id"], strict=True)) == sorted(expected)
    for row in table.iter_rows(named=True):
        want = expected[(row["baseline_run_id"], row["other_run_id"])]
        assert {k: row[k] for k in want} == want
    toy = only_toy.row(0, named=True)
    assert only_toy.height == 1 and (toy["model"], toy["hardware"]) == ("toy-llm", "NVIDIA A100-SXM4-80GB")
    assert toy["end_to_end_speedup"] == pytest.approx(150.0 / 90.0) and toy["operator_speedup"] == pytest.approx(3.0)
    assert none.is_empty() and "end_to_end_speedup" in none.columns


def test_compare_hardware(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    a100 = [_sized_run(db, raw_dir, tmp_path, 64, "flash", us, 100.0) for us in (300.0, 500.0)]
    h100 = _sized_run(db, raw_dir, tmp_path, 64, "flash", 100.0, 50.0, device="NVIDIA H100 80GB HBM3")
    _sized_run(db, raw_dir, tmp_path, 32, "flash", 10.0, 10.0, device="NVIDIA H100 80GB HBM3")
    with session_scope(db.engine) as s:
        with pytest.raises(BadInput, match="image_size"):
            compare_hardware(s, "synthetic-sd")
        frame = compare_hardware(s, "synthetic-sd", image_size=64)
        first = compare_hardware(s, "synthetic-sd", reference="NVIDIA H100 80GB HBM3", image_size=64)
        totals = {r: s.get(Run, r).total_ns for r in (*a100, h100)}
    a100_total = (totals[a100[0]] + totals[a100[1]]) / 2
    rows = {(r["hardware"], r["operator"]): r for r in frame.iter_rows(named=True)}
    h = rows[("NVIDIA H100 80GB HBM3", "attention")]
    a = rows[("NVIDIA A100-SXM4-80GB", "attention")]
    assert a["run_count"] == 2 and a["run_ids"] == sorted(a100) and a["run_total_ns"] == a100_total
    assert a["speedup"] == 1.0 and h["speedup"] == a100_total / totals[h100]
    assert h["operator_speedup"] == 400_000 / 100_000
    assert rows[("NVIDIA H100 80GB HBM3", "conv")]["operator_speedup"] == 2.0
    assert h["share"] == 100_000 / totals[h100]
    assert frame["hardware"][0] == "NVIDIA A100-SXM4-80GB"  # slowest first
    assert first.filter(pl.col("hardware") == "NVIDIA H100 80GB HBM3")["speedup"][0] == 1.0
