"""Ingest jobs: uploads are queued in the database and ingested by a worker thread.

Queued jobs survive a restart because they are rows, not memory.  A job found ``running``
at start-up was interrupted; ingest is one transaction, so nothing of it was committed and
it is simply queued again.
"""

from __future__ import annotations

import logging
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from tracehouse.core.errors import TracehouseError
from tracehouse.core.settings import Settings
from tracehouse.ingest.meta import meta_from_mapping
from tracehouse.ingest.pipeline import IngestResult
from tracehouse.ingest.units import ingest_unit, plan_units
from tracehouse.ingest.user_rules import name_rules_for
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


def enqueue(session: Session, *, original_name: str, upload_path: Path, sha256: str, size: int,
            meta: dict[str, object], token_id: int | None, target_run_id: int | None = None) -> IngestJob:
    job = IngestJob(status="queued", original_name=original_name, upload_path=str(upload_path),
                    sha256=sha256, size_bytes=size, meta=orjson.dumps(meta).decode(),
                    token_id=token_id, attempts=0, created_at=datetime.now(UTC),
                    target_run_id=target_run_id)
    session.add(job)
    session.commit()  # visible to the worker before it is woken
    return job


def requeue_interrupted(engine: Engine) -> int:
    with session_scope(engine) as session:
        result = session.execute(update(IngestJob).where(IngestJob.status == "running")
                                 .values(status="queued"))
        return result.rowcount or 0


def claim_next(engine: Engine) -> IngestJob | None:
    """Atomically move the oldest queued job to running (safe with several workers)."""
    with session_scope(engine) as session:
        job_id = session.scalar(select(IngestJob.id).where(IngestJob.status == "queued")
                                .order_by(IngestJob.id).limit(1))
        if job_id is None:
            return None
        claimed = session.execute(update(IngestJob).where(IngestJob.id == job_id, IngestJob.status == "queued")
                                  .values(status="running", attempts=IngestJob.attempts + 1))
        if claimed.rowcount != 1:
            return None
        return session.get(IngestJob, job_id)


def run_job(engine: Engine, settings: Settings, job: IngestJob) -> None:
    values = orjson.loads(job.meta) if job.meta else {}
    upload = Path(job.upload_path)
    result: IngestResult | None = None
    try:
        # A folder holds the CSVs of one ncu run: every file in it, exactly as spooled.
        [unit] = plan_units(sorted(upload.iterdir()) if upload.is_dir() else [upload])
        result = ingest_unit(engine, unit, meta_from_mapping(values), raw_dir=settings.raw_dir(),
                             name_rules=name_rules_for(settings.rules_file()),
                             original_name=job.original_name, max_bytes=settings.max_trace_bytes,
                             max_inflated_bytes=settings.inflated_limit(),
                             run_id=job.target_run_id)
        outcome = {"status": "done", "run_id": result.run_id, "error": None, "duplicate_of": result.duplicate_of}
    except TracehouseError as exc:
        outcome = {"status": "failed", "run_id": None, "error": exc.message}
    except Exception as exc:  # a bug, not bad input: keep the worker alive, report it
        log.exception("ingest job %s crashed", job.id)
        retry = job.attempts < MAX_ATTEMPTS
        outcome = {"status": "queued" if retry else "failed", "run_id": None,
                   "error": f"internal error: {exc.__class__.__name__}: {exc}"}
    with session_scope(engine) as session:
        session.execute(update(IngestJob).where(IngestJob.id == job.id).values(
            **outcome, finished_at=datetime.now(UTC) if outcome["status"] != "queued" else None))
        if result is not None and result.created and job.target_run_id is None:
            # The uploading token owns the new run: it may edit and delete it without admin.
            session.execute(update(Run).where(Run.id == result.run_id, Run.uploaded_by_token_id.is_(None))
                            .values(uploaded_by_token_id=job.token_id))
    if outcome["status"] != "queued":
        # The raw store has the kept copy; the spool folder holds only this upload.
        shutil.rmtree(upload if upload.is_dir() else upload.parent, ignore_errors=True)


class Worker:
    """One background thread draining the queue; ``wake()`` after enqueueing."""

    def __init__(self, engine: Engine, settings: Settings, poll_seconds: float = 2.0) -> None:
        self.engine, self.settings, self.poll = engine, settings, poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tracehouse-ingest", daemon=True)

    def start(self) -> None:
        requeue_interrupted(self.engine)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = claim_next(self.engine)
            except Exception:
                log.exception("cannot read the job queue")
                job = None
            if job is None:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            run_job(self.engine, self.settings, job)
