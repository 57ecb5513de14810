"""Turning analysis frames into page parts: the Jinja environment, number formatting, charts
(a plotly figure with its data table and the REST query behind it) and server-side
downsampling.  Nothing here queries the database."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import plotly.graph_objects as go
import polars as pl
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from tracehouse.api.columns import COLUMNS

PREFIX = "/ui"
REST_PREFIX = f"{PREFIX}/rest"  # the cookie-authenticated window onto GET /v1/... (access.py)
COOKIE = "tracehouse_token"  # HttpOnly, SameSite=Strict, path /ui: the read token a user signed in with
MAX_POINTS = 2000  # a chart with more points than this is downsampled on the server
TABLE_ROWS = 500  # a chart's data table shows at most this many rows; the REST link has all


def rest_path(path: str, **params: Any) -> str:
    """``/v1/...?k=v`` with list values repeated and None left out."""
    pairs = [
        (k, v)
        for k, value in params.items()
        if value is not None
        for v in (value if isinstance(value, list | tuple) else [value])
    ]
    return f"{path}?{urlencode(pairs)}" if pairs else path


@dataclass
class Chart:
    """One figure on a page: ``key`` names its div (``chart-<key>``) for the browser tests."""

    key: str
    title: str
    figure: go.Figure | None  # None: nothing to draw (the note says why)
    frame: pl.DataFrame
    rest: str  # the REST query that answers with ``frame``'s rows
    note: str = ""
    caption: str = ""
    total_rows: int | None = None  # rows before downsampling, when downsampled

    @classmethod
    def of(
        cls,
        key: str,
        title: str,
        frame: pl.DataFrame,
        draw: Callable[[pl.DataFrame], go.Figure] | None,
        rest: str,
        *,
        empty: str,
        caption: str = "",
    ) -> Chart:
        """``frame`` drawn by ``draw`` (None: a table only), or ``empty`` said where it has no rows."""
        figure = draw(frame) if draw is not None and frame.height else None
        return cls(key, title, figure, frame, rest, note="" if frame.height else empty, caption=caption)

    def __post_init__(self) -> None:
        if self.figure is not None:
            self.figure.update_layout(
                margin={"l": 60, "r": 20, "t": 30, "b": 60}, height=self.figure.layout.height or 380
            )

    @property
    def figure_json(self) -> Markup:
        # "</" inside a <script> would end it early; JSON allows "<\/" for the same text.
        assert self.figure is not None
        return Markup(self.figure.to_json().replace("</", "<\\/"))

    @property
    def downloads(self) -> dict[str, str]:
        sep = "&" if "?" in self.rest else "?"
        return {"JSON": self.rest, "CSV": f"{self.rest}{sep}format=csv", "Parquet": f"{self.rest}{sep}format=parquet"}


@dataclass
class Notice:
    """A message shown on a page in place of what could not be drawn."""

    text: str
    kind: str = "info"
    extra: dict[str, str] = field(default_factory=dict)


def downsample(frame: pl.DataFrame, y: str, limit: int = MAX_POINTS) -> pl.DataFrame:
    """At most about ``limit`` rows of an ordered series, keeping each bucket's lowest and
    highest ``y`` (min-max decimation: spikes and dips survive, unlike taking every n-th row)."""
    if frame.height <= limit:
        return frame
    buckets = max(limit // 2, 1)
    indexed = frame.with_row_index("_row").with_columns(
        _bucket=(pl.col("_row") * buckets // frame.height), _y=pl.col(y).fill_null(0)
    )
    keep = indexed.group_by("_bucket").agg(
        lo=pl.col("_row").get(pl.col("_y").arg_min()), hi=pl.col("_row").get(pl.col("_y").arg_max())
    )
    rows = pl.concat([keep["lo"], keep["hi"]]).unique()
    return indexed.filter(pl.col("_row").is_in(rows.implode())).sort("_row").drop("_row", "_bucket", "_y")


def fmt_number(value: Any) -> str:
    """A cell as the page shows it: thousands separators on integers, 4 significant digits on
    other numbers, ``-`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or math.isinf(value):
            return str(value)
        return f"{value:,.4g}" if abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list):
        return ", ".join(fmt_number(v) for v in value)
    return str(value)


def column_title(name: str) -> str:
    column = COLUMNS.get(name)
    return f"{column.description}{f' [{column.unit}]' if column.unit else ''}" if column else name


def is_numeric(frame: pl.DataFrame, name: str) -> bool:
    return frame.schema[name].is_numeric()


def short(text: Any, width: int = 48) -> str:
    """Labels for chart axes: kernel names run to kilobytes of C++ templates."""
    text = "(none)" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


@cache
def environment() -> Environment:
    """Built on first use, not at import (the project creates nothing at import time)."""
    env = Environment(
        loader=FileSystemLoader(str(files("tracehouse.api.dashboard") / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_number
    env.filters["short"] = short
    env.globals.update(
        prefix=PREFIX, rest_prefix=REST_PREFIX, column_title=column_title, is_numeric=is_numeric, TABLE_ROWS=TABLE_ROWS
    )
    return env


def query_with(request: Request, **changes: Any) -> str:
    """This page's query string with ``changes`` applied (None drops a key): sort and page links."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    added = [(k, v) for k, v in changes.items() if v is not None]
    return "?" + urlencode(kept + added)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            public_read=settings.public_read,
            with_query=lambda **c: query_with(request, **c),
            signed_in=bool(request.cookies.get(COOKIE)),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)
