"""Runs: list, one run, edit, delete, download its trace and kernels, and its breakdown."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tracehouse.analyses.breakdown import BY_CHOICES, breakdown
from tracehouse.analyses.common import get_run
from tracehouse.analyses.runs import (
    RunFilters,
    count_runs,
    list_runs,
    raw_trace,
    run_kernel_count,
    run_kernels,
    run_row,
    run_tags,
    run_traces,
)
from tracehouse.api.auth import check_run_owner
from tracehouse.api.deps import ReadToken, SessionDep, WriteToken
from tracehouse.api.responses import TableQuery
from tracehouse.core.meta import parse_key_values
from tracehouse.ingest.load import delete_run
from tracehouse.ingest.reingest import reingest_run
from tracehouse.ingest.run_edit import edit_run
from tracehouse.ingest.user_rules import name_rules_for

router = APIRouter(prefix="/v1/runs", tags=["runs"])

# What a raw file is sent as, by its format (a Kineto trace by its gzip magic, too).
# Runs per answer of the listing when the caller passes no ``limit``: a page, not the store.
RUNS_PAGE = 100
MEDIA_TYPES = {"kineto": "application/json", "nsys": "application/vnd.sqlite3", "ncu": "text/csv"}


class RunPatch(BaseModel):
    """Fields to set on a run (``null`` clears one) and tags to set (``null`` removes one);
    fields left out are unchanged."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, examples=["stable-diffusion"])
    hardware: str | None = Field(default=None, description="Device name", examples=["NVIDIA A100-SXM4-80GB"])
    attention_backend: str | None = Field(default=None, examples=["flash"])
    scale: str | None = None
    batch: int | None = None
    dtype: str | None = None
    image_size: int | None = None
    frames: int | None = None
    denoising_steps: int | None = None
    decode_tokens: int | None = None
    text_length: int | None = None
    param_count: int | None = None
    peak_memory_bytes: int | None = None
    host: str | None = None
    experiment: str | None = None
    git_commit: str | None = None
    version: str | None = None
    tags: dict[str, str | None] = Field(default_factory=dict, examples=[{"lab": "a", "stale": None}])


@router.get("", summary="List runs")
def runs(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    model: str | None = None,
    family: str | None = None,
    hardware: Annotated[str | None, Query(description="Substring of the device name")] = None,
    attention_backend: str | None = None,
    experiment: Annotated[str | None, Query(description="Only runs of this experiment")] = None,
    tag: Annotated[list[str], Query(description="KEY=VALUE, repeatable")] = [],
    since: Annotated[datetime | None, Query(description="Ingested at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Ingested before (ISO 8601)")] = None,
) -> Response:
    """Runs matching every filter, oldest first, one row each, paged in the database:
    **100 runs per answer when no ``limit`` is given** (up to the server's ``max_rows`` when one
    is), with ``X-Total-Count`` (every matching run), ``X-Truncated`` and a ``Link: rel="next"``
    header to the next page; the Python client follows the links and returns every run."""
    table.default_limit(RUNS_PAGE)
    filters = RunFilters(
        model=model,
        family=family,
        hardware=hardware,
        attention_backend=attention_backend,
        tags=parse_key_values(tag, "query parameter 'tag'"),
        since=since,
        until=until,
        experiment=experiment,
    )
    frame = list_runs(session, **filters, offset=table.offset, limit=table.limit)
    return table.respond_page(frame, count_runs(session, **filters))


def _run_json(session: SessionDep, run_id: int) -> Response:
    row = run_row(session, run_id)
    row["tags"] = run_tags(session, run_id)
    row["traces"] = run_traces(session, run_id)
    return Response(orjson.dumps(row, option=orjson.OPT_NAIVE_UTC), media_type="application/json")


@router.get("/{run_id}", summary="One run's metadata, tags and files")
def run(run_id: int, session: SessionDep, _: ReadToken) -> Response:
    return _run_json(session, run_id)


@router.patch("/{run_id}", summary="Correct a run's metadata and tags")
def patch_run(run_id: int, body: RunPatch, session: SessionDep, token: WriteToken) -> Response:
    """The token that uploaded the run may edit it; another run needs an admin token.
    Answers the run as ``GET`` does."""
    check_run_owner(token, get_run(session, run_id), "edit")
    fields = {key: getattr(body, key) for key in body.model_fields_set if key != "tags"}
    edit_run(session, run_id, fields, body.tags)
    return _run_json(session, run_id)


@router.delete("/{run_id}", status_code=204, summary="Delete a run and its kernels")
def remove_run(run_id: int, session: SessionDep, token: WriteToken) -> Response:
    """The token that uploaded the run may delete it; another run needs an admin token."""
    check_run_owner(token, get_run(session, run_id), "delete")
    delete_run(session, run_id)
    return Response(status_code=204)


@router.get("/{run_id}/trace", summary="Download a run's raw trace file")
def download_trace(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    trace_id: Annotated[
        int | None, Query(description="One of the run's files (default: its timeline trace, or its only file)")
    ] = None,
) -> Response:
    """The file as it was ingested, streamed from the raw store under its original name."""
    path, name, fmt = raw_trace(session, run_id, trace_id)
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    media_type = "application/gzip" if gzipped else MEDIA_TYPES.get(fmt, "application/octet-stream")
    return FileResponse(path, media_type=media_type, filename=name)


@router.get("/{run_id}/kernels", summary="A run's kernel rows")
def kernels(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    """Every kernel (memcpy, memset; host op for CPU-only runs) in execution order with its
    attribution keys; ns timestamps.  Paged like every table (``limit``, ``offset``)."""
    page = run_kernels(session, run_id, table.offset, table.limit)
    return table.respond_page(page, run_kernel_count(session, run_id))


@router.post("/{run_id}/reingest", summary="Classify a run again from its kept raw trace")
def reingest(run_id: int, request: Request, _: WriteToken) -> Response:
    """Kernels and rollups are rebuilt with this server's rules in one transaction; the run keeps
    its id, metadata and tags, and attached Nsight Compute counters are linked again."""
    name_rules = name_rules_for(request.app.state.settings.rules_file())
    result = reingest_run(request.app.state.engine, run_id, name_rules)
    return Response(orjson.dumps(asdict(result)), media_type="application/json")


@router.get("/{run_id}/breakdown", summary="Operator breakdown of a run (paper Fig 7)")
def run_breakdown(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    by: Annotated[str, Query(description=" | ".join(BY_CHOICES))] = "operator",
) -> Response:
    """Count, total ns and share of the run's kernel time per group."""
    return table.respond(breakdown(session, run_id, by))
