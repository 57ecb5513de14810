"""Fleet view and model registry over REST; each route is one call to the same functions the
CLI uses."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tracehouse.analyses import fleet_usage as fleet
from tracehouse.api.deps import ReadToken, SessionDep, WriteToken
from tracehouse.api.responses import TableQuery, frame_response
from tracehouse.ingest.fleet_import import register_model

router = APIRouter(prefix="/v1", tags=["fleet"])
PhaseQuery = Annotated[Literal["training", "inference"] | None, Query(description="Only this phase")]


class NewModel(BaseModel):
    # The columns' bounds, so that SQLite and PostgreSQL answer the same 422 (PostgreSQL refuses
    # a NUL and a BIGINT overflow with a database error, SQLite stores the one, fails on the other).
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$", examples=["stable-diffusion-1.5"])
    family: Literal["llm", "tti", "ttv"]
    param_count: int = Field(gt=0, lt=2**63, examples=[859520964])
    architecture: str | None = Field(default=None, max_length=64, pattern=r"^[^\x00]*$")


@router.get("/fleet/summary", summary="GPUs per parameter and memory utilisation by group (Fig 1)")
def fleet_summary(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    by: Annotated[str, Query(description="family|cluster|gpu|phase|month|model, comma-separated")] = "family",
    phase: PhaseQuery = None,
) -> Response:
    return table.respond(fleet.fleet_summary(session, by, phase))


@router.get("/fleet/ratio-spread", summary="A family's ratio to llm across months: min, median, max")
def ratio_spread(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    family: Literal["tti", "ttv"] = "tti",
    phase: PhaseQuery = None,
) -> Response:
    return table.respond(fleet.ratio_spread(session, family, phase))


@router.get("/fleet/top-jobs", summary="Jobs with the most GPU-hours per billion parameters")
def top_jobs(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    n: Annotated[int, Query(gt=0, le=10000)] = 20,
    phase: PhaseQuery = None,
) -> Response:
    return table.respond(fleet.top_jobs(session, n, phase))


@router.get("/models", summary="The model registry")
def models(session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    return table.respond(fleet.models_list(session))


@router.post("/models", status_code=201, summary="Add or correct a model")
def add_model(body: NewModel, session: SessionDep, _: WriteToken) -> Response:
    register_model(session, body.name, body.family, body.param_count, body.architecture)
    response = frame_response(fleet.models_list(session).filter(name=body.name))
    response.status_code = 201  # a returned Response keeps its own status, not the decorator's
    return response
