"""Runs: list, one run, delete, and one run's breakdown."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tracehouse.analyses.breakdown import BY_CHOICES, breakdown
from tracehouse.analyses.common import get_run
from tracehouse.analyses.runs import list_runs, run_tags
from tracehouse.api.deps import ReadToken, SessionDep, WriteToken
from tracehouse.api.responses import TableQuery
from tracehouse.ingest.meta import parse_key_values
from tracehouse.ingest.load import delete_run
from tracehouse.ingest.reingest import reingest_run
from tracehouse.ingest.user_rules import name_rules_for

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.get("", summary="List runs")
def runs(session: SessionDep, _: ReadToken, table: TableQuery, model: str | None = None, family: str | None = None,
         hardware: Annotated[str | None, Query(description="Substring of the device name")] = None,
         attention_backend: str | None = None,
         tag: Annotated[list[str], Query(description="KEY=VALUE, repeatable")] = [],  # noqa: B006
         since: Annotated[datetime | None, Query(description="Ingested at or after (ISO 8601)")] = None,
         until: Annotated[datetime | None, Query(description="Ingested before (ISO 8601)")] = None) -> Response:
    """Runs matching every filter, oldest first."""
    frame = list_runs(session, model=model, family=family, hardware=hardware, attention_backend=attention_backend,
                      tags=parse_key_values(tag), since=since, until=until)
    return table.respond(frame)


@router.get("/{run_id}", summary="One run's metadata and tags")
def run(run_id: int, session: SessionDep, _: ReadToken) -> Response:
    get_run(session, run_id)
    row = list_runs(session).filter(run_id=run_id).to_dicts()[0]
    row["tags"] = run_tags(session, run_id)
    return Response(orjson.dumps(row, option=orjson.OPT_NAIVE_UTC), media_type="application/json")


@router.delete("/{run_id}", status_code=204, summary="Delete a run and its kernels")
def remove_run(run_id: int, session: SessionDep, _: WriteToken) -> Response:
    get_run(session, run_id)
    delete_run(session, run_id)
    return Response(status_code=204)


@router.post("/{run_id}/reingest", summary="Classify a run again from its kept raw trace")
def reingest(run_id: int, request: Request, _: WriteToken) -> Response:
    """Kernels and rollups are rebuilt with this server's rules in one transaction; the run keeps
    its id, metadata and tags, and attached Nsight Compute counters are linked again."""
    name_rules = name_rules_for(request.app.state.settings.rules_file())
    result = reingest_run(request.app.state.engine, run_id, name_rules)
    return Response(orjson.dumps(asdict(result)), media_type="application/json")


@router.get("/{run_id}/breakdown", summary="Operator breakdown of a run (paper Fig 7)")
def run_breakdown(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery,
                  by: Annotated[str, Query(description=" | ".join(BY_CHOICES))] = "operator") -> Response:
    """Count, total ns and share of the run's kernel time per group."""
    return table.respond(breakdown(session, run_id, by))
