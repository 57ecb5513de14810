"""An ingest job as a client sees it: waiting for its outcome (an upload's ``wait``) and the
service's health (``/healthz``: the worker's heartbeat, the oldest queued job's age)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool

from tracehouse.api.job_worker import Worker
from tracehouse.api.jobs import FINISHED
from tracehouse.core.errors import NotFound, ServiceUnhealthy
from tracehouse.core.settings import Settings
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob


def read_job(engine: Engine, job_id: int) -> IngestJob | None:
    with session_scope(engine) as session:
        return session.get(IngestJob, job_id)


async def wait_for_job(engine: Engine, worker: Worker | None, job_id: int, seconds: float) -> IngestJob:
    """The job once it is done or failed, or as it stands after ``seconds``.  Waiting holds no
    database connection: the worker's event wakes the waiter, which then reads the row once in a
    short session (and every few seconds regardless, for a job another process finishes; twice
    a second on an API-only replica, where every job is another process's)."""
    deadline = time.monotonic() + seconds
    event = worker.watch(job_id) if worker is not None else asyncio.Event()
    poll = 5.0 if worker is not None else 0.5
    try:
        while True:
            event.clear()
            job = await run_in_threadpool(read_job, engine, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            remaining = deadline - time.monotonic()
            if job.status in FINISHED or remaining <= 0:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(remaining, poll))
    finally:
        if worker is not None:
            worker.unwatch(job_id, event)


def _age_s(then: datetime | None) -> float | None:
    if then is None:
        return None
    if then.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        then = then.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


def _queue_state(engine: Engine) -> tuple[int, datetime | None]:
    """Queued jobs and the oldest one's creation time."""
    with session_scope(engine) as session:
        queued, oldest = session.execute(
            select(func.count(), func.min(IngestJob.created_at)).where(IngestJob.status == "queued")
        ).one()
    return queued, oldest


def service_health(engine: Engine, worker: Worker | None, settings: Settings) -> dict[str, object]:
    """Worker liveness and the queue's state; ``ServiceUnhealthy`` (503) when the in-process
    worker is dead or silent, or the oldest queued job has waited past ``queue_stuck_seconds``
    (on an API-only replica, that is how missing ``tracehouse worker`` processes show)."""
    queued, oldest = _queue_state(engine)
    oldest_age = _age_s(oldest)
    state = worker.state() if worker is not None else None
    if state is not None and (
        not state.alive or (state.busy_s is None and state.heartbeat_age_s > settings.worker_stale_seconds)
    ):
        raise ServiceUnhealthy(
            f"the ingest worker is not running (last heartbeat {state.heartbeat_age_s:.0f} s "
            "ago); uploads are queued but not ingested until the service restarts"
        )
    if oldest_age is not None and oldest_age > settings.queue_stuck_seconds:
        raise ServiceUnhealthy(
            f"the ingest queue is stuck: the oldest of {queued} queued jobs has waited "
            f"{oldest_age:.0f} s (limit {settings.queue_stuck_seconds:.0f} s)"
        )
    queue = {"queued": queued, "oldest_queued_age_s": None if oldest_age is None else round(oldest_age, 3)}
    if state is None:  # an API-only replica: `tracehouse worker` processes ingest
        return {"ok": True, "worker": None, "queue": queue}
    return {
        "ok": True,
        "worker": {
            "alive": True,
            "heartbeat_age_s": round(state.heartbeat_age_s, 3),
            "heartbeat_at": (datetime.now(UTC) - timedelta(seconds=state.heartbeat_age_s)).isoformat(),
            "busy_s": None if state.busy_s is None else round(state.busy_s, 3),
        },
        "queue": queue,
    }
