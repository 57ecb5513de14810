"""The FastAPI application factory: nothing is created at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from tracehouse.api.dashboard import router as dashboard_router
from tracehouse.api.job_status import service_health
from tracehouse.api.job_worker import Worker
from tracehouse.api.responses import ERROR_RESPONSES, install_error_handlers, install_openapi
from tracehouse.api.routes import analyses, experiments, fleet_usage, runs, tokens, traces
from tracehouse.core.settings import Settings
from tracehouse.ingest.reclaim import reclaim_orphans
from tracehouse.schema.db import make_engine
from tracehouse.schema.migrate import ensure_schema

DESCRIPTION = """Trace database and query service for generative-AI GPU workloads.

Upload PyTorch Profiler or Nsight Systems traces from lab machines (`POST /v1/traces`), then
ask where GPU time went: by operator, attention type, sequence length, component, kernel,
across runs and hardware. Every error has the shape
`{"ok": false, "error": "...", "code": "...", "status": N}`. Tables come back as JSON rows,
or CSV / Parquet with `?format=csv|parquet`. Send `Authorization: Bearer <token>`
(`tracehouse token create`)."""
# Swagger UI and ReDoc are served from the fastapi-offline package's copies, not a CDN, so
# /docs works on a lab network with no way out.
DOCS_ASSETS = "/docs-assets"


def create_app(settings: Settings, *, in_process_worker: bool = True) -> FastAPI:
    """``in_process_worker=False``: an API-only replica; ``tracehouse worker`` processes ingest."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url()
        engine = make_engine(url)
        ensure_schema(engine, url)  # migrates an empty database, refuses an out-of-date one
        worker = Worker(engine, settings) if in_process_worker else None
        app.state.engine, app.state.settings, app.state.worker = engine, settings, worker
        if worker is not None:
            worker.start()  # releases dead workers' jobs first, so their spool folders count as live
        if settings.gc_on_start:
            _reclaim_at_start(engine, settings)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            engine.dispose()

    app = FastAPI(
        title="tracehouse",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    app.include_router(traces.router)
    app.include_router(runs.router)
    app.include_router(analyses.router)
    app.include_router(experiments.router)
    app.include_router(fleet_usage.router)
    app.include_router(tokens.router)
    app.include_router(dashboard_router)  # /ui/: the browser dashboard

    @app.get(
        "/healthz",
        tags=["service"],
        summary="Liveness: the ingest worker and the queue",
        responses={
            503: {
                "description": "The database is down, the ingest worker is dead, or the "
                "queue is stuck (the one error shape)"
            }
        },
    )
    def healthz(request: Request) -> dict[str, object]:
        """The worker's heartbeat and the oldest queued job's age; 503 when either is wrong."""
        return service_health(request.app.state.engine, request.app.state.worker, request.app.state.settings)

    return app


def _reclaim_at_start(engine: Engine, settings: Settings) -> None:
    """Orphans of a crash are reclaimed at start; failing to is logged, never fatal."""
    try:
        reclaim_orphans(engine, settings)
    except Exception:
        logging.getLogger(__name__).exception("could not reclaim orphan raw and spool files")


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with every script, style and icon served locally."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS}/{name}"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            # No badge fetched from the public validator either.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
