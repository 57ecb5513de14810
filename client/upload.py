"""Uploads: ``tracehouse upload``, the collectors' ``--upload`` and :meth:`Client.upload`.

Files are planned into runs exactly as ``tracehouse ingest`` plans them (``ingest.units``);
that module, and rich's progress bar, are imported only when something is uploaded, so a
query-only client never loads the ingest stack."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import httpx

from tracehouse.core.errors import BadInput, TracehouseError
from tracehouse.core.limits import MAX_RETRY_AFTER_S, MIN_RETRY_AFTER_S, RECONNECT_WAIT_S, UPLOAD_RETRY_FOR_S

if TYPE_CHECKING:
    from rich.progress import Progress

    from tracehouse.ingest.units import IngestUnit


class _ProgressFile:
    """A file object that advances a progress bar as httpx streams it."""

    def __init__(self, path: Path, progress: Progress | None, task: Any) -> None:
        self._fh = path.open("rb")
        self._progress, self._task = progress, task

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, len(chunk))
        return chunk

    def close(self) -> None:
        self._fh.close()


log = logging.getLogger(__name__)


def retry_after_s(response: httpx.Response) -> float | None:
    """The wait a 503 asks for in its Retry-After header (seconds; the HTTP-date form is not
    sent by tracehouse and counts as none); None when the answer is not one to try again."""
    if response.status_code != 503:
        return None
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, MIN_RETRY_AFTER_S), MAX_RETRY_AFTER_S)


def send_until_taken(
    send: Callable[[], httpx.Response],
    what: str,
    retry_for_s: float = UPLOAD_RETRY_FOR_S,
    *,
    reconnect: bool = False,
) -> httpx.Response:
    """``send()`` again after each 503 that carries Retry-After, waiting what it asks, until an
    answer of another kind or ``retry_for_s`` has passed; that last answer comes back.  An
    upload is safe to send again: a 503 with Retry-After comes before the job is queued (and
    a trace that did land twice is recognised by its content digest, so it makes no second run).
    With ``reconnect`` (a job poll, to a server known to be there), a request the server could
    not be reached for is sent again every ``RECONNECT_WAIT_S`` too; without it, that raises at
    once (a mistyped ``--server`` must not hang)."""
    if not retry_for_s >= 0:  # NaN too: it would compare as never past the deadline
        raise BadInput(f"the time to keep trying must be 0 or more seconds, not {retry_for_s}")
    deadline = time.monotonic() + retry_for_s
    while True:
        try:
            response = send()
        except httpx.TransportError as exc:
            if not reconnect or time.monotonic() + RECONNECT_WAIT_S > deadline:
                raise
            reason = str(exc) or type(exc).__name__
            log.warning("%s: cannot reach the server (%s); trying again in %g s", what, reason, RECONNECT_WAIT_S)
            time.sleep(RECONNECT_WAIT_S)
            continue
        wait = retry_after_s(response)
        if wait is None or time.monotonic() + wait > deadline:
            return response
        code = _error_body(response).get("code", "http_error")
        log.warning("%s: the server is unavailable (%s); trying again in %g s", what, code, wait)
        time.sleep(wait)


def _error_body(response: httpx.Response) -> dict:
    """The server's error object, or {} where the answer is not one (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def raise_for_error(response: httpx.Response) -> None:
    """The server's one error shape as a :class:`TracehouseError`: its message, ``status`` and
    ``code``; exit code 2 for the caller's mistakes (4xx), 1 for the server's (5xx)."""
    if response.status_code < 400:
        return
    body = _error_body(response)
    error = TracehouseError(f"server said {response.status_code}: {body.get('error', response.text)}")
    error.status = response.status_code
    error.code = str(body.get("code", "http_error"))
    error.exit_code = 2 if 400 <= response.status_code < 500 else 1
    raise error


