"""Across runs and repeats over REST: steps, diff, baselines and the regression check.  Each
route is one call to the analysis function the CLI calls too."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tracehouse.analyses import check as checks
from tracehouse.analyses import diff as diffs
from tracehouse.analyses import history as histories
from tracehouse.analyses import steps as step_views
from tracehouse.analyses.params import fraction, typed_filters
from tracehouse.api.deps import ReadToken, SessionDep, WriteToken
from tracehouse.api.responses import TableQuery
from tracehouse.ingest.baselines import delete_baseline, set_baseline

router = APIRouter(prefix="/v1", tags=["experiments"])
DiffBy = Literal["operator", "attention_type", "kernel", "component"]
Threshold = Annotated[str, Query(description="Smallest change that counts: 5% or 0.05")]
# Cells per answer of the matrix when the caller passes no ``limit``: it grows with runs x keys
# (25,000 cells for 2,500 runs of a model), so a page, as the runs listing answers.
MATRIX_PAGE = 1000


@router.get("/runs/{run_id}/steps", summary="A run cut into steps: per-step time, warm-up, throughput")
def run_steps(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    view: Literal["steps", "summary", "breakdown"] = "steps",
    by: Literal["operator", "attention_type"] = "operator",
) -> Response:
    """``steps``: one row per step or once-run stage (prefill, text encoder ...), warm-up
    flagged; ``summary``: per phase, steady-state median step time with its interval and
    throughput (tokens/s, steps/s, s/image); ``breakdown``: each step's time by ``by``."""
    views = {
        "steps": lambda: step_views.run_steps(session, run_id),
        "summary": lambda: step_views.steps_summary(session, run_id),
        "breakdown": lambda: step_views.step_breakdown(session, run_id, by),
    }
    return table.respond(views[view]())


@router.get("/diff", summary="What changed from runs A to runs B, judged against the noise")
def diff_runs(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    a: Annotated[list[int], Query(description="Run A (repeat the parameter for repeats)")],
    b: Annotated[list[int], Query(description="Run B (repeat the parameter for repeats)")],
    by: DiffBy = "operator",
    threshold: Threshold = "5%",
) -> Response:
    """One row per key: time in A and B, delta, ratio B/A with its 95% interval (t interval over
    repeats, or steps), shares, and status added / removed / slower / faster / same."""
    return table.respond(diffs.diff(session, a, b, by, fraction(threshold)))


@router.get("/check", summary="CI gate: did the runs regress against a baseline?")
def check_runs(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    run: Annotated[list[int], Query(description="New run (repeat the parameter for repeats)")],
    baseline: Annotated[str, Query(description="Baseline name")],
    by: DiffBy = "operator",
    threshold: Threshold = "5%",
    min_share: Annotated[float, Query(ge=0, le=1, description="Ignore keys below this share")] = 0.05,
) -> Response:
    """The diff of the baseline's runs against ``run`` with ``regressed``: the whole 95% interval
    of the ratio lies above 1 + threshold; regressions first."""
    return table.respond(checks.check(session, run, baseline, by, fraction(threshold), min_share))


@router.get("/baselines", summary="Named baselines and their runs")
def baselines(session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    return table.respond(checks.list_baselines(session))


class BaselineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_ids: list[int] = Field(min_length=1, examples=[[3, 4, 5]], description="Runs; several are repeats")
    note: str | None = Field(default=None, max_length=4096)


@router.put("/baselines/{name}", summary="Create or replace a baseline")
def put_baseline(name: str, body: BaselineIn, session: SessionDep, _: WriteToken) -> dict[str, object]:
    set_baseline(session, name, body.run_ids, body.note)
    return {"baseline": name, "run_ids": sorted(set(body.run_ids))}


@router.delete("/baselines/{name}", status_code=204, summary="Delete a baseline (its runs stay)")
def remove_baseline(name: str, session: SessionDep, _: WriteToken) -> Response:
    delete_baseline(session, name)
    return Response(status_code=204)


@router.get("/history", summary="One metric over alike runs, with change points")
def run_history(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    model: Annotated[str, Query(examples=["stable-diffusion"])],
    key: Annotated[str, Query(description="total, or an operator / attention type")] = "total",
    metric: Literal["time", "share"] = "time",
    by: Literal["operator", "attention_type"] = "operator",
    order: Literal["date", "commit"] = "date",
    threshold: Threshold = "5%",
    filter: Annotated[list[str], Query(description="KEY=VALUE, repeatable")] = [],
) -> Response:
    """Runs of ``model`` alike in the filtered knobs, ordered by ingest time or by commit; each
    run's value, its segment between change points, and where each change began with the ratio
    to the previous segment and its 95% interval."""
    filters = typed_filters(filter, "query parameter 'filter'")
    return table.respond(
        histories.history(
            session,
            model,
            key,
            metric,
            by=by,
            order=order,
            threshold=fraction(threshold),
            min_size=histories.MIN_SEGMENT_RUNS,
            **filters,
        )
    )


@router.get("/matrix", summary="Runs x operators (time or share): a heatmap's table, long form")
def run_matrix(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    metric: Literal["time", "share"] = "share",
    by: Literal["operator", "attention_type"] = "operator",
    model: str | None = None,
    experiment: str | None = None,
    attention_backend: str | None = None,
    hardware: Annotated[str | None, Query(description="Substring of the device name")] = None,
) -> Response:
    """One row per run x key, ordered by run id then key, paged in the database: **1,000 cells
    per answer when no ``limit`` is given** (up to the server's ``max_rows`` when one is), with
    ``X-Total-Count`` (runs x keys), ``X-Truncated`` and a ``Link: rel="next"`` header to the
    next page; the Python client follows the links and returns every cell."""
    table.default_limit(MATRIX_PAGE)
    # An empty value filters nothing.
    page, total = histories.matrix_page(
        session,
        metric,
        by,
        offset=table.offset,
        limit=table.limit,
        model=model or None,
        experiment=experiment or None,
        attention_backend=attention_backend or None,
        hardware=hardware or None,
    )
    return table.respond_page(page, total)
