"""Render an analysis frame for a terminal, a script (JSON) or a spreadsheet (CSV)."""

from __future__ import annotations

import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")


def frame_to_json(frame: pl.DataFrame) -> bytes:
    return orjson.dumps(frame.to_dicts(), option=orjson.OPT_NAIVE_UTC | orjson.OPT_INDENT_2)


def flat_for_csv(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV has no lists: list columns (e.g. ``run_ids``) become ``1,2,3`` text."""
    lists = [c for c, t in frame.schema.items() if isinstance(t, pl.List)]
    return frame.with_columns(pl.col(c).list.eval(pl.element().cast(pl.String)).list.join(",") for c in lists)


def render(frame: pl.DataFrame, fmt: str, title: str | None = None) -> str:
    if fmt == "json":
        return frame_to_json(frame).decode()
    if fmt == "csv":
        return flat_for_csv(frame).write_csv()
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col, justify="right" if frame[col].dtype.is_numeric() else "left",
                         overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(_cell(v) for v in row))
    console = Console(width=160, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return text if len(text) <= 90 else text[:87] + "..."
