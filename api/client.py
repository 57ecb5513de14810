"""The upload client used by ``tracehouse upload`` and the collectors' ``--upload``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tracehouse.core.errors import TracehouseError
from tracehouse.ingest.meta import manifest_path_for
from tracehouse.ingest.units import IngestUnit, attach_plan, plan_units


class _ProgressFile:
    """A file object that advances a progress bar as httpx streams it."""

    def __init__(self, path: Path, progress: Progress | None, task: int | None) -> None:
        self._fh = path.open("rb")
        self._progress, self._task = progress, task

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, len(chunk))
        return chunk

    def close(self) -> None:
        self._fh.close()


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("error", response.text)
    except ValueError:
        message = response.text
    error = TracehouseError(f"server said {response.status_code}: {message}")
    error.exit_code = 2 if 400 <= response.status_code < 500 else 1
    raise error


def _post(client: httpx.Client, unit: IngestUnit, meta: list[str], run_id: int | None,
          progress: Progress | None) -> dict:
    """One request per unit: a timeline trace (with its manifest) or an ncu run's CSVs."""
    data: dict[str, object] = {"meta": meta}
    manifest = manifest_path_for(unit.paths[0])
    if manifest.exists():
        data["manifest"] = manifest.read_text()
    if run_id is not None:
        data["run_id"] = str(run_id)
    bodies = []
    for path in unit.paths:
        task = progress.add_task(path.name, total=path.stat().st_size) if progress else None
        bodies.append(_ProgressFile(path, progress, task))
    try:
        files = [("file", (path.name, body)) for path, body in zip(unit.paths, bodies)]
        response = client.post("/v1/traces", files=files, data=data)
    finally:
        for body in bodies:
            body.close()
    _raise_for_error(response)
    return response.json()


def upload_files(paths: list[Path], server: str, token: str, meta: list[str], *, run_id: int | None = None,
                 wait: bool = True, progress: bool = True, timeout_s: float = 600) -> list[dict]:
    """Upload files and folders as ``tracehouse ingest`` would ingest them: one job per run, and
    ncu CSVs given with exactly one timeline trace attach to that trace's run (so that one is
    waited for first)."""
    units, host = attach_plan(plan_units(paths), run_id)
    headers = {"Authorization": f"Bearer {token}"}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with httpx.Client(base_url=server, headers=headers, timeout=120) as client, \
            Progress(*columns, transient=True, disable=not progress) as bar:
        jobs = []
        for unit in units:
            job = _post(client, unit, meta, run_id if unit.format == "ncu" else None, bar)
            if unit is host:  # the counters that follow join its run: wait for it
                job = _wait(client, job, timeout_s)
                run_id = job.get("run_id")
            jobs.append((unit.label, job))
        return [{"path": label, **(_wait(client, job, timeout_s) if wait else job)} for label, job in jobs]


def _wait(client: httpx.Client, job: dict, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        reply = client.get(f"/v1/jobs/{job['job_id']}")
        _raise_for_error(reply)
        job = reply.json()
    return job
