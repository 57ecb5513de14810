"""Who may read the dashboard, and the files it serves.

Read access follows the API exactly: the same ``authorize`` check, with the token taken from
the ``Authorization`` header or, for a browser, from a cookie set once on the login form
(HttpOnly, so page scripts cannot read it; SameSite=Strict, so no other site's page can make
the browser send it).  On a ``--public-read`` server no token is needed.

``/ui/rest/v1/...`` hands a GET to the REST route of the same path inside this process with
the cookie's token as the bearer header, so every "REST query" and download link on a page
works from the browser while the dashboard itself only ever reads.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from tracehouse.api.auth import authorize
from tracehouse.api.dashboard.render import COOKIE, PREFIX, page
from tracehouse.api.deps import SessionDep, SettingsDep
from tracehouse.core.errors import Forbidden, NotFound, TracehouseError, Unauthorized

COOKIE_DAYS = 30
STATIC = {"dashboard.css": "text/css"}


def bearer(request: Request) -> str | None:
    """The caller's ``Authorization`` header, or one made from the sign-in cookie."""
    header = request.headers.get("authorization")
    token = request.cookies.get(COOKIE)
    return header or (f"Bearer {token}" if token else None)


def require_read(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    authorize(session, bearer(request), "read", public_read=settings.public_read)


class DashboardRoute(APIRoute):
    """Errors become pages: a reader without a valid token is sent to the login form, and any
    other project error (an unknown run, a bad filter) is shown with its status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (Unauthorized, Forbidden):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)
            except TracehouseError as exc:
                return page(request, "error.html", status=exc.status, error=exc, uses_charts=False)

        return guarded


# Pages and data: every route behind the read check.
reader = APIRouter(
    prefix=PREFIX, route_class=DashboardRoute, dependencies=[Depends(require_read)], include_in_schema=False
)
# The login form and static files: open to all.
public = APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: never an open redirect to another site."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        return target
    return f"{PREFIX}/"


@public.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html", next=_safe_next(next), uses_charts=False)


@public.post("/login")
def login(
    request: Request, session: SessionDep, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    token = token.strip()
    try:
        authorize(session, f"Bearer {token}", "read", public_read=False)
    except (Unauthorized, Forbidden) as exc:
        return page(request, "login.html", status=401, next=_safe_next(next), error=exc.message, uses_charts=False)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_DAYS * 86400,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@public.post("/logout")
def logout() -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


@public.get("/static/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js from the installed plotly package: the browser fetches nothing from outside."""
    path = files("plotly") / "package_data" / "plotly.min.js"
    return FileResponse(str(path), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@public.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFound(f"no static file {name!r}")
    path = files("tracehouse.api.dashboard") / "static" / name
    return FileResponse(str(path), media_type=STATIC[name], headers={"Cache-Control": "max-age=3600"})


class Forwarded(Response):
    """Runs the app on a rewritten scope: the REST route's own answer streams straight back
    (a raw trace is never held in memory), with its status, headers and error shape."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.inner = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["app"](self.inner, receive, send)


@reader.get("/rest/v1/{path:path}")
def rest(path: str, request: Request) -> Response:
    target = f"/v1/{path}"  # the REST route of the same path, under /v1 only
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"authorization", b"cookie")]
    if (auth := bearer(request)) is not None:
        headers.append((b"authorization", auth.encode()))
    keep = ("type", "asgi", "http_version", "scheme", "server", "client", "root_path", "state")
    inner = {k: request.scope[k] for k in keep if k in request.scope}
    inner.update(
        method="GET",
        path=target,
        raw_path=quote(target).encode(),
        headers=headers,
        query_string=request.scope.get("query_string", b""),
    )
    return Forwarded(inner)
