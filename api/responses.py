"""One JSON error shape for every failure, and frames as JSON, CSV or Parquet."""

from __future__ import annotations

import io
from typing import Annotated, Literal

import polars as pl
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracehouse.api.deps import SettingsDep
from tracehouse.api.output import flat_for_csv, frame_to_json
from tracehouse.core.errors import TracehouseError

Format = Literal["json", "csv", "parquet"]


def error_body(message: str, status: int, code: str) -> dict[str, object]:
    return {"ok": False, "error": message, "code": code, "status": status}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TracehouseError)
    async def tracehouse_error(_: Request, exc: TracehouseError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(error_body(message, 422, "invalid_request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), exc.status_code, "http_error"),
                            status_code=exc.status_code)


def frame_response(frame: pl.DataFrame, fmt: Format = "json") -> Response:
    if fmt == "csv":
        return Response(flat_for_csv(frame).write_csv(), media_type="text/csv")
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.write_parquet(buf)
        return Response(buf.getvalue(), media_type="application/vnd.apache.parquet")
    return Response(frame_to_json(frame), media_type="application/json")


class TableParams:
    """``format``, ``limit`` and ``offset`` of every table route.  Answers are capped at the
    ``max_rows`` setting (datasette's ``max_returned_rows``): a bigger table comes back in pages,
    with ``X-Total-Count``, ``X-Truncated`` and a ``Link: rel="next"`` header to the next one."""

    def __init__(self, request: Request, settings: SettingsDep,
                 format: Annotated[Format, Query(description="json (default), csv or parquet")] = "json",
                 limit: Annotated[int | None, Query(ge=1, le=2**53, description="Rows per answer (at most the "
                                                    "server's max_rows, the default)")] = None,
                 offset: Annotated[int, Query(ge=0, le=2**53, description="Rows to skip")] = 0) -> None:
        self.request, self.format, self.offset = request, format, offset
        self.limit = min(limit or settings.max_rows, settings.max_rows)

    def respond(self, frame: pl.DataFrame) -> Response:
        page = frame.slice(self.offset, self.limit)
        response = frame_response(page, self.format)
        end = self.offset + page.height
        response.headers["X-Total-Count"] = str(frame.height)
        response.headers["X-Truncated"] = "true" if end < frame.height else "false"
        if end < frame.height:
            # Relative (RFC 8288 resolves it against the request): the Host header is the
            # client's to choose, so an absolute link built from it could point anywhere.
            url = self.request.url.include_query_params(offset=end, limit=self.limit)
            response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
        return response


TableQuery = Annotated[TableParams, Depends()]
