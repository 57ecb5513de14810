"""FastAPI dependencies: the session, the settings and the caller's token arrive by injection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from tracehouse.api.auth import authorize
from tracehouse.core.errors import InvalidField, NotFound
from tracehouse.core.settings import Settings
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import ApiToken


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# Read requests run in read-only sessions: the database refuses a write from a read route (or
# an analysis it calls), so a query can never change what it reports on.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.engine, read_only=request.method in READ_METHODS) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


# Ids are INTEGER columns: 32 bits on PostgreSQL, and SQLite's driver overflows past 64.
MAX_ID = 2**31 - 1
# The int parameters (path or query) that name a row, and what they name.
ID_PARAMS = {"run_id": "run", "job_id": "job", "baseline": "run", "other": "run", "reference": "run"}


def check_id(value: int, name: str) -> int:
    """``value`` if a row could have it as its id; else 422 naming the field."""
    if not 1 <= value <= MAX_ID:
        raise InvalidField(f"{name}: must be an id between 1 and {MAX_ID}")
    return value


def check_request_params(request: Request) -> None:
    """What SQLite would take and PostgreSQL refuse, answered the same on both: a NUL in a
    query or path value is a 422, and an id no row can have is a row that does not exist (404)
    before the database sees a number it cannot bind (a 500 on SQLite, a 503 on PostgreSQL)."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if "\x00" in str(value):
            raise InvalidField(f"{name[:40]}: NUL characters are not allowed")
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    for param in (*dependant.path_params, *dependant.query_params):
        what = ID_PARAMS.get(param.name)
        if what is None or param.field_info.annotation is not int:
            continue
        raw = request.path_params.get(param.name, request.query_params.get(param.name))
        if raw is None:
            continue  # not given: the route's own validation answers
        try:
            value = int(raw)
        except (TypeError, ValueError):
            continue  # not a number: the route's own validation answers 422
        if not 1 <= value <= MAX_ID:
            raise NotFound(f"{what} {value} does not exist")


def _require(scope: str) -> Callable[..., ApiToken | None]:
    def dependency(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        authorization: Annotated[str | None, Header()] = None,
    ) -> ApiToken | None:
        token = authorize(session, authorization, scope, public_read=settings.public_read)
        check_request_params(request)
        return token

    return dependency


ReadToken = Annotated[ApiToken | None, Depends(_require("read"))]
WriteToken = Annotated[ApiToken | None, Depends(_require("write"))]
AdminToken = Annotated[ApiToken | None, Depends(_require("admin"))]


def _uploader_id(
    request: Request, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> int | None:
    """The write token's id, from a session closed at once: an upload streams for minutes,
    and must not hold a pooled connection while it does."""
    with session_scope(request.app.state.engine) as session:
        token = authorize(session, authorization, "write", public_read=settings.public_read)
        return token.id if token else None


UploaderId = Annotated[int | None, Depends(_uploader_id)]
