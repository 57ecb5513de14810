"""A live server over a database that holds a run of every kind the query routes read: the two
Stable Diffusion traces (baseline and flash, a Table II pair), a GPU trace recorded with shapes,
an Nsight Compute run, a run with the profiler's memory events and a year of fleet jobs.  Shared by the OpenAPI and client tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.conftest import DATA, KINETO_DIR, SHARED_TRACES, Database
from tests.fixtures import AppServer
from tests.test_fleet import MODELS, generate_jobs, write_csv
from tracehouse.ingest.baselines import set_baseline
from tracehouse.ingest.fleet_import import import_fleet, register_model
from tracehouse.ingest.fleet_parse import parse, read_source
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.units import ingest_all, plan_units
from tracehouse.schema.db import session_scope

NCU_RUN = SHARED_TRACES / "ncu" / "v100_deepcam_fp32_O1_fw"
GPU_TRACE = KINETO_DIR / "a100_record_shapes.json.gz"
MEMORY_TRACE = DATA / "memory" / "dlm_tiny_cpu_baseline.json.gz"  # recorded with its [memory] events


@dataclass
class Runs:
    baseline: int  # Stable Diffusion, CPU, baseline attention
    flash: int  # the same with flash attention
    gpu: int | None  # a100_record_shapes (None without the shared traces)
    ncu: int | None  # the Nsight Compute run
    memory: int  # Diffusion-LM, CPU, with the profiler's memory events


def populate(db: Database, tmp: Path) -> Runs:
    raw = tmp / "raw"
    baseline = ingest_file(db.engine, DATA / "sd_tiny_cpu_baseline.json.gz", raw_dir=raw).run_id
    flash = ingest_file(db.engine, DATA / "sd_tiny_cpu_flash.json.gz", raw_dir=raw).run_id
    memory = ingest_file(db.engine, MEMORY_TRACE, raw_dir=raw).run_id
    gpu = ncu = None
    if GPU_TRACE.is_file():
        gpu = ingest_file(db.engine, GPU_TRACE, raw_dir=raw).run_id
    if NCU_RUN.is_dir():
        ncu = next(result.run_id for _, result in ingest_all(db.engine, plan_units([NCU_RUN]), raw_dir=raw))
    with session_scope(db.engine) as s:
        set_baseline(s, "openapi", [baseline])  # for /v1/check
        for name, (family, params) in MODELS.items():
            register_model(s, name, family, params)
    fleet = write_csv(tmp / "fleet.csv", generate_jobs(300))
    with session_scope(db.engine) as s:
        import_fleet(s, parse(read_source(fleet), "auto", name=str(fleet)), str(fleet))
    return Runs(baseline, flash, gpu, ncu, memory)


def start(backend: str, tmp: Path, kind: type[AppServer] = AppServer, **env: str) -> tuple[AppServer, Runs]:
    """The populated database served in this process (``AppServer``) or by a real process
    (``kind=Server``, for a client that must reach it over TCP)."""
    db = Database(backend, tmp).migrate()
    runs = populate(db, tmp)
    return kind(db, tmp / "data", **env).start(), runs
