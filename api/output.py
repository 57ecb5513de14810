"""Render an analysis frame for a terminal, a script (JSON) or a spreadsheet (CSV).

JSON and CSV carry the frame as the analysis returned it (times in raw ns, shares as
fractions).  The terminal table is for a person: each column's unit is the one the column
catalogue (:mod:`tracehouse.api.columns`, also behind the OpenAPI document) gives it, or for a
column not catalogued yet, what its name says (:data:`UNIT_RULES`); numbers never wrap or get
cut (long text such as kernel names is shortened instead), and columns with one value in every
row move to a caption line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracehouse.api.columns import COLUMNS

FORMATS = ("table", "json", "csv")

# Column name pattern -> unit, first match wins.  Names follow the analyses' conventions:
# ``*_ns`` times, ``*_share`` fractions, ``*_pct`` percentages, ``*_bytes``, ``*_flops`` ...
UNIT_RULES: tuple[tuple[str, str], ...] = (
    (r"(^|_)ids?$|^(rank|device|stream|correlation|seq|first_seq|last_seq|call|step|position)$", "id"),
    (r"(^|_)ns$", "time_ns"),
    (r"(^|_)(time|wall)_s$", "time_s"),
    (r"_pct$", "percent"),
    (r"(^|_)(share|fraction)$", "fraction"),
    (r"_error$", "signed_fraction"),
    (r"(^|_)(speedup|normalized)$|_over_|_vs_", "ratio"),
    (r"bytes_(per_)?s$", "bandwidth"),
    (r"bytes(_per_call)?$", "bytes"),
    (r"^gflops_per_s$", "gflop_rate"),
    (r"flops_(per_)?s$", "flop_rate"),
    (r"flops$", "flops"),
)
_COMPILED = tuple((re.compile(pattern), unit) for pattern, unit in UNIT_RULES)

# The catalogue's units (api/columns/) as display units; others (GPU-hours, FLOP/byte ...)
# and unitless numbers print as plain numbers, unitless integers as ids.
CATALOGUE_UNITS = {
    "ns": "time_ns",
    "s": "time_s",
    "%": "percent",
    "fraction": "fraction",
    "ratio": "ratio",
    "bytes": "bytes",
    "bytes/s": "bandwidth",
    "FLOP": "flops",
    "FLOP/s": "flop_rate",
    "GFLOP/s": "gflop_rate",
    "count": "count",
    "tokens": "count",
    "pixels": "count",
}

# Width of a table written to a file or a pipe (a terminal's own width is used when it is one).
PIPE_WIDTH = 160
# A shortened text column keeps at least this many characters.
MIN_TEXT_WIDTH = 12


def frame_to_json(frame: pl.DataFrame) -> bytes:
    return orjson.dumps(frame.to_dicts(), option=orjson.OPT_NAIVE_UTC | orjson.OPT_INDENT_2)


def flat_for_csv(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV has no lists: list columns (e.g. ``run_ids``) become ``1,2,3`` text."""
    lists = [c for c, t in frame.schema.items() if isinstance(t, pl.List)]
    return frame.with_columns(pl.col(c).list.eval(pl.element().cast(pl.String)).list.join(",") for c in lists)


def render(frame: pl.DataFrame, fmt: str, title: str | None = None, source: str | None = None) -> str:
    """``source`` (e.g. ``database: sqlite:///...``) is a caption line of the table only."""
    if fmt == "json":
        return frame_to_json(frame).decode()
    if fmt == "csv":
        return flat_for_csv(frame).write_csv()
    return render_table(frame, title, [source] if source else [])


def database_caption(url: str) -> str:
    """``database: URL`` with any password masked, for a table read from a database the user
    did not name on the command line."""
    from sqlalchemy.engine import make_url

    return f"database: {make_url(url).render_as_string(hide_password=True)}"


def unit_of(column: str, dtype: pl.DataType) -> str:
    """The display unit of a column: a rule's unit for numbers, else what the dtype says."""
    if dtype == pl.Boolean:
        return "flag"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if isinstance(dtype, pl.List):
        return "list"
    if not dtype.is_numeric():
        return "text"
    if column in COLUMNS:
        unit = CATALOGUE_UNITS.get(COLUMNS[column].unit)
        if unit is None:
            unit = "id" if dtype.is_integer() and not COLUMNS[column].unit else "number"
        return "number" if unit == "count" and not dtype.is_integer() else unit
    for pattern, unit in _COMPILED:
        if pattern.search(column):
            return unit
    return "count" if dtype.is_integer() else "number"


def format_cell(unit: str, value: object) -> str:
    """One value as a person reads it: ``30.83 ms``, ``14.7%``, ``1.22×``, ``9,450``."""
    if value is None:
        return "-"
    formatter = _FORMATTERS.get(unit)
    return formatter(value) if formatter else str(value)


