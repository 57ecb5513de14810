"""Orphan raw files and spool folders are reclaimed (``tracehouse db gc`` and the service's
start-up reclaim), and everything a run or a queued job still uses is kept."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from tests.conftest import Database
from tests.robust_server import CLI, SD, LoggedServer, job_row, spooled_job, wait_until
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Trace

# -- item 11: orphan raw files and spool folders are reclaimed ------------------------------------


def _aged(path: Path, seconds: float = 7200) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_db_gc_and_start_up_reclaim_orphans_and_keep_everything_in_use(db: Database, tmp_path: Path) -> None:
    from tracehouse.ingest.pipeline import ingest_file

    data = tmp_path / "data"
    env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(data)}
    ingest_file(db.engine, SD, raw_dir=data / "raw")
    with session_scope(db.engine) as s:
        kept_raw = Path(s.scalar(select(Trace.raw_path)))
    _aged(kept_raw)
    shard = data / "raw" / "ab"
    shard.mkdir(parents=True)
    orphans = [shard / ("ab" + "0" * 62 + ".json.gz"), shard / ("ab" + "1" * 62 + ".json.gz.part")]
    for orphan in orphans:
        orphan.write_bytes(b"left by a crash")
        _aged(orphan)
    young = shard / ("ab" + "2" * 62 + ".json.gz")
    young.write_bytes(b"an ingest about to commit")
    live = spooled_job(db, data, "live", "queued", 0, SD)
    _aged(_aged(data / "uploads" / "live" / SD.name).parent)
    dead = data / "uploads" / "dead"
    dead.mkdir()
    (dead / "half.json.gz").write_bytes(b"an upload cut short")
    _aged(dead / "half.json.gz")
    _aged(dead)

    dry = subprocess.run(
        [*CLI, "db", "gc", "--dry-run", "--db", db.url], capture_output=True, text=True, env=env, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert all(str(p) in dry.stdout for p in [*orphans, dead]) and str(kept_raw) not in dry.stdout
    assert all(p.exists() for p in [*orphans, dead])
    done = subprocess.run([*CLI, "db", "gc", "--db", db.url], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "reclaimed 2 orphan raw files and 1 spool folders" in done.stdout
    assert not any(p.exists() for p in [*orphans, dead])
    assert kept_raw.exists() and young.exists() and (data / "uploads" / "live" / SD.name).exists()
    assert job_row(db, live).status == "queued"

    # The same at start-up: a crash's leftovers are gone once the service is up.
    crash = shard / ("ab" + "3" * 62 + ".json.gz")
    crash.write_bytes(b"left by another crash")
    _aged(crash)
    srv = LoggedServer(db, data).start()
    try:
        wait_until(lambda: not crash.exists(), 30, "start-up reclaim")
        assert kept_raw.exists() and young.exists()
        wait_until(lambda: job_row(db, live).status == "done", 60, "the live job, kept and run")
    finally:
        srv.stop()


def test_db_gc_refuses_an_empty_database_rather_than_orphan_every_raw_file(empty_db: Database, tmp_path: Path) -> None:
    kept = tmp_path / "data" / "raw" / "ab" / ("ab" + "4" * 62 + ".json.gz")
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"a trace some other database names")
    _aged(kept)
    out = subprocess.run(
        [*CLI, "db", "gc", "--db", empty_db.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRACEHOUSE_DATA_DIR": str(tmp_path / "data")},
    )
    assert out.returncode == 4 and "db upgrade" in out.stderr, out.stderr
    assert kept.exists()
