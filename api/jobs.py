"""Ingest jobs: uploads are queued in the database and ingested by workers.

A worker is a thread of ``tracehouse serve`` (the default, and the only one on SQLite) or a
``tracehouse worker`` process; any number of them, on any hosts, share one PostgreSQL queue.
Claiming a job takes a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never
claim the same row) that the worker renews every third of ``worker_lease_seconds``; a job whose
lease ran out belongs to a dead worker and is claimed again.  Ingest is one transaction, so a
worker that died mid-job committed nothing of it; and the outcome is written only while the
worker still holds the job (a fenced update), so a job is never finished twice.  A worker
starting on a host also releases at once the jobs of that host's workers whose process is gone.

Queued jobs survive a restart because they are rows, not memory.  The attempt is counted when
the job is claimed, so a job that takes its worker down with it cannot crash-loop it for ever.

This module is the queue's rows: enqueue, claim, lease, run one job, record its outcome.  The
worker's loop is ``job_worker.py``; waiting for a job and ``/healthz``, ``job_status.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import ColumnElement, CursorResult, Engine, Update, and_, func, or_, select, update
from sqlalchemy.orm import Session

from tracehouse.core.errors import DatabaseError, TracehouseError
from tracehouse.core.meta import meta_from_mapping
from tracehouse.core.settings import Settings
from tracehouse.ingest.units import ingest_unit, plan_units
from tracehouse.ingest.user_rules import name_rules_for
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
FINISHED = ("done", "failed")
GAVE_UP = (
    f"gave up after {MAX_ATTEMPTS} attempts: the service stopped while ingesting this trace "
    "each time (see the server log)"
)
MAX_BACKOFF_S = 10.0
DEFAULT_LEASE_S = 60.0


def enqueue(
    session: Session,
    *,
    original_name: str,
    upload_path: Path,
    sha256: str,
    size: int,
    meta: dict[str, object],
    token_id: int | None,
    target_run_id: int | None = None,
) -> IngestJob:
    job = IngestJob(
        status="queued",
        original_name=original_name,
        upload_path=str(upload_path),
        sha256=sha256,
        size_bytes=size,
        meta=orjson.dumps(meta).decode(),
        token_id=token_id,
        attempts=0,
        created_at=datetime.now(UTC),
        target_run_id=target_run_id,
    )
    session.add(job)
    session.commit()  # visible to the worker before it is woken
    return job


def _spool_folder(upload_path: str) -> Path:
    upload = Path(upload_path)
    return upload if upload.is_dir() else upload.parent


def _give_up(session: Session, condition: ColumnElement[bool]) -> list[Path]:
    """Fail the jobs matching ``condition`` that have used their attempts; their spool folders."""
    exhausted = session.execute(
        select(IngestJob.id, IngestJob.upload_path).where(condition, IngestJob.attempts >= MAX_ATTEMPTS)
    ).all()
    if exhausted:
        session.execute(
            update(IngestJob)
            .where(IngestJob.id.in_([row.id for row in exhausted]))
            .values(status="failed", error=GAVE_UP, finished_at=datetime.now(UTC))
        )
        log.warning("ingest jobs %s failed: %s", [row.id for row in exhausted], GAVE_UP)
    return [_spool_folder(row.upload_path) for row in exhausted]


def worker_identity() -> str:
    """``host:pid``: unique among live workers, and tells a worker on the same host whether the
    holder of a job is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _db_now(session: Session) -> ColumnElement[datetime] | datetime:
    """The database's clock on PostgreSQL, so hosts whose clocks drift agree on leases; SQLite
    is one host's file, and its clock is this process's."""
    return func.now() if session.get_bind().dialect.name == "postgresql" else datetime.now(UTC)


def _lease_end(session: Session, seconds: float) -> ColumnElement[datetime] | datetime:
    return _db_now(session) + timedelta(seconds=seconds)


def _rows_updated(session: Session, stmt: Update) -> int:
    """How many rows an UPDATE matched: the compare-and-set that tells a worker it still holds
    the job.  A DML statement's result is a CursorResult; ``Session.execute`` is typed as the
    general Result, which has no ``rowcount``."""
    result = session.execute(stmt)
    assert isinstance(result, CursorResult)
    return result.rowcount


