"""FastAPI dependencies: the session, the settings and the caller's token arrive by injection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from tracehouse.api.auth import authorize
from tracehouse.core.settings import Settings
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import ApiToken


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _require(scope: str):  # type: ignore[no-untyped-def]
    def dependency(session: SessionDep, settings: SettingsDep,
                   authorization: Annotated[str | None, Header()] = None) -> ApiToken | None:
        return authorize(session, authorization, scope, public_read=settings.public_read)

    return dependency


ReadToken = Annotated[ApiToken | None, Depends(_require("read"))]
WriteToken = Annotated[ApiToken | None, Depends(_require("write"))]
AdminToken = Annotated[ApiToken | None, Depends(_require("admin"))]
