"""The upload client used by ``tracehouse upload`` and the collectors' ``--upload``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tracehouse.core.errors import BadInput, TracehouseError
from tracehouse.ingest.meta import manifest_path_for


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


def _post(client: httpx.Client, path: Path, meta: list[str], progress: Progress | None) -> dict:
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    task = progress.add_task(path.name, total=path.stat().st_size) if progress else None
    manifest = manifest_path_for(path)
    data: dict[str, object] = {"meta": meta}
    if manifest.exists():
        data["manifest"] = manifest.read_text()
    body = _ProgressFile(path, progress, task)
    try:
        response = client.post("/v1/traces", files={"file": (path.name, body)}, data=data)
    finally:
        body.close()
    _raise_for_error(response)
    return response.json()


def upload_files(paths: list[Path], server: str, token: str, meta: list[str], *,
                 wait: bool = True, progress: bool = True, timeout_s: float = 600) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}"}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with httpx.Client(base_url=server, headers=headers, timeout=120) as client, \
            Progress(*columns, transient=True, disable=not progress) as bar:
        jobs = [(p, _post(client, p, meta, bar)) for p in paths]
        results = []
        for path, job in jobs:
            deadline = time.monotonic() + timeout_s
            while wait and job["status"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.2)
                reply = client.get(f"/v1/jobs/{job['job_id']}")
                _raise_for_error(reply)
                job = reply.json()
            results.append({"path": str(path), **job})
    return results
