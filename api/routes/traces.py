"""Uploads: ``POST /v1/traces`` queues an ingest job; ``GET /v1/jobs/{id}`` reports on it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Annotated, BinaryIO

import anyio
import orjson
from fastapi import APIRouter, Query, Request, Response
from isal import isal_zlib
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from tracehouse.api.deps import ReadToken, SessionDep, SettingsDep, UploaderId, check_id
from tracehouse.api.job_status import wait_for_job
from tracehouse.api.jobs import enqueue
from tracehouse.api.upload_body import UploadBody, receive_upload
from tracehouse.core.errors import (
    BadInput,
    BadTrace,
    DatabaseError,
    InvalidField,
    NotFound,
    TooLarge,
    TracehouseError,
)
from tracehouse.core.meta import meta_from_mapping, parse_key_values
from tracehouse.ingest.kineto import GZIP_ERRORS
from tracehouse.ingest.units import IngestUnit, plan_units
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["uploads"])
CHUNK = 1 << 20
# The body is parsed by the route as it streams (api/upload_body.py), so it is described here.
UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PyTorch Profiler .json/.json.gz, nsys .sqlite, or (repeated) the "
                            "Nsight Compute CSVs of one run; the name is metadata (at most 255 bytes)",
                        },
                        "model": {"type": "string", "examples": ["stable-diffusion"]},
                        "hardware": {"type": "string", "description": "Overrides the trace's device name"},
                        "attention_backend": {"type": "string", "examples": ["flash"]},
                        "experiment": {
                            "type": "string",
                            "description": "Experiment the run belongs to (repeats share one)",
                        },
                        "meta": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "KEY=VALUE run metadata or tags",
                        },
                        "manifest": {"type": "string", "description": "A collectors run manifest (JSON)"},
                        "run_id": {"type": "integer", "description": "Attach Nsight Compute counters to this run"},
                    },
                }
            }
        },
    }
}


class JobOut(BaseModel):
    job_id: int = Field(examples=[1])
    status: str = Field(description="queued / running / done / failed", examples=["done"])
    run_id: int | None = Field(default=None, description="The run, once done", examples=[7])
    error: str | None = Field(default=None, description="Why it failed", examples=[None])
    original_name: str = Field(examples=["sd_a100_flash.json.gz"])
    duplicate_of: int | None = Field(
        default=None,
        examples=[None],
        description="Set when this trace (by content: recompressed counts as the same) was already "
        "ingested: the existing run, whose metadata was kept; correct it with PATCH /v1/runs/{id}",
    )


def _job_out(job: IngestJob) -> JobOut:
    return JobOut(
        job_id=job.id,
        status=job.status,
        run_id=job.run_id,
        error=job.error,
        original_name=job.original_name,
        duplicate_of=job.duplicate_of,
    )


def _checked_unit(body: UploadBody, max_inflated_bytes: int) -> IngestUnit:
    """The spooled files as one ingest unit (one timeline trace, or the CSVs of one ncu run),
    each gzip inflated once to nowhere under the cap; on a worker thread."""
    for _, path in body.files:
        check_container(path, max_inflated_bytes)
    units = plan_units([path for _, path in body.files])
    if len(units) != 1:
        raise BadInput(
            "upload one timeline trace, or the CSV files of one Nsight Compute run, "
            f"per request (got {len(units)} runs' worth)"
        )
    return units[0]


def check_container(path: Path, max_inflated_bytes: int) -> None:
    """A cheap check answered before queueing (the format is ``plan_units``'s): an intact gzip
    stream whose text stays under ``max_inflated_bytes``, inflated in chunks to nowhere (ISA-L:
    a 1 GiB bomb of zeros is refused in about a quarter of a second).  What needs a full
    parse is the job's to report."""
    with path.open("rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return
        fh.seek(0)
        try:
            _inflate_to_nowhere(fh, path.name, max_inflated_bytes)
        except GZIP_ERRORS as exc:
            raise BadTrace(f"{path.name}: truncated or corrupt gzip ({exc})") from None


def _inflate_to_nowhere(fh: BinaryIO, name: str, limit: int) -> None:
    inflater, total, pending = isal_zlib.decompressobj(wbits=31), 0, b""
    while data := pending or fh.read(CHUNK):
        if inflater.eof:  # a multi-member gzip: the next member starts here
            inflater = isal_zlib.decompressobj(wbits=31)
        total += len(inflater.decompress(data, CHUNK * 4))
        if total > limit:
            raise TooLarge(f"{name}: inflates past the {limit}-byte limit on a trace's decompressed size")
        pending = inflater.unconsumed_tail or inflater.unused_data
    if not inflater.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")


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


def _form_values(body: UploadBody) -> tuple[dict[str, object], int | None]:
    """The upload's metadata and its ``run_id`` (an id the run table can hold, or 422)."""
    values = _metadata(
        body.fields.get("meta", []),
        body.one("manifest"),
        {k: body.one(k) for k in ("model", "hardware", "attention_backend", "experiment")},
    )
    run_id = body.one("run_id")
    if run_id is None or run_id == "":
        return values, None
    try:
        return values, check_id(int(run_id), "run_id")
    except ValueError:
        raise InvalidField("run_id: Input should be a valid integer") from None


def _enqueue(
    engine: Engine,
    body: UploadBody,
    unit: IngestUnit,
    values: dict[str, object],
    token_id: int | None,
    run_id: int | None,
) -> JobOut:
    clients = {path: client for client, path in body.files}
    # One file is queued as itself, an ncu run's files as their folder.
    upload_path = unit.paths[0] if len(unit.paths) == 1 else body.folder
    with session_scope(engine) as session:
        job = enqueue(
            session,
            original_name=", ".join(clients[p] for p in unit.paths),
            upload_path=upload_path,
            sha256=body.sha256,
            size=body.size,
            meta=values,
            token_id=token_id,
            target_run_id=run_id,
        )
        return _job_out(job)


@router.post(
    "/traces",
    status_code=202,
    response_model=JobOut,
    openapi_extra=UPLOAD_FORM,
    responses={200: {"model": JobOut, "description": "With `wait`: the job finished in time (done)"}},
    summary="Upload a trace; returns an ingest job",
)
async def upload_trace(
    request: Request,
    response: Response,
    settings: SettingsDep,
    token_id: UploaderId,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=600,
            description="Seconds to wait for the ingest; a finished one answers 200, a failed one 422 with its error",
        ),
    ] = 0,
) -> JobOut:
    """Stream a trace to disk and queue its ingest; poll ``/v1/jobs/{job_id}`` (or pass ``wait``).
    The token and ``Content-Length`` are checked before the body is read; 202 while the job is
    queued or running, 200 once it is done."""
    body = await receive_upload(request, settings.upload_dir(), settings.max_trace_bytes)
    try:
        values, run_id = _form_values(body)
        unit = await run_in_threadpool(_checked_unit, body, settings.inflated_limit())
        if run_id is not None and unit.format != "ncu":
            raise BadInput("run_id attaches Nsight Compute counters; a timeline trace makes its own run")
        engine = request.app.state.engine
        job = await run_in_threadpool(_enqueue, engine, body, unit, values, token_id, run_id)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(shutil.rmtree, body.folder, True)
        raise
    if request.app.state.worker is not None:  # an API-only replica has none: workers poll the queue
        request.app.state.worker.wake()
    if wait:
        job = await _wait_for(request, job, wait)
    if job.status == "done":
        response.status_code = 200  # 202 means "accepted, not finished"; a finished job is plain OK
    return job


async def _wait_for(request: Request, queued: JobOut, seconds: float) -> JobOut:
    # Waiting holds no pooled connection (16 waiters once starved the worker of them).
    try:
        job = await wait_for_job(request.app.state.engine, request.app.state.worker, queued.job_id, seconds)
    except DatabaseError:
        # The upload is queued (committed) already: a 503 would tell the client to send it again,
        # making a second job.  It gets the 202 with the job to poll, as without ``wait``.
        log.warning("upload job %s: queued, but its state could not be read while waiting", queued.job_id)
        return queued
    if job.status == "failed":
        error: TracehouseError = BadTrace(job.error or "ingest failed")
        if (job.error or "").startswith("internal error"):
            error = TracehouseError(job.error or "ingest failed")
        raise error
    return _job_out(job)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="An ingest job's state")
def get_job(job_id: int, session: SessionDep, _: ReadToken) -> JobOut:
    """queued / running / done (with ``run_id``) / failed (with ``error``)."""
    job = session.get(IngestJob, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return _job_out(job)
