"""The dashboard: the paper's figures over the stored runs, served by ``tracehouse serve`` under
``/ui/`` with the API's own read access, drawn from the same analysis functions as REST and the
CLI.  Server-rendered (Jinja2) pages with plotly charts whose JavaScript comes from the plotly
package, so nothing loads from another host."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from tracehouse.api.dashboard import compare, runs, studies  # noqa: F401  (their routes join `reader`)
from tracehouse.api.dashboard.access import public, reader
from tracehouse.api.dashboard.render import PREFIX

router = APIRouter(include_in_schema=False)
router.include_router(public)
router.include_router(reader)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)
