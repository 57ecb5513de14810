"""Terminal tables a person reads: human units, no wrapped numbers, constant columns in a
caption, the database named; JSON and CSV keep the analysis' raw values."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, KINETO_DIR, Database, require_shared
from tracehouse.analyses.breakdown import breakdown
from tracehouse.analyses.compare import backend_speedups
from tracehouse.api.cli import app
from tracehouse.api.output import PIPE_WIDTH, format_cell, unit_of
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope

BASELINE = DATA / "sd_tiny_cpu_baseline.json.gz"
FLASH = DATA / "sd_tiny_cpu_flash.json.gz"


def _show(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _body_lines(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("│")]


def _header_line(table: str) -> str:
    return next(line for line in table.splitlines() if line.startswith("┃"))


@pytest.fixture
def sd_runs(db: Database) -> tuple[int, int]:
    return ingest_file(db.engine, BASELINE, raw_dir=db.raw_dir).run_id, ingest_file(
        db.engine, FLASH, raw_dir=db.raw_dir
    ).run_id


def test_unit_rules_cover_what_analyses_return() -> None:
    expected = {
        "total_ns": "time_ns",
        "delay_p95_ns": "time_ns",
        "share": "fraction",
        "operator_share": "fraction",
        "kernel_count": "count",
        "call_count": "count",
        "run_id": "id",
        "baseline_run_id": "id",
        "l2_hit_rate_pct": "percent",
        "dram_bytes": "bytes",
        "achieved_flops_s": "flop_rate",
        "op_flops": "flops",
        "end_to_end_speedup": "ratio",
        "amdahl_error": "fraction",
        "flops_fp32": "flops",
        "peak_bandwidth_bytes_s": "bandwidth",
        "gflops_per_s": "gflop_rate",
    }
    dtypes = {c: pl.Float64 if c.endswith(("share", "speedup", "error", "_s", "pct")) else pl.Int64 for c in expected}
    assert {c: unit_of(c, dtypes[c]) for c in expected} == expected
    assert unit_of("kernel", pl.String) == "text" and unit_of("exceeds_amdahl", pl.Boolean) == "flag"
    # A column the catalogue does not list yet takes its unit from its name.
    assert unit_of("warmup_ns", pl.Int64) == "time_ns" and unit_of("cache_share", pl.Float64) == "fraction"
    assert unit_of("retry_error", pl.Float64) == "signed_fraction" and unit_of("widgets", pl.Int64) == "count"
    assert format_cell("time_ns", 802_411_881) == "802.4 ms"
    assert format_cell("time_ns", 1_500) == "1.500 µs"
    assert format_cell("time_ns", 61_000_000_000) == "61.00 s"
    assert format_cell("count", 802_411_881) == "802,411,881"
    assert format_cell("fraction", 0.1472) == "14.7%"
    assert format_cell("ratio", 1.2215) == "1.222×"
    assert format_cell("bytes", 8_071_724) == "8.072 MB"
    assert format_cell("id", 12345) == "12345" and format_cell("time_ns", None) == "-"


def test_table_has_units_and_one_line_per_row(db: Database, sd_runs: tuple[int, int]) -> None:
    base, _ = sd_runs
    with session_scope(db.engine) as s:
        frame = breakdown(s, base, "operator")
    table = _show("breakdown", str(base), "--db", db.url)
    rows = _body_lines(table)
    assert len(rows) == frame.height  # no row spilled onto a second line
    assert all(len(line) <= PIPE_WIDTH for line in table.splitlines())
    for line, row in zip(rows, frame.iter_rows(named=True), strict=True):
        assert row["operator"] in line
        assert format_cell("time_ns", row["total_ns"]) in line
        assert f"{row['share'] * 100:.1f}%" in line
        assert str(row["total_ns"]) not in line  # raw ns stay in JSON / CSV
    header = _header_line(table)
    assert all(f" {c} " in header for c in frame.columns)


def test_json_and_csv_keep_raw_ns(db: Database, sd_runs: tuple[int, int]) -> None:
    base, _ = sd_runs
    with session_scope(db.engine) as s:
        frame = breakdown(s, base, "operator")
    shown = pl.read_csv(io.StringIO(_show("breakdown", str(base), "--format", "csv", "--db", db.url)))
    assert shown["total_ns"].to_list() == frame["total_ns"].to_list()
    assert shown["share"].to_list() == pytest.approx(frame["share"].to_list())


def test_constant_columns_move_to_a_caption(db: Database, sd_runs: tuple[int, int]) -> None:
    table = _show("runs", "--db", db.url)
    header = _header_line(table)
    assert "attention_backend" in header and "run_id" in header
    assert " hardware " not in header and " model " not in header
    [caption] = [line for line in table.splitlines() if line.startswith("same in every row: ")]
    assert "model=stable-diffusion" in caption and "hardware=AMD EPYC" in caption
    assert "database:" not in table  # named on the command line: nothing to say


def test_long_names_are_shortened_not_wrapped(db: Database) -> None:
    require_shared()
    run_id = ingest_file(db.engine, KINETO_DIR / "a100_rank3_of8_training.json.gz", raw_dir=db.raw_dir).run_id
    with session_scope(db.engine) as s:
        frame = breakdown(s, run_id, "kernel")
    table = _show("breakdown", str(run_id), "--by", "kernel", "--db", db.url)
    rows = _body_lines(table)
    assert len(rows) == frame.height
    assert all(len(line) <= PIPE_WIDTH for line in table.splitlines())
    assert any("…" in line for line in rows)  # the longest kernel names were cut
    for line, row in zip(rows, frame.iter_rows(named=True), strict=True):
        assert format_cell("count", row["kernel_count"]) in line
        assert format_cell("time_ns", row["total_ns"]) in line


def test_table_names_the_default_database_without_its_password(db: Database, sd_runs: tuple[int, int]) -> None:
    url = db.url
    if db.backend == "postgresql":  # trust auth ignores it; the caption must not show it
        url = url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    for command in (["runs"], ["speedups"], ["breakdown", str(sd_runs[0])]):
        table = _show(*command, env={"TRACEHOUSE_DATABASE_URL": url})
        [caption] = [line for line in table.splitlines() if line.startswith("database: ")]
        assert "hunter2" not in table
        expected = url.replace("hunter2", "***") if db.backend == "postgresql" else url
        assert caption == f"database: {expected}"


def _profiled_again(source: Path, dest_dir: Path, backend: str, image_size: int, session: int) -> Path:
    """``source`` as if profiled in another session at another image size: a new trace id in
    the trace, the knobs in its manifest (what a sweep's collector writes)."""
    text = gzip.decompress(source.read_bytes()).decode()
    text, swapped = re.subn(r'"trace_id":"[0-9A-F]+"', f'"trace_id":"{session:032X}"', text, count=1)
    assert swapped == 1
    dest = dest_dir / f"sd_{backend}_img{image_size}.json.gz"
    dest.write_bytes(gzip.compress(text.encode()))
    manifest = json.loads(source.with_name(source.name.replace(".json.gz", ".manifest.json")).read_text())
    manifest.update(attention_backend=backend, image_size=image_size)
    dest.with_name(dest.name.replace(".json.gz", ".manifest.json")).write_text(json.dumps(manifest))
    return dest


def test_table_ii_rows_of_a_sweep_are_told_apart(db: Database, tmp_path: Path) -> None:
    pairs = {64: (BASELINE, FLASH)}
    # At 256 the flash trace plays the baseline: slower end to end, within Amdahl's bound.
    for n, (size, (base, flash)) in enumerate({128: (BASELINE, FLASH), 256: (FLASH, BASELINE)}.items()):
        pairs[size] = (
            _profiled_again(base, tmp_path, "baseline", size, 2 * n + 1),
            _profiled_again(flash, tmp_path, "flash", size, 2 * n + 2),
        )
    ids = {
        size: (
            ingest_file(db.engine, b, raw_dir=db.raw_dir).run_id,
            ingest_file(db.engine, f, raw_dir=db.raw_dir).run_id,
        )
        for size, (b, f) in pairs.items()
    }
    with session_scope(db.engine) as s:
        frame = backend_speedups(s, model="stable-diffusion")
    by_size = {r["image_size"]: r for r in frame.iter_rows(named=True)}
    assert {size: (r["baseline_run_id"], r["other_run_id"]) for size, r in by_size.items()} == ids
    assert {size: r["exceeds_amdahl"] for size, r in by_size.items()} == {64: True, 128: True, 256: False}
    for r in by_size.values():
        assert r["exceeds_amdahl"] == (r["end_to_end_speedup"] > r["amdahl_speedup"])

    table = _show("speedups", "--model", "stable-diffusion", "--db", db.url)
    header = _header_line(table)
    for column in ("image_size", "baseline_run_id", "other_run_id", "exceeds_amdahl", "end_to_end_speedup"):
        assert f" {column} " in header
    rows = _body_lines(table)
    assert len(rows) == 3 and len(set(rows)) == 3
    for line, size in zip(rows, sorted(ids), strict=True):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert str(size) in cells and str(ids[size][0]) in cells and str(ids[size][1]) in cells
        assert ("yes" if by_size[size]["exceeds_amdahl"] else "no") in cells
    [caption] = [line for line in table.splitlines() if line.startswith("same in every row: ")]
    assert "model=stable-diffusion" in caption and "batch=1" in caption and "image_size" not in caption


def test_run_listing_names_what_it_counts(db: Database, tmp_path: Path) -> None:
    """A GPU run's timeline holds kernels, memcpys and memsets: each gets its own count, in the
    CLI and in the REST listing alike."""
    require_shared()
    from sqlalchemy import func, select

    from tests.fixtures import AppServer
    from tracehouse.analyses.runs import list_runs
    from tracehouse.schema.models import Kernel

    run_id = ingest_file(db.engine, KINETO_DIR / "a100_rank3_of8_training.json.gz", raw_dir=db.raw_dir).run_id
    cpu_run = ingest_file(db.engine, BASELINE, raw_dir=db.raw_dir).run_id
    with session_scope(db.engine) as s:
        stored = dict(
            s.execute(select(Kernel.kind, func.count()).where(Kernel.run_id == run_id).group_by(Kernel.kind)).all()
        )
        cpu_rows = s.scalar(select(func.count()).select_from(Kernel).where(Kernel.run_id == cpu_run))
        listed = {r["run_id"]: r for r in list_runs(s).to_dicts()}
    assert stored["memcpy"] > 0 and stored["memset"] > 0  # the trace has all three kinds
    gpu = listed[run_id]
    assert (gpu["kernel_count"], gpu["memcpy_count"], gpu["memset_count"]) == (
        stored["kernel"],
        stored["memcpy"],
        stored["memset"],
    )
    assert gpu["activity_count"] == sum(stored.values())
    cpu = listed[cpu_run]
    assert (cpu["activity_count"], cpu["kernel_count"], cpu["memcpy_count"]) == (cpu_rows, cpu_rows, 0)

    srv = AppServer(db, tmp_path / "data").start()
    try:
        rows = srv.http.get(f"{srv.url}/v1/runs", headers=srv.token("read")).json()
    finally:
        srv.stop()
    assert {
        r["run_id"]: {k: r[k] for k in ("activity_count", "kernel_count", "memcpy_count", "memset_count")} for r in rows
    } == {
        i: {k: listed[i][k] for k in ("activity_count", "kernel_count", "memcpy_count", "memset_count")} for i in listed
    }
    table = _show("runs", "--db", db.url)
    header = _header_line(table)
    assert all(f" {c} " in header for c in ("activity_count", "kernel_count", "memcpy_count", "memset_count"))
    [line] = [r for r in _body_lines(table) if r.split("│")[1].strip() == str(run_id)]
    assert format_cell("count", gpu["activity_count"]) in line and format_cell("count", gpu["memset_count"]) in line


def test_brackets_in_names_are_text_not_markup() -> None:
    from tracehouse.api.output import render

    frame = pl.DataFrame({"kernel": ["void k<float>[bold]x[/bold]", "gemm[2]"], "total_ns": [1_000, 2_000]})
    table = render(frame, "table")
    assert "void k<float>[bold]x[/bold]" in table and "gemm[2]" in table