def _claimable(now: ColumnElement[datetime] | datetime) -> ColumnElement[bool]:
    """Queued, or running under a lease that ran out (or never had one: a job from before
    leases, or one released by ``release_dead_local``)."""
    return or_(
        IngestJob.status == "queued",
        and_(
            IngestJob.status == "running", or_(IngestJob.lease_expires_at.is_(None), IngestJob.lease_expires_at < now)
        ),
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or not ours to ask: alive
        return True
    return True


def release_dead_local(engine: Engine) -> int:
    """Make claimable at once the running jobs of this host's workers whose process is gone (a
    ``serve`` restarted after a crash need not wait out the lease); other hosts' wait for it."""
    host = socket.gethostname()
    with session_scope(engine) as session:
        holders = session.execute(
            select(IngestJob.id, IngestJob.worker_id).where(
                IngestJob.status == "running", IngestJob.worker_id.like(f"{host}:%")
            )
        ).all()
        dead = [
            row.id
            for row in holders
            if row.worker_id.rsplit(":", 1)[1].isdigit() and not _pid_alive(int(row.worker_id.rsplit(":", 1)[1]))
        ]
        if dead:
            session.execute(
                update(IngestJob)
                .where(IngestJob.id.in_(dead), IngestJob.status == "running")
                .values(lease_expires_at=None)
            )
            log.warning("ingest jobs %s were held by workers of this host that are gone; released", dead)
    return len(dead)


def claim_next(
    engine: Engine, worker_id: str | None = None, lease_seconds: float = DEFAULT_LEASE_S
) -> IngestJob | None:
    """Move the oldest claimable job to running under this worker's lease and count the
    attempt, in one transaction; a claimable job out of attempts is failed instead.  PostgreSQL
    skips the rows another worker is claiming (``SKIP LOCKED``) instead of queueing behind it."""
    worker_id = worker_id or worker_identity()
    with session_scope(engine) as session:
        now = _db_now(session)
        spent = _give_up(session, _claimable(now))
        job_id = session.scalar(
            select(IngestJob.id)
            .where(_claimable(now))
            .order_by(IngestJob.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        claimed = None
        if job_id is not None:
            updated = _rows_updated(
                session,
                update(IngestJob)
                .where(IngestJob.id == job_id, _claimable(now))
                .values(
                    status="running",
                    attempts=IngestJob.attempts + 1,
                    worker_id=worker_id,
                    lease_expires_at=_lease_end(session, lease_seconds),
                ),
            )
            claimed = session.get(IngestJob, job_id) if updated == 1 else None
    for folder in spent:
        shutil.rmtree(folder, ignore_errors=True)
    return claimed


def renew_lease(engine: Engine, job_id: int, worker_id: str, lease_seconds: float) -> bool:
    """Extend this worker's lease on a job; False when the job is no longer its own."""
    with session_scope(engine) as session:
        updated = _rows_updated(
            session,
            update(IngestJob)
            .where(IngestJob.id == job_id, IngestJob.status == "running", IngestJob.worker_id == worker_id)
            .values(lease_expires_at=_lease_end(session, lease_seconds)),
        )
    return updated == 1


def _public(message: str, settings: Settings, upload: Path) -> str:
    """A job's error is served to clients: no absolute server path in it."""
    for folder, shown in (
        (_spool_folder(str(upload)), ""),
        (settings.store_dir().resolve(), "<data dir>"),
        (settings.store_dir(), "<data dir>"),
        (settings.data_dir.resolve(), "<data dir>"),
        (settings.data_dir, "<data dir>"),
    ):
        message = message.replace(f"{folder}/", f"{shown}/" if shown else "").replace(str(folder), shown)
    return message


@dataclass
class Outcome:
    """What a job's run of the ingest came to, to be written in one transaction."""

    values: dict[str, object]  # the job row's new values
    new_run_id: int | None = None  # a run this job created: the uploading token owns it

    @property
    def finished(self) -> bool:
        return self.values["status"] in FINISHED


def run_job(engine: Engine, settings: Settings, job: IngestJob) -> Outcome:
    """Ingest one claimed job; returns its outcome, never raises."""
    upload = Path(job.upload_path)
    try:
        values = orjson.loads(job.meta) if job.meta else {}
        # A folder holds the CSVs of one ncu run: every file in it, exactly as spooled.
        [unit] = plan_units(sorted(upload.iterdir()) if upload.is_dir() else [upload])
        result = ingest_unit(
            engine,
            unit,
            meta_from_mapping(values),
            raw_dir=settings.raw_dir(),
            name_rules=name_rules_for(settings.rules_file()),
            original_name=job.original_name,
            max_bytes=settings.max_trace_bytes,
            max_inflated_bytes=settings.inflated_limit(),
            run_id=job.target_run_id,
        )
        new_run = result.run_id if result.created and job.target_run_id is None else None
        return Outcome(
            {"status": "done", "run_id": result.run_id, "error": None, "duplicate_of": result.duplicate_of}, new_run
        )
    except TracehouseError as exc:
        if not isinstance(exc, DatabaseError):  # bad input: the uploader's to fix
            return Outcome({"status": "failed", "run_id": None, "error": _public(exc.message, settings, upload)})
        log.warning("ingest job %s: %s", job.id, exc.message)
        error = f"internal error: {exc.message}"
    except Exception as exc:  # a bug or the server's disk, not bad input: report it, keep the worker alive
        log.exception("ingest job %s crashed", job.id)
        # The exception's text may name server paths; the log has it, the client gets its kind.
        error = f"internal error: {exc.__class__.__name__} (job {job.id}; details in the server log)"
    retry = job.attempts < MAX_ATTEMPTS
    return Outcome({"status": "queued" if retry else "failed", "run_id": None, "error": error})


def record_outcome(engine: Engine, job: IngestJob, outcome: Outcome) -> bool:
    """Write the outcome while the job is still this worker's (fenced on its claim): False, and
    nothing written, when its lease ran out and another worker has claimed it since."""
    held = (IngestJob.id == job.id, IngestJob.status == "running", IngestJob.worker_id == job.worker_id)
    release = {} if outcome.finished else {"worker_id": None}
    with session_scope(engine) as session:
        updated = _rows_updated(
            session,
            update(IngestJob)
            .where(*held)
            .values(
                **outcome.values,
                **release,
                lease_expires_at=None,
                finished_at=datetime.now(UTC) if outcome.finished else None,
            ),
        )
        if updated != 1:
            log.warning(
                "ingest job %s: lease lost to another worker; this outcome (%s) is dropped",
                job.id,
                outcome.values["status"],
            )
            return False
        if outcome.new_run_id is not None:
            # The uploading token owns the new run: it may edit and delete it without admin.
            session.execute(
                update(Run)
                .where(Run.id == outcome.new_run_id, Run.uploaded_by_token_id.is_(None))
                .values(uploaded_by_token_id=job.token_id)
            )
    log.info(
        "ingest job %s %s (run %s) by worker %s, attempt %s",
        job.id,
        outcome.values["status"],
        outcome.values.get("run_id"),
        job.worker_id,
        job.attempts,
    )
    if outcome.finished:
        # The raw store has the kept copy; the spool folder holds only this upload.
        shutil.rmtree(_spool_folder(job.upload_path), ignore_errors=True)
    return True
