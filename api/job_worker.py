"""The ingest worker: a loop that claims a job from the queue (``jobs.py``), runs it and
records its outcome, a heartbeat ``/healthz`` reads, a second thread renewing the held job's
lease, and the events a waiting upload (``job_status.wait_for_job``) is woken by.

The worker never dies of an exception: every step of its loop is retried with a back-off, and
an outcome it could not record stays pending (and is written again) before anything new is
claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from tracehouse.api.jobs import (
    MAX_BACKOFF_S,
    Outcome,
    claim_next,
    record_outcome,
    release_dead_local,
    renew_lease,
    run_job,
    worker_identity,
)
from tracehouse.core.settings import Settings
from tracehouse.schema.models import IngestJob

log = logging.getLogger("tracehouse.api.jobs")  # the queue's one logger, as before the split


@dataclass
class WorkerState:
    alive: bool
    heartbeat_age_s: float
    busy_s: float | None  # how long the current job has run; None when idle


class Worker:
    """One worker draining the queue: a background thread of the service (``start()``;
    ``wake()`` after enqueueing), or a process's main thread (``run()``).  A second thread
    renews the lease of the job it holds."""

    def __init__(
        self, engine: Engine, settings: Settings, poll_seconds: float = 2.0, exit_when_idle: bool = False
    ) -> None:
        self.engine, self.settings, self.poll = engine, settings, poll_seconds
        self.exit_when_idle = exit_when_idle
        self.worker_id = worker_identity()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tracehouse-ingest", daemon=True)
        self._renewer = threading.Thread(target=self._renew_loop, name="tracehouse-lease", daemon=True)
        self._heartbeat = time.monotonic()
        self._busy_since: float | None = None
        self._held: int | None = None  # the job whose lease is renewed: claimed, outcome not yet written
        self._pending: tuple[IngestJob, Outcome] | None = None  # an outcome not yet written
        # The job whose outcome is being, or was last, written: a renewal that ran as it was
        # committed finds the job no longer running, and must not report that as a lost lease.
        # Never cleared: should this worker claim the same job again (its outcome was a retry),
        # a lease lost on that claim is reported by ``record_outcome`` when it drops the outcome.
        # No lock: the renewal and the outcome's write are database round trips, and neither
        # may wait on the other's.
        self._outcome_of: int | None = None
        self._watch_lock = threading.Lock()
        self._watchers: dict[int, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def start(self) -> None:
        release_dead_local(self.engine)  # before start-up reclaim, so their spool folders count as live
        self._renewer.start()
        self._thread.start()

    def run(self) -> None:
        """Drain the queue in this thread until ``stop()`` (a signal handler's call)."""
        self._thread = threading.current_thread()
        release_dead_local(self.engine)
        self._renewer.start()
        self._loop()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _renew_loop(self) -> None:
        lease = self.settings.worker_lease_seconds
        while not self._stop.wait(lease / 3):
            if (job_id := self._held) is not None:
                self._renew(job_id, lease)

    def _renew(self, job_id: int, lease: float) -> None:
        try:
            renewed = renew_lease(self.engine, job_id, self.worker_id, lease)
        except Exception:  # the database is away: the next beat tries again
            log.exception("ingest job %s: could not renew the lease", job_id)
            return
        # Lost only if it is not this worker's own outcome that ended the job (a lease truly lost
        # while the outcome is written is reported by ``record_outcome``, which drops it).
        if not renewed and self._outcome_of != job_id:
            log.warning("ingest job %s: lease lost (this worker was silent past %.0f s)", job_id, lease)

    def state(self) -> WorkerState:
        now, busy = time.monotonic(), self._busy_since
        return WorkerState(
            alive=self._thread.is_alive(),
            heartbeat_age_s=now - self._heartbeat,
            busy_s=None if busy is None else now - busy,
        )

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            try:
                worked = self._step()
                backoff = 0.0
            except Exception:  # the database went away, a disk filled: log, back off, go on
                backoff = min(max(backoff * 2, 0.25), MAX_BACKOFF_S)
                log.exception("ingest worker step failed; retrying in %.2f s", backoff)
                self._stop.wait(backoff)
                continue
            if not worked:
                if self.exit_when_idle:
                    self._stop.set()
                    break
                self._wake.wait(self.poll)
                self._wake.clear()

    def _step(self) -> bool:
        """Write a pending outcome, else claim and run one job; False when there was nothing to do."""
        if self._pending is None:
            job = claim_next(self.engine, self.worker_id, self.settings.worker_lease_seconds)
            if job is None:
                return False
            self._held, self._busy_since = job.id, time.monotonic()
            try:
                self._pending = (job, run_job(self.engine, self.settings, job))
            finally:
                self._busy_since = None
                if self._pending is None:
                    self._held = None
        job, outcome = self._pending
        self._outcome_of = job.id
        record_outcome(self.engine, job, outcome)  # raises while the database refuses it
        self._pending = self._held = None
        self._notify(job.id)
        return True

    def watch(self, job_id: int) -> asyncio.Event:
        """An event set (on the caller's loop) when this worker records ``job_id``'s outcome."""
        event = asyncio.Event()
        with self._watch_lock:
            self._watchers.setdefault(job_id, []).append((asyncio.get_running_loop(), event))
        return event

    def unwatch(self, job_id: int, event: asyncio.Event) -> None:
        with self._watch_lock:
            left = [w for w in self._watchers.get(job_id, []) if w[1] is not event]
            if left:
                self._watchers[job_id] = left
            else:
                self._watchers.pop(job_id, None)

    def _notify(self, job_id: int) -> None:
        with self._watch_lock:
            watchers = list(self._watchers.get(job_id, []))
        for loop, event in watchers:
            with contextlib.suppress(RuntimeError):  # that waiter's loop has closed: nobody left to tell
                loop.call_soon_threadsafe(event.set)
