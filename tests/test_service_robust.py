"""The service under real failures: a database that refuses a write or goes away mid-job, a
crash in the middle of a job, many clients waiting at once, a job that used its attempts.

Every failure here is real: a trigger in the database refuses a write, the database terminates
the worker's connections, a server process is killed with SIGKILL.  Servers are real uvicorn
processes (``tracehouse serve``) and clients real httpx ones, on both backends.  What an answer
may not name is ``test_service_no_leaks.py``; orphan reclaim, ``test_orphan_gc.py``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.conftest import BACKENDS, DATA, Database, with_query
from tests.fixtures import assert_error
from tests.robust_server import SD, SD_KERNELS, LoggedServer, job_row, post, spooled_job, variant, wait_until
from tracehouse.api.job_status import service_health
from tracehouse.api.job_worker import Worker
from tracehouse.api.jobs import GAVE_UP, MAX_ATTEMPTS, claim_next
from tracehouse.core.errors import ServiceUnhealthy
from tracehouse.core.settings import Settings
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run, Trace


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    db = Database(request.param, tmp_path).migrate()
    yield db
    db.drop()


# -- item 5: the worker survives database errors; /healthz tells ---------------------------------


def _refuse_outcomes(db: Database) -> None:
    """A real database error on every job-outcome write (running -> anything else)."""
    with db.engine.begin() as conn:
        if db.backend == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_outcome BEFORE UPDATE ON ingest_job "
                    "WHEN OLD.status = 'running' AND NEW.status <> 'running' "
                    "BEGIN SELECT RAISE(ABORT, 'outcome refused by the test'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'outcome refused by the test'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_outcome BEFORE UPDATE ON ingest_job FOR EACH ROW "
                    "WHEN (OLD.status = 'running' AND NEW.status <> 'running') "
                    "EXECUTE FUNCTION refuse_outcome()"
                )
            )


def _allow_outcomes(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse_outcome" + ("" if db.backend == "sqlite" else " ON ingest_job")))


def test_worker_survives_a_refused_status_write_and_healthz_reports_the_stuck_queue(
    database: Database, tmp_path: Path
) -> None:
    srv = LoggedServer(database, tmp_path / "data", TRACEHOUSE_QUEUE_STUCK_SECONDS="2").start()
    try:
        write = srv.token("write")
        healthy = httpx.get(f"{srv.url}/healthz")
        assert healthy.status_code == 200 and healthy.json()["worker"]["alive"] is True
        beat = datetime.fromisoformat(healthy.json()["worker"]["heartbeat_at"])
        assert abs((datetime.now(UTC) - beat).total_seconds()) < 10
        _refuse_outcomes(database)
        first = post(srv, variant(tmp_path, 0), write).json()["job_id"]
        # The ingest itself commits; recording its outcome is what the database refuses.
        wait_until(lambda: "outcome refused by the test" in srv.log(), 30, "the refused status write")
        assert job_row(database, first).status == "running"
        second = post(srv, variant(tmp_path, 1), write).json()["job_id"]
        time.sleep(2.5)  # past the stuck-queue threshold, while the outcome is still refused
        stuck = httpx.get(f"{srv.url}/healthz")
        assert_error(stuck, 503, contains="queue is stuck")
        _allow_outcomes(database)  # the database comes back: both jobs finish, no restart
        wait_until(lambda: job_row(database, second).status == "done", 40, "the second job after recovery")
        done = job_row(database, first)
        assert done.status == "done" and done.attempts == 1 and done.run_id is not None
        well = httpx.get(f"{srv.url}/healthz")
        assert well.status_code == 200 and well.json()["queue"] == {"queued": 0, "oldest_queued_age_s": None}
    finally:
        srv.stop()


def test_worker_survives_its_connections_being_terminated_mid_job(tmp_path: Path) -> None:
    """PostgreSQL only (SQLite has no server to drop a connection): ``pg_terminate_backend`` on
    every connection of the service, again and again while a job runs."""
    db = Database("postgresql", tmp_path).migrate()
    app_name = f"srv_{db.name}"
    served = db.reached_through(with_query(db.url, application_name=app_name))
    srv = LoggedServer(served, tmp_path / "data").start()
    kill = text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name")
    try:
        write = srv.token("write")
        first = post(srv, variant(tmp_path, 0), write).json()["job_id"]
        wait_until(lambda: job_row(db, first).status != "queued", 30, "the job to start")
        killed, until = 0, time.monotonic() + 1.0
        while time.monotonic() < until:
            with db.engine.begin() as conn:
                killed += conn.execute(kill, {"name": app_name}).scalar_one()
            time.sleep(0.02)
        assert killed > 0
        wait_until(lambda: job_row(db, first).status in ("done", "failed"), 60, "the first job to end")
        job = job_row(db, first)
        assert job.status == "done" or (job.attempts == MAX_ATTEMPTS and "127.0.0.1" not in (job.error or ""))
        second = post(srv, variant(tmp_path, 1), write, wait=60)  # the worker is still there
        assert second.status_code == 200 and second.json()["status"] == "done", second.text
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    finally:
        srv.stop()
        db.drop()


def test_healthz_is_503_when_the_worker_thread_is_gone(db: Database, tmp_path: Path) -> None:
    settings = Settings(database_url=db.url, data_dir=tmp_path / "data")
    worker = Worker(db.engine, settings, poll_seconds=0.05)
    worker.start()
    try:
        report = service_health(db.engine, worker, settings)
        assert report["worker"]["alive"] is True and report["queue"]["queued"] == 0  # type: ignore[index]
    finally:
        worker.stop()
    with pytest.raises(ServiceUnhealthy, match="ingest worker is not running") as caught:
        service_health(db.engine, worker, settings)
    assert caught.value.status == 503


# -- item 6: ?wait= holds no pooled connection ----------------------------------------------------


def test_sixteen_concurrent_waiting_uploads_all_finish(database: Database, tmp_path: Path) -> None:
    srv = LoggedServer(database, tmp_path / "data").start()
    try:
        write = srv.token("write")
        traces = [variant(tmp_path, i) for i in range(16)]
        start = threading.Barrier(16)

        def upload(path: Path) -> httpx.Response:
            start.wait()
            return post(srv, path, write, wait=60, timeout=75)

        began = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(upload, traces))
        elapsed = time.monotonic() - began
        assert [r.status_code for r in replies] == [200] * 16, [r.text for r in replies]
        assert [r.json()["status"] for r in replies] == ["done"] * 16
        assert len({r.json()["run_id"] for r in replies}) == 16
        assert elapsed < 60, elapsed  # the pool once timed out at 30 s per checkout, stalls of 121 s
    finally:
        srv.stop()


# -- item 7: attempts are counted at claim; a spent job fails -------------------------------------


def test_claim_counts_the_attempt_and_a_spent_job_fails(db: Database, tmp_path: Path) -> None:
    spent = spooled_job(db, tmp_path, "spent", "queued", MAX_ATTEMPTS, SD)
    fresh = spooled_job(db, tmp_path, "fresh", "queued", 0, SD)
    claimed = claim_next(db.engine)
    assert claimed is not None and claimed.id == fresh
    assert (job_row(db, fresh).status, job_row(db, fresh).attempts) == ("running", 1)
    gone = job_row(db, spent)
    assert (gone.status, gone.error, gone.attempts) == ("failed", GAVE_UP, MAX_ATTEMPTS)
    assert not (tmp_path / "uploads" / "spent").exists()


def test_a_job_interrupted_on_its_last_attempt_is_failed_at_restart(database: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    spent = spooled_job(database, data, "spent", "running", MAX_ATTEMPTS, SD)
    again = spooled_job(database, data, "again", "running", 1, DATA / "sd_tiny_cpu_flash.json.gz")
    srv = LoggedServer(database, data).start()
    try:
        wait_until(lambda: job_row(database, again).status == "done", 60, "the interrupted job's retry")
        assert job_row(database, again).attempts == 2
        failed = job_row(database, spent)
        assert failed.status == "failed" and f"{MAX_ATTEMPTS} attempts" in (failed.error or "")
        reply = httpx.get(f"{srv.url}/v1/jobs/{spent}", headers=srv.token("read")).json()
        assert reply["status"] == "failed" and reply["error"] == GAVE_UP
        with session_scope(database.engine) as s:
            assert s.scalar(select(func.count()).select_from(Run)) == 1  # the spent job never ran
    finally:
        srv.stop()


# -- kill -9 of the server mid-job ----------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_job_six_times_every_job_ends_once_and_no_partial_run(database: Database, tmp_path: Path) -> None:
    data, rng = tmp_path / "data", random.Random(12)
    jobs: list[int] = []
    # Six rounds, each a server start (1-3 s of it): five kills inside the ingest at random
    # points, one after it (ten rounds took twice as long on a 2-core CI machine).
    for i in range(6):
        srv = LoggedServer(database, data).start()
        try:
            job_id = post(srv, variant(tmp_path, i), srv.token("write")).json()["job_id"]
            jobs.append(job_id)
            deadline = time.monotonic() + 30
            while job_row(database, job_id).status == "queued" and time.monotonic() < deadline:
                time.sleep(0.005)
            # Mostly inside the ingest (about 0.1 s to a few tenths); the last one after it.
            time.sleep(rng.uniform(0.0, 0.06) if i < 5 else 0.5)
        finally:
            srv.kill()
    srv = LoggedServer(database, data).start()
    try:
        wait_until(
            lambda: all(job_row(database, j).status in ("done", "failed") for j in jobs), 120, "every job to end"
        )
    finally:
        srv.stop()
    with session_scope(database.engine) as s:
        finished = s.execute(
            select(IngestJob.status, IngestJob.run_id, IngestJob.attempts).where(IngestJob.id.in_(jobs))
        ).all()
        runs = s.execute(select(Run.id, Run.kernel_count)).all()
        traces = s.scalar(select(func.count()).select_from(Trace))
    assert all(attempts <= MAX_ATTEMPTS for _, _, attempts in finished)
    # Most kills land mid-ingest: those jobs ran again after the restart.
    assert sum(attempts > 1 for _, _, attempts in finished) >= 2, finished
    done_runs = sorted(run_id for status, run_id, _ in finished if status == "done")
    assert len(done_runs) == len(set(done_runs)) == len(finished)  # each job once, each its own run
    assert sorted(r.id for r in runs) == done_runs and traces == len(runs)
    assert {r.kernel_count for r in runs} == {SD_KERNELS}  # every run complete: nothing partial
    from tracehouse.schema.models import Kernel

    with session_scope(database.engine) as s:
        per_run = s.execute(select(Kernel.run_id, func.count()).group_by(Kernel.run_id)).all()
    assert sorted(count for _, count in per_run) == [SD_KERNELS] * len(runs)
