"""Fleet import and the family comparison at a million jobs, against the obvious alternative.

    python bench/fleet_import.py [--jobs 1000000] [--repeat 5]

Generates job records with the tests' fixed-seed generator, writes them as CSV, then times:
tracehouse's import (parse + insert + rollup + commit into a fresh, migrated SQLite file;
migration excluded), its family comparison (``fleet_summary(by='family')``, best of
``--repeat``), and a plain polars ``read_csv`` + ``group_by`` over the same CSV computing the
same GPU-hour-weighted figures.  Targets: import < 60 s, summary < 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' generator

from tests.test_fleet import MODELS, generate_jobs
from tracehouse.analyses.fleet_usage import fleet_summary
from tracehouse.ingest.fleet_import import import_fleet, register_model
from tracehouse.ingest.fleet_parse import parse, read_source
from tracehouse.schema.db import make_engine, session_scope
from tracehouse.schema.migrate import upgrade

T = TypeVar("T")


def _best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """The best time of ``repeat`` calls (at least one), and the last call's result."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def polars_alternative(csv: Path) -> pl.DataFrame:
    models = pl.DataFrame(
        {"model": list(MODELS), "family": [f for f, _ in MODELS.values()], "params": [p for _, p in MODELS.values()]}
    )
    jobs = pl.read_csv(csv, try_parse_dates=True).join(models, on="model")
    hours = pl.col("gpu_count") * (pl.col("end") - pl.col("start")).dt.total_seconds() / 3600
    x = pl.col("gpu_count") / pl.col("params") * 1e9
    return (
        jobs.with_columns(h=hours, x=x)
        .group_by("family")
        .agg(
            jobs=pl.len(),
            gpu_hours=pl.col("h").sum(),
            gpus_per_bparam=pl.col("x").mean(),
            gpus_per_bparam_gpuh=(pl.col("x") * pl.col("h")).sum() / pl.col("h").sum(),
            mean_mem_util=(pl.col("mean_mem_util") * pl.col("h")).sum() / pl.col("h").sum(),
        )
        .sort("family")
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        csv = Path(tmp) / "fleet.csv"
        pl.DataFrame(generate_jobs(args.jobs)).write_csv(csv)
        print(
            f"generated {args.jobs:,} jobs ({csv.stat().st_size / 1e6:.0f} MB CSV) in {time.perf_counter() - t:.1f} s"
        )
        engine = make_engine(f"sqlite:///{tmp}/bench.sqlite3")
        upgrade(engine)
        with session_scope(engine) as s:
            for name, (family, params) in MODELS.items():
                register_model(s, name, family, params)

        def run_import() -> dict:
            parsed = parse(read_source(csv), "auto", name=str(csv))
            with session_scope(engine) as s:
                return import_fleet(s, parsed, str(csv))

        t_import, report = _best(run_import, 1)
        with session_scope(engine) as s:
            t_summary, frame = _best(lambda: fleet_summary(s, "family"), args.repeat)
        t_polars, alt = _best(lambda: polars_alternative(csv), max(1, args.repeat // 2))
        print(
            frame.select(
                "family",
                "jobs",
                "gpus_per_bparam_gpuh",
                "mean_mem_util",
                "gpus_per_bparam_gpuh_vs_llm",
                "mean_mem_util_vs_llm",
            )
        )
        print(alt)
        print(f"import      {t_import:8.2f} s   ({report['rows_imported']:,} rows; target < 60 s)")
        print(
            f"summary     {t_summary * 1e3:8.2f} ms  (fleet_summary by family, best of {args.repeat}; target < 100 ms)"
        )
        print(f"polars alt  {t_polars * 1e3:8.2f} ms  (read_csv + group_by on the CSV)")
        print(f"ratio       {t_polars / t_summary:8.1f} x  (polars alternative / tracehouse summary)")


if __name__ == "__main__":
    main()
