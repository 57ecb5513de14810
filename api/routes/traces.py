"""Uploads: ``POST /v1/traces`` queues an ingest job; ``GET /v1/jobs/{id}`` reports on it."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from tracehouse.api.jobs import enqueue, wait_for_job
from tracehouse.api.deps import ReadToken, SessionDep, SettingsDep, WriteToken
from tracehouse.core.errors import BadInput, BadTrace, NotFound, TooLarge, TracehouseError
from tracehouse.core.settings import Settings
from tracehouse.ingest.meta import meta_from_mapping, parse_key_values
from tracehouse.ingest.units import IngestUnit, plan_units
from tracehouse.schema.models import IngestJob

router = APIRouter(prefix="/v1", tags=["uploads"])
CHUNK = 1 << 20


class JobOut(BaseModel):
    job_id: int = Field(examples=[1])
    status: str = Field(description="queued / running / done / failed", examples=["done"])
    run_id: int | None = Field(default=None, description="The run, once done", examples=[7])
    error: str | None = Field(default=None, description="Why it failed", examples=[None])
    original_name: str = Field(examples=["sd_a100_flash.json.gz"])
    duplicate_of: int | None = Field(
        default=None, examples=[None],
        description="Set when this trace (by content: recompressed counts as the same) was already "
                    "ingested: the existing run, whose metadata was kept; correct it with PATCH /v1/runs/{id}")


def _job_out(job: IngestJob) -> JobOut:
    return JobOut(job_id=job.id, status=job.status, run_id=job.run_id, error=job.error,
                  original_name=job.original_name, duplicate_of=job.duplicate_of)


async def _spool(uploads: list[UploadFile], settings: Settings) -> tuple[IngestUnit, str, int]:
    """Stream the upload's files to disk in chunks (never whole in memory), hashing as it goes;
    they must make one ingest unit: one timeline trace, or the CSVs of one ncu run."""
    # A folder per upload keeps the user's file names, which error messages quote.
    folder = settings.upload_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    try:
        for upload in uploads:
            target = folder / (Path(upload.filename or "trace").name or "trace")
            if target.exists():
                raise BadInput(f"two uploaded files are named {target.name}")
            size += await _write(upload, target, digest, size, settings.max_trace_bytes)
            check_container(target)
        units = plan_units(sorted(folder.iterdir()))
        if len(units) != 1:
            raise BadInput("upload one timeline trace, or the CSV files of one Nsight Compute run, "
                           f"per request (got {len(units)} runs' worth)")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return units[0], digest.hexdigest(), size


async def _write(upload: UploadFile, target: Path, digest: Any, before: int, limit: int) -> int:
    """Stream one file; ``before`` bytes of this upload came ahead of it (the limit is per upload)."""
    size = 0
    with target.open("wb") as out:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if before + size > limit:
                raise TooLarge(f"upload exceeds the {limit}-byte limit")
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise BadInput(f"the uploaded file {target.name} is empty")
    return size


def check_container(path: Path) -> None:
    """A cheap check answered before queueing (the format is ``plan_units``'s): an intact gzip
    stream, decompressed in chunks to nowhere.  What needs a full parse is the job's to report."""
    with path.open("rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return
    try:
        with gzip.open(path, "rb") as gz:
            while gz.read(CHUNK * 4):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BadTrace(f"{path.name}: truncated or corrupt gzip ({exc})") from None


def _metadata(meta: list[str], manifest: str | None, fields: dict[str, str | None]) -> dict[str, object]:
    values: dict[str, object] = {}
    if manifest:
        try:
            loaded = orjson.loads(manifest)
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"manifest is not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise BadInput("manifest must be a JSON object")
        values.update(loaded)
    values.update(parse_key_values(meta, "form field 'meta'"))
    values.update({k: v for k, v in fields.items() if v is not None})
    meta_from_mapping(values)  # validate now: a bad integer is the uploader's 400, not a failed job
    return values


@router.post("/traces", status_code=202, response_model=JobOut,
             responses={200: {"model": JobOut, "description": "With `wait`: the job finished in time (done)"}},
             summary="Upload a trace; returns an ingest job")
async def upload_trace(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep, token: WriteToken,
    file: Annotated[list[UploadFile], File(description="PyTorch Profiler .json/.json.gz, nsys .sqlite, "
                                           "or (repeated) the Nsight Compute CSVs of one run")],
    model: Annotated[str | None, Form(examples=["stable-diffusion"])] = None,
    hardware: Annotated[str | None, Form(description="Overrides the trace's device name")] = None,
    attention_backend: Annotated[str | None, Form(examples=["flash"])] = None,
    meta: Annotated[list[str], Form(description="KEY=VALUE run metadata or tags")] = [],  # noqa: B006
    manifest: Annotated[str | None, Form(description="A collectors run manifest (JSON)")] = None,
    run_id: Annotated[int | None, Form(description="Attach Nsight Compute counters to this run")] = None,
    wait: Annotated[float, Query(ge=0, le=600, description="Seconds to wait for the ingest; "
                                 "a finished one answers 200, a failed one 422 with its error")] = 0,
) -> JobOut:
    """Stream a trace to disk and queue its ingest; poll ``/v1/jobs/{job_id}`` (or pass ``wait``).
    202 while the job is queued or running, 200 once it is done."""
    values = _metadata(meta, manifest, {"model": model, "hardware": hardware,
                                        "attention_backend": attention_backend})
    unit, sha256, size = await _spool(file, settings)
    if run_id is not None and unit.format != "ncu":
        shutil.rmtree(unit.paths[0].parent, ignore_errors=True)
        raise BadInput("run_id attaches Nsight Compute counters; a timeline trace makes its own run")
    # One file is queued as itself, an ncu run's files as their folder.
    upload_path = unit.paths[0] if len(unit.paths) == 1 else unit.paths[0].parent
    job = enqueue(session, original_name=", ".join(p.name for p in unit.paths), upload_path=upload_path,
                  sha256=sha256, size=size, meta=values, token_id=token.id if token else None,
                  target_run_id=run_id)
    request.app.state.worker.wake()
    if wait:
        job = await _wait_for(request, job.id, wait)
    if job.status == "done":
        response.status_code = 200  # 202 means "accepted, not finished"; a finished job is plain OK
    return _job_out(job)


async def _wait_for(request: Request, job_id: int, seconds: float) -> IngestJob:
    # Waiting holds no pooled connection (16 waiters once starved the worker of them).
    job = await wait_for_job(request.app.state.engine, request.app.state.worker, job_id, seconds)
    if job.status == "failed":
        error = BadTrace(job.error or "ingest failed")
        if (job.error or "").startswith("internal error"):
            error = TracehouseError(job.error or "ingest failed")
        raise error
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, summary="An ingest job's state")
def get_job(job_id: int, session: SessionDep, _: ReadToken) -> JobOut:
    """queued / running / done (with ``run_id``) / failed (with ``error``)."""
    job = session.get(IngestJob, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return _job_out(job)