def _post(
    client: httpx.Client,
    unit: IngestUnit,
    meta: list[str],
    run_id: int | None,
    progress: Progress | None,
    retry_for_s: float,
) -> dict:
    """One request per unit: a timeline trace (with its manifest) or an ncu run's CSVs."""
    from tracehouse.core.meta import manifest_path_for

    data: dict[str, object] = {"meta": meta}
    manifest = manifest_path_for(unit.paths[0])
    if manifest.exists():
        data["manifest"] = manifest.read_text()
    if run_id is not None:
        data["run_id"] = str(run_id)
    tasks = [progress.add_task(path.name, total=path.stat().st_size) if progress else None for path in unit.paths]

    def send() -> httpx.Response:  # each try streams the files again, from their start
        bodies = []
        for path, task in zip(unit.paths, tasks, strict=True):
            if progress is not None and task is not None:
                progress.reset(task)
            bodies.append(_ProgressFile(path, progress, task))
        try:
            # httpx only calls read() on a file; its type asks for the whole IO interface.
            files = [("file", (p.name, cast("IO[bytes]", body))) for p, body in zip(unit.paths, bodies, strict=True)]
            return client.post("/v1/traces", files=files, data=data)
        finally:
            for body in bodies:
                body.close()

    response = send_until_taken(send, f"upload of {unit.label}", retry_for_s)
    raise_for_error(response)
    return response.json()


def upload_with(
    client: httpx.Client,
    paths: list[Path],
    meta: list[str],
    *,
    run_id: int | None = None,
    wait: bool = True,
    progress: bool = True,
    timeout_s: float = 600,
    retry_for_s: float = UPLOAD_RETRY_FOR_S,
) -> list[dict]:
    """Upload files and folders as ``tracehouse ingest`` would ingest them: one job per run, and
    ncu CSVs given with exactly one timeline trace attach to that trace's run (so that one is
    waited for first).  ``client`` carries the server URL and token.  A request the server
    answers 503 with Retry-After, and a job poll that cannot reach the server, is sent again
    for up to ``retry_for_s`` (0: never)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from tracehouse.ingest.units import attach_plan, plan_units

    units, host = attach_plan(plan_units(paths), run_id)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True, disable=not progress) as bar:
        jobs = []
        for unit in units:
            # Jobs are polled rather than waited on with ?wait=, so a failed ingest comes back as
            # a job with its error (reported per file) instead of ending the whole upload.
            job = _post(client, unit, meta, run_id if unit.format == "ncu" else None, bar, retry_for_s)
            if unit is host:  # the counters that follow join its run: wait for it
                job = wait_for_job(client, job, timeout_s, retry_for_s)
                run_id = job.get("run_id")
            jobs.append((unit.label, job))
        return [
            {"path": label, **(wait_for_job(client, job, timeout_s, retry_for_s) if wait else job)}
            for label, job in jobs
        ]


def upload_files(
    paths: list[Path],
    server: str,
    token: str,
    meta: list[str],
    *,
    run_id: int | None = None,
    wait: bool = True,
    progress: bool = True,
    timeout_s: float = 600,
    retry_for_s: float = UPLOAD_RETRY_FOR_S,
) -> list[dict]:
    """:func:`upload_with` on a connection of its own to ``server`` with ``token``."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server, headers=headers, timeout=120) as client:
        return upload_with(
            client,
            paths,
            meta,
            run_id=run_id,
            wait=wait,
            progress=progress,
            timeout_s=timeout_s,
            retry_for_s=retry_for_s,
        )


def wait_for_job(client: httpx.Client, job: dict, timeout_s: float, retry_for_s: float = UPLOAD_RETRY_FOR_S) -> dict:
    """Poll ``/v1/jobs/{id}`` until the job is done or failed, or ``timeout_s`` has passed; a
    poll answered 503 with Retry-After, or one that cannot reach the server (it restarts), is
    tried again for up to ``retry_for_s``: the job is queued in the database whatever happens."""
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        poll = functools.partial(client.get, f"/v1/jobs/{job['job_id']}")
        left = max(0.0, deadline - time.monotonic())  # retries do not stretch the caller's timeout
        reply = send_until_taken(poll, f"job {job['job_id']}", min(retry_for_s, left), reconnect=True)
        raise_for_error(reply)
        job = reply.json()
    return job