def render_table(frame: pl.DataFrame, title: str | None, captions: list[str]) -> str:
    units = {c: unit_of(c, t) for c, t in frame.schema.items()}
    cells = {c: [format_cell(units[c], v) for v in frame[c]] for c in frame.columns}
    if frame.height == 1 and frame.width > 2:
        # One row of many columns reads better (and fits) as ``column  value`` lines.
        units = {"column": "text", "value": "text"}
        cells = {"column": list(frame.columns), "value": [cells[c][0] for c in frame.columns]}
        frame = pl.DataFrame({"column": cells["column"], "value": cells["value"]})
    shown, same = _split_constant(frame)
    if same:
        captions = [f"same in every row: {', '.join(f'{c}={cells[c][0]}' for c in same)}", *captions]
    fixed = {c for c in shown if units[c] not in ("text", "list")}  # numbers, times, flags
    natural = {c: max([len(c), *(len(v) for v in cells[c])]) for c in shown}
    width = PIPE_WIDTH if not sys.stdout.isatty() else Console().width
    text_widths = _fit_text(natural, fixed, width - (3 * len(shown) + 1))
    table = Table(title=title)
    for c in shown:
        if c in fixed:
            # A number is never cut or wrapped: its column is as wide as its widest value.
            table.add_column(c, justify="right", no_wrap=True, overflow="ellipsis", min_width=natural[c])
        else:
            table.add_column(c, justify="left", no_wrap=True, overflow="ellipsis", max_width=text_widths[c])
    for i in range(frame.height):
        # Text, not markup: a kernel name's "[...]" is part of the name.
        table.add_row(*(Text(cells[c][i]) for c in shown))
    needed = sum(natural[c] if c in fixed else text_widths[c] for c in shown) + 3 * len(shown) + 1
    console = Console(width=max(width, needed), record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    # Captions go below as whole lines: a path or a list of values is not wrapped at the table's edge.
    return "".join(line.rstrip() + "\n" for line in [*capture.get().splitlines(), *captions])


def _split_constant(frame: pl.DataFrame) -> tuple[list[str], list[str]]:
    """Columns that differ between rows, and those with one value in every row (hidden, since
    they say nothing about any one row).  One row, or rows that are all alike, show everything."""
    if frame.height < 2:
        return list(frame.columns), []
    same = [c for c in frame.columns if frame[c].n_unique() == 1]
    if len(same) == len(frame.columns):
        return list(frame.columns), []
    return [c for c in frame.columns if c not in same], same


def _fit_text(natural: dict[str, int], fixed: set[str], room: int) -> dict[str, int]:
    """Share what the number columns leave among the text columns: narrow ones keep their width,
    the widest are shortened to an equal share (at least :data:`MIN_TEXT_WIDTH`)."""
    text = sorted((c for c in natural if c not in fixed), key=lambda c: natural[c])
    room -= sum(natural[c] for c in fixed)
    widths: dict[str, int] = {}
    for i, c in enumerate(text):
        share = room // (len(text) - i) if room > 0 else 0
        widths[c] = min(natural[c], max(share, MIN_TEXT_WIDTH, min(len(c), natural[c])))
        room -= widths[c]
    return widths


def _number(value: float) -> str:
    """Four significant digits, thousands separated: 501.6, 30.83, 2.532, 0.00123, 12,345."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    if magnitude >= 1:
        return f"{value:.3f}"
    return "0" if value == 0 else f"{value:.3g}"


def _scaled(value: float, steps: tuple[tuple[float, str], ...]) -> str:
    """``value`` in the largest unit of ``steps`` (ascending ``(factor, suffix)``) it reaches."""
    factor, suffix = steps[0]
    for step_factor, step_suffix in steps:
        if abs(value) >= step_factor:
            factor, suffix = step_factor, step_suffix
    return f"{_number(value / factor)} {suffix}".rstrip()


_TIME_STEPS = ((1.0, "ns"), (1e3, "µs"), (1e6, "ms"), (1e9, "s"))
_SI = ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"), (1e15, "P"))


def _si(value: float, unit: str) -> str:
    return _scaled(value, tuple((f, f"{p}{unit}") for f, p in _SI))


def _datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "id": str,
    "time_ns": lambda v: _scaled(v, _TIME_STEPS),
    "time_s": lambda v: _scaled(v * 1e9, _TIME_STEPS),
    "percent": lambda v: f"{v:.1f}%",
    "fraction": lambda v: f"{v * 100:.1f}%",
    "signed_fraction": lambda v: f"{v * 100:+.1f}%",
    "ratio": lambda v: f"{_number(v)}×",
    "bandwidth": lambda v: _si(v, "B/s"),
    "bytes": lambda v: _si(v, "B"),
    "gflop_rate": lambda v: f"{_number(v)} GFLOP/s",
    "flop_rate": lambda v: _si(v, "FLOP/s"),
    "flops": lambda v: _si(v, "FLOP"),
    "count": lambda v: f"{v:,}",
    "number": _number,
    "flag": lambda v: "yes" if v else "no",
    "datetime": _datetime,
    "list": lambda v: ",".join(str(x) for x in v),
    "text": str,
}
