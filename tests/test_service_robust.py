"""The service under real failures: a database that refuses a write or goes away, a crash in
the middle of a job, many clients waiting at once, a data directory full of leftovers.

Every failure here is real: a trigger in the database refuses a write, a TCP proxy in front
of PostgreSQL is shut, a server process is killed with SIGKILL.  Servers are real uvicorn
processes (``tracehouse serve``) and clients real httpx ones, on both backends.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import random
import socket
import subprocess
import sys
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
from tests.fixtures import Server, assert_error
from tracehouse.api.jobs import GAVE_UP, MAX_ATTEMPTS, Worker, claim_next, service_health
from tracehouse.core.errors import ServiceUnhealthy
from tracehouse.core.settings import Settings
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run, Trace

SD = DATA / "sd_tiny_cpu_baseline.json.gz"
SD_KERNELS = 1341  # kernel rows of one complete ingest of SD (a partial run has fewer)
CLI = [sys.executable, "-m", "tracehouse.api.cli"]


class LoggedServer(Server):
    """A ``tracehouse serve`` process that counts as started on any ``/healthz`` answer (its
    database may be away on purpose), with its output read back by ``log()`` and a SIGKILL."""

    def start(self) -> LoggedServer:
        self.process.start(any_answer=True)  # a /healthz 503 (database away) is a started server
        return self

    def log(self) -> str:
        return self.process.log_text()

    def kill(self) -> None:
        self.process.kill()


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    db = Database(request.param, tmp_path).migrate()
    yield db
    db.drop()


def _variant(tmp: Path, i: int) -> Path:
    """SD with ``i`` trailing blanks: the same kernels, new bytes (so a new run, not a dedupe)."""
    path = tmp / f"sd_{i}.json.gz"
    path.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b" " * (i + 1), compresslevel=1))
    return path


def _post(srv: Server, path: Path, headers: dict, wait: float = 0, timeout: float = 120) -> httpx.Response:
    with path.open("rb") as fh:
        return httpx.post(
            f"{srv.url}/v1/traces",
            params={"wait": wait} if wait else None,
            files={"file": (path.name, fh)},
            headers=headers,
            timeout=timeout,
        )


def _job(db: Database, job_id: int) -> IngestJob:
    with session_scope(db.engine) as s:
        job = s.get(IngestJob, job_id)
        assert job is not None
        return job


def _until(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


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
        first = _post(srv, _variant(tmp_path, 0), write).json()["job_id"]
        # The ingest itself commits; recording its outcome is what the database refuses.
        _until(lambda: "outcome refused by the test" in srv.log(), 30, "the refused status write")
        assert _job(database, first).status == "running"
        second = _post(srv, _variant(tmp_path, 1), write).json()["job_id"]
        time.sleep(2.5)  # past the stuck-queue threshold, while the outcome is still refused
        stuck = httpx.get(f"{srv.url}/healthz")
        assert_error(stuck, 503, contains="queue is stuck")
        _allow_outcomes(database)  # the database comes back: both jobs finish, no restart
        _until(lambda: _job(database, second).status == "done", 40, "the second job after recovery")
        done = _job(database, first)
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
        first = _post(srv, _variant(tmp_path, 0), write).json()["job_id"]
        _until(lambda: _job(db, first).status != "queued", 30, "the job to start")
        killed, until = 0, time.monotonic() + 1.0
        while time.monotonic() < until:
            with db.engine.begin() as conn:
                killed += conn.execute(kill, {"name": app_name}).scalar_one()
            time.sleep(0.02)
        assert killed > 0
        _until(lambda: _job(db, first).status in ("done", "failed"), 60, "the first job to end")
        job = _job(db, first)
        assert job.status == "done" or (job.attempts == MAX_ATTEMPTS and "127.0.0.1" not in (job.error or ""))
        second = _post(srv, _variant(tmp_path, 1), write, wait=60)  # the worker is still there
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
        traces = [_variant(tmp_path, i) for i in range(16)]
        start = threading.Barrier(16)

        def upload(path: Path) -> httpx.Response:
            start.wait()
            return _post(srv, path, write, wait=60, timeout=75)

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


def _spooled_job(db: Database, data_dir: Path, name: str, status: str, attempts: int, src: Path) -> int:
    folder = data_dir / "uploads" / name
    folder.mkdir(parents=True)
    target = folder / src.name
    target.write_bytes(src.read_bytes())
    with session_scope(db.engine) as s:
        job = IngestJob(
            status=status,
            original_name=src.name,
            upload_path=str(target),
            sha256="x",
            size_bytes=target.stat().st_size,
            meta=None,
            attempts=attempts,
            created_at=datetime.now(UTC),
        )
        s.add(job)
        s.flush()
        return job.id


def test_claim_counts_the_attempt_and_a_spent_job_fails(db: Database, tmp_path: Path) -> None:
    spent = _spooled_job(db, tmp_path, "spent", "queued", MAX_ATTEMPTS, SD)
    fresh = _spooled_job(db, tmp_path, "fresh", "queued", 0, SD)
    claimed = claim_next(db.engine)
    assert claimed is not None and claimed.id == fresh
    assert (_job(db, fresh).status, _job(db, fresh).attempts) == ("running", 1)
    gone = _job(db, spent)
    assert (gone.status, gone.error, gone.attempts) == ("failed", GAVE_UP, MAX_ATTEMPTS)
    assert not (tmp_path / "uploads" / "spent").exists()


def test_a_job_interrupted_on_its_last_attempt_is_failed_at_restart(database: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    spent = _spooled_job(database, data, "spent", "running", MAX_ATTEMPTS, SD)
    again = _spooled_job(database, data, "again", "running", 1, DATA / "sd_tiny_cpu_flash.json.gz")
    srv = LoggedServer(database, data).start()
    try:
        _until(lambda: _job(database, again).status == "done", 60, "the interrupted job's retry")
        assert _job(database, again).attempts == 2
        failed = _job(database, spent)
        assert failed.status == "failed" and f"{MAX_ATTEMPTS} attempts" in (failed.error or "")
        reply = httpx.get(f"{srv.url}/v1/jobs/{spent}", headers=srv.token("read")).json()
        assert reply["status"] == "failed" and reply["error"] == GAVE_UP
        with session_scope(database.engine) as s:
            assert s.scalar(select(func.count()).select_from(Run)) == 1  # the spent job never ran
    finally:
        srv.stop()


# -- item 9: no host, port, password or server path in any answer ---------------------------------


def test_a_failed_job_and_a_page_link_name_no_server_path_or_host(database: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").write_text("a file where the raw store's folder should be")
    srv = LoggedServer(database, data, TRACEHOUSE_MAX_ROWS="2").start()
    try:
        write, read = srv.token("write"), srv.token("read")
        reply = _post(srv, SD, write, wait=60)
        body = assert_error(reply, 500)
        job = _job(database, int(body["error"].split("(job ")[1].split(";")[0]))
        assert job.status == "failed" and job.attempts == MAX_ATTEMPTS
        served = httpx.get(f"{srv.url}/v1/jobs/{job.id}", headers=read).text
        for answer in (reply.text, served):
            assert str(tmp_path) not in answer and "/raw" not in answer, answer
        assert str(data / "raw") in srv.log()  # the operator still learns which path failed
        (data / "raw").unlink()
        run_id = _post(srv, _variant(tmp_path, 0), write, wait=60).json()["run_id"]
        page = httpx.get(
            f"{srv.url}/v1/runs/{run_id}/breakdown", params={"by": "kernel"}, headers={**read, "Host": "evil.example"}
        )
        link = page.headers["link"]
        assert "evil.example" not in link and link.startswith(f"</v1/runs/{run_id}/breakdown?"), link
    finally:
        srv.stop()


class TcpProxy:
    """A TCP forwarder in front of PostgreSQL: closing it is a real outage for its clients."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_database_outage_answers_503_naming_no_host_port_or_database(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no host or port to leak and no outage short of its file's removal")
    db = Database(backend, tmp_path).migrate()
    target = db.engine.url
    proxy = TcpProxy(target.port or 5432)
    proxied = db.reached_through(db.url.replace(f"{target.host}:{target.port or 5432}", f"127.0.0.1:{proxy.port}"))
    assert proxied.url != db.url
    srv = LoggedServer(proxied, tmp_path / "data").start()
    try:
        assert httpx.get(f"{srv.url}/v1/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        proxy.close()
        reply = httpx.get(f"{srv.url}/v1/runs", headers={"Authorization": "Bearer nope"})
        assert_error(reply, 503)
        for secret in (str(proxy.port), "127.0.0.1", target.database):  # the database: this test's own name
            assert secret not in reply.text, (secret, reply.text)
        health = httpx.get(f"{srv.url}/healthz")
        assert health.status_code == 503 and str(proxy.port) not in health.text
    finally:
        srv.stop()
        db.drop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_schema_out_of_date_message_hides_the_password(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite URLs carry no password (the driver refuses one)")
    db = Database(backend, tmp_path)
    from tracehouse.schema.migrate import upgrade

    upgrade(db.engine, "0007")
    try:
        url = db.url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
        assert url != db.url  # trust auth: the password is accepted and ignored
        out = subprocess.run([*CLI, "runs", "--db", url], capture_output=True, text=True, timeout=60)
        assert out.returncode == 4, out.stderr
        assert "s3cret-pw" not in out.stderr + out.stdout and "postgres:***@" in out.stderr
    finally:
        db.drop()


# -- item 10: a database that cannot be opened is one line, exit 5 --------------------------------


def _unopenable(backend: str, tmp: Path) -> list[str]:
    if backend == "postgresql":  # down (with a password to hide), not a URL, no driver
        return [
            "postgresql://postgres:s3cret-pw@127.0.0.1:1/test",
            "not a url at all",
            "mysql://root:pw@127.0.0.1/test",
        ]
    (tmp / "a_file").write_text("not a folder")
    (tmp / "a_folder").mkdir()
    return [
        f"sqlite:///{tmp / 'a_folder'}",
        f"sqlite:///{tmp / 'a_file' / 'deeper' / 'db.sqlite3'}",
        "sqlite://user:pw@/relative.db",
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreachable_database_is_one_line_and_exit_5(backend: str, tmp_path: Path) -> None:
    port = str(socket.create_server(("127.0.0.1", 0)).getsockname()[1])  # nothing answers there
    urls = _unopenable(backend, tmp_path)
    # Every URL through the common path; the first also through upgrade and serve (before uvicorn).
    runs = [(url, ["runs"]) for url in urls] + [(urls[0], ["db", "upgrade"]), (urls[0], ["serve", "--port", port])]
    messages = []
    for url, args in runs:
        out = subprocess.run(
            [*CLI, *args, "--db", url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TRACEHOUSE_DATA_DIR": str(tmp_path / "data")},
        )
        assert out.returncode == 5, (url, args, out.stderr[-3000:])
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, lines
        assert "s3cret-pw" not in out.stderr and "pw@" not in out.stderr
        messages.append(lines[0])
    named = "postgres:***@127.0.0.1:1/test" if backend == "postgresql" else str(tmp_path / "a_folder")
    assert named in messages[0], messages  # the database is named, without its password


# -- item 11: orphan raw files and spool folders are reclaimed ------------------------------------


def _aged(path: Path, seconds: float = 7200) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_db_gc_and_start_up_reclaim_orphans_and_keep_everything_in_use(database: Database, tmp_path: Path) -> None:
    from tracehouse.ingest.pipeline import ingest_file

    data = tmp_path / "data"
    env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(data)}
    ingest_file(database.engine, SD, raw_dir=data / "raw")
    with session_scope(database.engine) as s:
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
    live = _spooled_job(database, data, "live", "queued", 0, SD)
    _aged(_aged(data / "uploads" / "live" / SD.name).parent)
    dead = data / "uploads" / "dead"
    dead.mkdir()
    (dead / "half.json.gz").write_bytes(b"an upload cut short")
    _aged(dead / "half.json.gz")
    _aged(dead)

    dry = subprocess.run(
        [*CLI, "db", "gc", "--dry-run", "--db", database.url], capture_output=True, text=True, env=env, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert all(str(p) in dry.stdout for p in [*orphans, dead]) and str(kept_raw) not in dry.stdout
    assert all(p.exists() for p in [*orphans, dead])
    done = subprocess.run([*CLI, "db", "gc", "--db", database.url], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "reclaimed 2 orphan raw files and 1 spool folders" in done.stdout
    assert not any(p.exists() for p in [*orphans, dead])
    assert kept_raw.exists() and young.exists() and (data / "uploads" / "live" / SD.name).exists()
    assert _job(database, live).status == "queued"

    # The same at start-up: a crash's leftovers are gone once the service is up.
    crash = shard / ("ab" + "3" * 62 + ".json.gz")
    crash.write_bytes(b"left by another crash")
    _aged(crash)
    srv = LoggedServer(database, data).start()
    try:
        _until(lambda: not crash.exists(), 30, "start-up reclaim")
        assert kept_raw.exists() and young.exists()
        _until(lambda: _job(database, live).status == "done", 60, "the live job, kept and run")
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


# -- kill -9 of the server mid-job ----------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_job_ten_times_every_job_ends_once_and_no_partial_run(database: Database, tmp_path: Path) -> None:
    data, rng = tmp_path / "data", random.Random(12)
    jobs: list[int] = []
    for i in range(10):
        srv = LoggedServer(database, data).start()
        try:
            job_id = _post(srv, _variant(tmp_path, i), srv.token("write")).json()["job_id"]
            jobs.append(job_id)
            deadline = time.monotonic() + 30
            while _job(database, job_id).status == "queued" and time.monotonic() < deadline:
                time.sleep(0.005)
            # Mostly inside the ingest (about 0.1 s to a few tenths); the last two after it.
            time.sleep(rng.uniform(0.0, 0.06) if i < 8 else 0.5)
        finally:
            srv.kill()
    srv = LoggedServer(database, data).start()
    try:
        _until(lambda: all(_job(database, j).status in ("done", "failed") for j in jobs), 120, "every job to end")
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
    assert sum(attempts > 1 for _, _, attempts in finished) >= 4, finished
    done_runs = sorted(run_id for status, run_id, _ in finished if status == "done")
    assert len(done_runs) == len(set(done_runs)) == len(finished)  # each job once, each its own run
    assert sorted(r.id for r in runs) == done_runs and traces == len(runs)
    assert {r.kernel_count for r in runs} == {SD_KERNELS}  # every run complete: nothing partial
    from tracehouse.schema.models import Kernel

    with session_scope(database.engine) as s:
        per_run = s.execute(select(Kernel.run_id, func.count()).group_by(Kernel.run_id)).all()
    assert sorted(count for _, count in per_run) == [SD_KERNELS] * len(runs)
