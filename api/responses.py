"""One JSON error shape for every failure, and frames as JSON, CSV or Parquet."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracehouse.api.columns import TABLES, Table
from tracehouse.api.deps import SettingsDep
from tracehouse.api.output import flat_for_csv, frame_to_json
from tracehouse.core.errors import TracehouseError

Format = Literal["json", "csv", "parquet"]
PARQUET = "application/vnd.apache.parquet"


class ErrorOut(BaseModel):
    """The one error shape: every 4xx and 5xx answer has exactly these four keys."""

    ok: Literal[False]
    error: str = Field(description="One line a user can act on", examples=["run 42 does not exist"])
    code: str = Field(
        description="Machine-readable kind: bad_input, bad_trace, too_large, unauthorized, "
        "forbidden, not_found, invalid_request, schema_out_of_date, database_error, "
        "internal_error, http_error",
        examples=["not_found"],
    )
    status: int = Field(description="The HTTP status, repeated", examples=[404])


# Every route documents the error shape for 4xx and 5xx (this also replaces FastAPI's own
# validation-error schema, which our handler never sends).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    "4XX": {"model": ErrorOut, "description": "Bad request, unauthorized, forbidden, not found, too large"},
    "5XX": {"model": ErrorOut, "description": "Server or database error"},
}


def error_body(message: str, status: int, code: str) -> dict[str, object]:
    return {"ok": False, "error": message, "code": code, "status": status}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TracehouseError)
    async def tracehouse_error(_: Request, exc: TracehouseError) -> JSONResponse:
        retry = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=retry)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(error_body(message, 422, "invalid_request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), exc.status_code, "http_error"), status_code=exc.status_code)


def frame_response(frame: pl.DataFrame, fmt: Format = "json") -> Response:
    if fmt == "csv":
        return Response(flat_for_csv(frame).write_csv(), media_type="text/csv")
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.write_parquet(buf)
        return Response(buf.getvalue(), media_type=PARQUET)
    return Response(frame_to_json(frame), media_type="application/json")


class TableParams:
    """``format``, ``limit`` and ``offset`` of every table route.  Answers are capped at the
    ``max_rows`` setting (datasette's ``max_returned_rows``): a bigger table comes back in pages,
    with ``X-Total-Count``, ``X-Truncated`` and a ``Link: rel="next"`` header to the next one."""

    def __init__(
        self,
        request: Request,
        settings: SettingsDep,
        format: Annotated[Format, Query(description="json (default), csv or parquet")] = "json",
        limit: Annotated[
            int | None,
            Query(ge=1, le=2**53, description="Rows per answer (at most the server's max_rows, the default)"),
        ] = None,
        offset: Annotated[int, Query(ge=0, le=2**53, description="Rows to skip")] = 0,
    ) -> None:
        self.request, self.format, self.offset = request, format, offset
        self.limit = min(limit or settings.max_rows, settings.max_rows)
        self._asked, self._max_rows = limit, settings.max_rows

    def default_limit(self, rows: int) -> None:
        """A smaller page than ``max_rows`` for a caller who passes no ``limit`` (a table that
        grows with the store, such as the runs listing); one who asks for more still gets up to
        ``max_rows``."""
        if self._asked is None:
            self.limit = min(rows, self._max_rows)

    def respond(self, frame: pl.DataFrame) -> Response:
        return self.respond_page(frame.slice(self.offset, self.limit), frame.height)

    def respond_page(self, page: pl.DataFrame, total: int) -> Response:
        """``page``: rows ``offset`` to ``offset + limit`` of a table of ``total`` rows, already
        cut by the query (for tables too big to build whole for one page)."""
        response = frame_response(page, self.format)
        end = self.offset + page.height
        response.headers["X-Total-Count"] = str(total)
        response.headers["X-Truncated"] = "true" if end < total else "false"
        if end < total:
            # Relative (RFC 8288 resolves it against the request): the Host header is the
            # client's to choose, so an absolute link built from it could point anywhere.
            url = self.request.url.include_query_params(offset=end, limit=self.limit)
            response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
        return response


TableQuery = Annotated[TableParams, Depends()]


def table_response_doc(table: Table) -> dict[str, object]:
    """The 200 answer of a table route in OpenAPI: a row schema from the column catalogue (name,
    type, unit), a markdown table of the same for /docs, and the CSV / Parquet alternatives."""
    rows = "\n".join(
        f"| `{name}` | {table.column(name).type} | {table.column(name).unit or '-'} | "
        f"{table.column(name).description}{'' if name in table.always else ' (depends on the query)'} |"
        for name in table.names()
    )
    row_schema = {
        "type": "object",
        "required": list(table.always),
        "properties": {name: table.column(name).json_schema() for name in table.names()},
    }
    paging = {
        "X-Total-Count": "Rows in the whole table",
        "X-Truncated": "true when more pages follow",
        "Link": 'rel="next": the next page, when truncated',
    }
    return {
        "description": "Rows (JSON array; `?format=csv` or `parquet` for the same table). Columns:\n\n"
        "| column | type | unit | meaning |\n|---|---|---|---|\n" + rows,
        "headers": {name: {"description": text, "schema": {"type": "string"}} for name, text in paging.items()},
        "content": {
            "application/json": {"schema": {"type": "array", "items": row_schema}},
            "text/csv": {"schema": {"type": "string"}},
            PARQUET: {"schema": {"type": "string", "format": "binary"}},
        },
    }


def install_openapi(app: FastAPI) -> None:
    """Generate the OpenAPI document once, with each table route's columns filled in from the
    catalogue (routes return frames, so FastAPI cannot infer a schema from them)."""

    generate = app.openapi  # FastAPI's own: builds and caches app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for path, table in TABLES.items():
                operation = document["paths"].get(path, {}).get("get")
                if operation is not None:
                    operation["responses"]["200"] = table_response_doc(table)
            app.openapi_schema = document  # the object generate() cached, now complete
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
