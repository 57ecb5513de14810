"""A team server on PostgreSQL: two API-only replicas (``serve --no-worker``) and three
``tracehouse worker`` processes sharing one store root, fifty uploads (duplicates among them,
some racing their originals), and one worker killed with SIGKILL while it holds a job.

Every trace must land exactly once, every job must end done, the killed worker's job must be
taken over once its lease runs out, and no job may be finished twice: each worker logs the
outcomes it wrote, and each job appears in those logs exactly once.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import KINETO_DIR, PG_ENV, Database, require_shared
from tests.robust_server import CLI, SD, SD_KERNELS, LoggedServer, post, variant
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Kernel, Run, Trace

# Real traces that take about a second each to ingest: the kill has a wide window to land in.
BIG = ["a100_nccl_training", "a100_rank3_of8_training", "v100_ns_resolution", "a100_record_shapes"]
LEASE_S = "2"


class WorkerProcess:
    def __init__(self, db: Database, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, "worker", "--db", db.url],
                env={**os.environ, **env, "TRACEHOUSE_DATA_DIR": str(data_dir)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.worker_id = f"{socket.gethostname()}:{self.proc.pid}"

    def finished_jobs(self) -> list[int]:
        return [int(m) for m in re.findall(r"ingest job (\d+) (?:done|failed) ", self.log.read_text())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def _uploads(tmp: Path) -> list[tuple[str, Path]]:
    """Fifty (content key, file) pairs: 40 distinct traces, 5 byte-identical re-uploads and 5
    recompressed copies (another file, the same trace)."""
    distinct = [(name, KINETO_DIR / f"{name}.json.gz") for name in BIG]
    distinct += [(f"sd{i}", variant(tmp, i)) for i in range(36)]
    again = [distinct[i] for i in (0, 1, 2, 3, 4)]
    recompressed = []
    for i in range(5, 10):
        key, path = distinct[i]
        copy = tmp / f"recompressed_{key}.json.gz"
        copy.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=9))
        recompressed.append((key, copy))
    # Each duplicate right after its original: two workers often ingest the same trace at once.
    order = (
        distinct[:10]
        + [x for pair in zip(again + recompressed, distinct[10:20], strict=False) for x in pair]
        + distinct[20:]
    )
    assert len(order) == 50 and len({k for k, _ in order}) == 40
    return order


def _leases_lost(workers: list[WorkerProcess]) -> defaultdict[int, set[str]]:
    """Job id -> the workers that logged losing their lease on it (the renewal found the job
    claimed by another, or the outcome's write did)."""
    lost: defaultdict[int, set[str]] = defaultdict(set)
    for w in workers:
        for job in re.findall(r"ingest job (\d+): lease lost", w.log.read_text()):
            lost[int(job)].add(w.worker_id)
    return lost


def _log_lines(workers: list[WorkerProcess], jobs: dict[int, object]) -> list[str]:
    ids = "|".join(map(str, jobs))
    wanted = re.compile(rf"ingest job ({ids})\b")
    return [line for w in workers for line in w.log.read_text().splitlines() if wanted.search(line)]


def _holding(db: Database, worker_id: str) -> int | None:
    with session_scope(db.engine) as s:
        return s.scalar(select(IngestJob.id).where(IngestJob.status == "running", IngestJob.worker_id == worker_id))


def _kill_mid_job(db: Database, victim: WorkerProcess, seconds: float = 60) -> int:
    """SIGKILL ``victim`` while it holds a job; that job's id (its outcome never written)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (job_id := _holding(db, victim.worker_id)) is not None:
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(timeout=30)
            if _holding(db, victim.worker_id) == job_id:  # killed before it wrote the outcome
                return job_id
            raise AssertionError("the victim finished its job before the kill landed")
        time.sleep(0.005)
    raise AssertionError("the victim never claimed a job")


@pytest.mark.slow
def test_two_api_replicas_three_workers_fifty_uploads_one_worker_killed(tmp_path: Path) -> None:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"workers share a PostgreSQL queue; {PG_ENV} not set")
    require_shared()
    db = Database("postgresql", tmp_path).migrate()
    store = tmp_path / "store"  # the root every host mounts: spool and raw store
    env = {
        "TRACEHOUSE_STORE_ROOT": str(store),
        "TRACEHOUSE_WORKER_LEASE_SECONDS": LEASE_S,
        "TRACEHOUSE_WORKER_POLL_SECONDS": "0.1",
    }
    for i in range(2):
        (tmp_path / f"api{i}").mkdir()
    apis = [LoggedServer(db, tmp_path / f"api{i}" / "data", "--no-worker", **env) for i in range(2)]
    workers: list[WorkerProcess] = []
    try:
        for api in apis:
            api.start()
        workers = [WorkerProcess(db, tmp_path / f"w{i}", env, tmp_path / f"worker{i}.log") for i in range(3)]
        uploads = _uploads(tmp_path)
        token = apis[0].token("write")
        with ThreadPoolExecutor(8) as pool:
            replies = [pool.submit(post, apis[i % 2], path, token, 90) for i, (_, path) in enumerate(uploads)]
            killed_job = _kill_mid_job(db, workers[0])
            answers = [r.result() for r in replies]
        _check_outcomes(db, uploads, answers, killed_job, workers, store)
        # Either replica reports any job: the state is the database's.
        other = httpx.get(f"{apis[1].url}/v1/jobs/{killed_job}", headers=apis[1].token("read")).json()
        assert other["status"] == "done" and other["run_id"] is not None
    finally:
        for process in [*workers, *apis]:
            process.stop()
        db.drop()


def _check_outcomes(
    db: Database,
    uploads: list[tuple[str, Path]],
    answers: list[httpx.Response],
    killed_job: int,
    workers: list[WorkerProcess],
    store: Path,
) -> None:
    assert all(a.status_code == 200 and a.json()["status"] == "done" for a in answers), [
        a.text for a in answers if a.status_code != 200
    ][:3]
    job_ids = [a.json()["job_id"] for a in answers]
    with session_scope(db.engine) as s:
        jobs = {j.id: j for j in s.scalars(select(IngestJob))}
        runs = {r.id: r.kernel_count for r in s.execute(select(Run.id, Run.kernel_count))}
        traces = s.execute(select(Trace.run_id, Trace.raw_path)).all()
        kernels = dict(s.execute(select(Kernel.run_id, func.count()).group_by(Kernel.run_id)).all())
    assert sorted(jobs) == sorted(job_ids) and all(j.status == "done" for j in jobs.values())
    # Every trace landed exactly once: one run per distinct content, every upload of it pointing there.
    run_of: dict[str, set[int]] = defaultdict(set)
    creators: Counter[str] = Counter()
    for (key, _), job_id in zip(uploads, job_ids, strict=False):
        run_of[key].add(jobs[job_id].run_id)
        creators[key] += jobs[job_id].duplicate_of is None
    assert all(len(ids) == 1 for ids in run_of.values()), run_of
    assert sorted(next(iter(ids)) for ids in run_of.values()) == sorted(runs) and len(runs) == 40
    assert len(traces) == 40 and {run_id for run_id, _ in traces} == set(runs)
    # At most one upload per content created its run (the killed job's may have committed its
    # ingest before the kill; its takeover then finds the run and reports a duplicate).
    assert max(creators.values()) == 1 and sum(creators.values()) >= 39
    assert kernels == runs and sum(k == SD_KERNELS for k in runs.values()) == 36  # nothing partial
    # The killed worker's job was taken over by another worker after its lease ran out.
    taken = jobs[killed_job]
    assert taken.worker_id not in (None, workers[0].worker_id)
    # Every job ran once, the killed one twice, plus once more for each worker that reports
    # having lost its lease on it (a worker starved past the 2 s lease on a busy machine):
    # no retry goes unexplained (a deadlock's), and no lease is reported lost that was not.
    lost = _leases_lost(workers)
    unexplained = {
        j.id: (j.attempts, lost[j.id])
        for j in jobs.values()
        if j.attempts != 1 + (j.id == killed_job) + len(lost[j.id])
    }
    assert not unexplained, (unexplained, _log_lines(workers, unexplained))
    # No job finished twice: each outcome written once, by one worker.
    finished = Counter(job for w in workers for job in w.finished_jobs())
    assert finished == Counter(job_ids) and killed_job not in workers[0].finished_jobs()
    # The shared store root holds every raw trace and no spool leftovers.
    assert all(Path(raw).is_relative_to(store) and Path(raw).is_file() for _, raw in traces)
    assert not any((store / "uploads").iterdir())


# -- claims, leases and the fence, on both backends ------------------------------------------------


def _queued(db: Database, tmp: Path, n: int) -> list[int]:
    from datetime import UTC, datetime

    ids = []
    with session_scope(db.engine) as s:
        for i in range(n):
            folder = tmp / "uploads" / f"job{i}"
            folder.mkdir(parents=True)
            (folder / SD.name).write_bytes(SD.read_bytes())
            job = IngestJob(
                status="queued",
                original_name=SD.name,
                upload_path=str(folder / SD.name),
                sha256="x",
                size_bytes=1,
                meta=None,
                attempts=0,
                created_at=datetime.now(UTC),
            )
            s.add(job)
            s.flush()
            ids.append(job.id)
    return ids


def test_an_expired_lease_is_claimed_again_and_the_old_holder_cannot_finish_it(db: Database, tmp_path: Path) -> None:
    from tracehouse.api.jobs import Outcome, claim_next, record_outcome, renew_lease

    [job_id] = _queued(db, tmp_path, 1)
    first = claim_next(db.engine, "host-a:1", lease_seconds=0.2)
    assert first is not None and first.id == job_id and first.worker_id == "host-a:1"
    assert claim_next(db.engine, "host-b:2", lease_seconds=30) is None  # held: nothing to claim
    time.sleep(0.5)  # host-a goes silent past its lease
    second = claim_next(db.engine, "host-b:2", lease_seconds=30)
    assert second is not None and second.id == job_id and second.attempts == 2
    assert not renew_lease(db.engine, job_id, "host-a:1", 30)  # the old holder learns it lost the job
    done = Outcome({"status": "done", "run_id": None, "error": None, "duplicate_of": None})
    assert record_outcome(db.engine, first, done) is False  # fenced: nothing written
    with session_scope(db.engine) as s:
        assert s.get(IngestJob, job_id).status == "running"
    assert (tmp_path / "uploads" / "job0").exists()  # the new holder's spool is left alone
    assert record_outcome(db.engine, second, done) is True
    with session_scope(db.engine) as s:
        row = s.get(IngestJob, job_id)
        assert (row.status, row.worker_id, row.lease_expires_at) == ("done", "host-b:2", None)


def test_a_claim_skips_the_row_another_worker_is_claiming(db: Database, tmp_path: Path) -> None:
    """PostgreSQL: a row locked by another claim is skipped, not waited for."""
    from tracehouse.api.jobs import claim_next

    if db.backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: claims never overlap")
    first, second = _queued(db, tmp_path, 2)
    claimed: list[IngestJob | None] = []
    with db.engine.connect() as other:
        other.execute(select(IngestJob.id).where(IngestJob.id == first).with_for_update())
        claim = threading.Thread(target=lambda: claimed.append(claim_next(db.engine, "host-b:2")))
        claim.start()
        claim.join(timeout=5)
        blocked = claim.is_alive()
        other.rollback()  # a claim that queued behind the lock goes on now, and the test ends
    claim.join(timeout=30)
    assert not blocked, "the claim waited for the row another worker holds"
    assert claimed[0] is not None and claimed[0].id == second


@pytest.mark.parametrize("args", [["worker"], ["serve", "--no-worker"]])
def test_workers_and_api_only_replicas_refuse_sqlite(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, *args, "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "needs a PostgreSQL database" in result.stderr, result.stderr
    assert not (tmp_path / "x.sqlite3").exists()
