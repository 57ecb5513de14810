"""Nsight Compute CSVs (``ncu --csv`` / ``nv-nsight-cu-cli --csv``) -> a kernel × metric table.

ncu writes the CSV to stdout, so captured files usually start with the program's own output
and ``==PROF==`` progress lines; the table starts at the first line whose first field is
``ID``.  Two layouts exist: the default *long* one (one row per kernel × metric, with
``Metric Name`` / ``Metric Unit`` / ``Metric Value``) and ``--page raw`` (*wide*: one column
per metric, units on the second row).  Columns vary by version: 2020.1 has ``Kernel Time``,
later ones ``Block Size`` / ``Grid Size`` / ``Device`` / ``CC`` and rule columns.

Profiling one metric per run (as NERSC's roofline scripts do) gives one file per metric,
each from a different process; the kernel ``ID`` (launch order) is what joins them.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from tracehouse.core.errors import BadTrace
from tracehouse.core.ncu_metrics import LONG_SCHEMA

# Columns that describe the kernel launch rather than a metric (all ncu versions seen).
ID_COLUMNS = (
    "ID",
    "Process ID",
    "Process Name",
    "Host Name",
    "Kernel Name",
    "Kernel Time",
    "Context",
    "Stream",
    "Block Size",
    "Grid Size",
    "Device",
    "CC",
    "Section Name",
)


def parse_ncu_csv(paths: list[Path] | Path) -> pl.DataFrame:
    """Read ncu CSVs of one run into one long table (kernel × metric), :data:`LONG_SCHEMA`."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise BadTrace("no ncu CSV files given")
    frames = [_read_one(p) for p in paths]
    merged = pl.concat(frames, how="vertical").unique(
        ["kernel_id", "metric_name", "metric_value"], keep="first", maintain_order=True
    )
    _check_same_run(merged)
    return merged.sort(["kernel_id", "metric_name"])


def _read_one(path: Path) -> pl.DataFrame:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadTrace(f"{path.name}: cannot read ({exc.strerror})") from None
    table = _table_text(text, path.name)
    try:
        raw = pl.read_csv(io.StringIO(table), infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError as exc:
        raise BadTrace(f"{path.name}: unreadable ncu CSV ({str(exc).splitlines()[0]})") from None
    if "Metric Name" in raw.columns and "Metric Value" in raw.columns:
        long = raw
    else:
        long = _melt_raw_page(raw, path.name)
    return _normalize(long, path.name)


def _table_text(text: str, name: str) -> str:
    """The CSV table without the program output and ``==PROF==`` lines around it."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(('"ID",', "ID,"))), None)
    if start is None:
        raise BadTrace(f"{name}: not Nsight Compute CSV output (no header line starting 'ID')")
    # ncu quotes every field; anything else after the header is interleaved program output.
    # (An unquoted table, e.g. re-saved by a spreadsheet, keeps all but ==PROF== lines.)
    quoted = lines[start].startswith('"')
    body = [
        line
        for line in lines[start + 1 :]
        if (line.startswith('"') if quoted else line and not line.startswith("==PROF=="))
    ]
    return "\n".join([lines[start], *body])


def _melt_raw_page(raw: pl.DataFrame, name: str) -> pl.DataFrame:
    """``--page raw``: one column per metric and a units row under the header -> long rows."""
    metrics = [c for c in raw.columns if c not in ID_COLUMNS]
    if not metrics or raw.height == 0:
        raise BadTrace(f'{name}: ncu CSV has neither "Metric Name" nor metric columns')
    first_id = raw["ID"][0]
    has_units = first_id is None or not first_id.strip()
    units = raw.row(0, named=True) if has_units else {}
    data = raw.slice(1) if has_units else raw
    ids = [c for c in raw.columns if c in ID_COLUMNS]
    long = data.unpivot(on=metrics, index=ids, variable_name="Metric Name", value_name="Metric Value")
    unit_map = pl.DataFrame(
        {"Metric Name": metrics, "Metric Unit": [units.get(m) for m in metrics]},
        schema={"Metric Name": pl.String, "Metric Unit": pl.String},
    )
    return long.join(unit_map, on="Metric Name", how="left")


def _number(col: str) -> pl.Expr:
    """ncu numbers: thousands separators ("1,234,567") and "n/a" (metric not collected)."""
    cleaned = pl.col(col).str.strip_chars().str.replace_all(",", "")
    return pl.when(cleaned.str.to_lowercase().is_in(["n/a", ""])).then(None).otherwise(cleaned)


def _dims(col: str, prefix: str) -> list[pl.Expr]:
    """``"(256, 1, 1)"`` -> three Int64 columns."""
    parts = pl.col(col).str.strip_chars("() ").str.split(",")
    return [_number_list(parts, i).alias(f"{prefix}_{axis}") for i, axis in enumerate("xyz")]


def _number_list(parts: pl.Expr, i: int) -> pl.Expr:
    return parts.list.get(i, null_on_oob=True).str.strip_chars().cast(pl.Int64, strict=False)


def _normalize(long: pl.DataFrame, name: str) -> pl.DataFrame:
    cols = set(long.columns)
    if "ID" not in cols or "Metric Name" not in cols:
        raise BadTrace(f"{name}: ncu CSV lacks the ID / Metric Name columns")

    def opt(col: str, alias: str) -> pl.Expr:
        return (pl.col(col) if col in cols else pl.lit(None, pl.String)).alias(alias)

    def num(col: str, alias: str) -> pl.Expr:
        return (_number(col) if col in cols else pl.lit(None, pl.String)).alias(alias)

    exprs = [
        _number("ID").cast(pl.Int64, strict=False).alias("kernel_id"),
        opt("Kernel Name", "kernel_name"),
        num("Process ID", "process_id"),
        opt("Device", "device"),
        opt("Context", "context"),
        opt("Stream", "stream"),
        opt("Metric Name", "metric_name"),
        opt("Metric Unit", "metric_unit"),
        num("Metric Value", "metric_value"),
        pl.lit(name).alias("source_file"),
    ]
    for col, prefix in (("Grid Size", "grid"), ("Block Size", "block")):
        exprs += _dims(col, prefix) if col in cols else [opt(col, f"{prefix}_{a}") for a in "xyz"]
    # Rule / section rows of the details page carry no metric; strings (device names) become null.
    named = pl.col("metric_name").is_not_null() & (pl.col("metric_name") != "")
    df = long.select(exprs).filter(named)
    out = df.select(
        [
            pl.col(c).cast(t, strict=c not in ("metric_value", "device", "context", "stream", "process_id")).alias(c)
            for c, t in LONG_SCHEMA.items()
        ]
    )
    if out.height == 0 or out["kernel_id"].null_count() == out.height:
        raise BadTrace(f"{name}: ncu CSV has a header but no kernel rows")
    return out


def _check_same_run(df: pl.DataFrame) -> None:
    """Files merged by kernel ID must describe the same launches, in the same order."""
    names = df.group_by("kernel_id").agg(
        pl.col("kernel_name").n_unique().alias("n"), pl.col("source_file").unique().alias("files")
    )
    bad = names.filter(pl.col("n") > 1)
    if bad.height:
        row = bad.sort("kernel_id").row(0, named=True)
        raise BadTrace(
            f"ncu files are not from the same run: kernel ID {row['kernel_id']} has "
            f"different names in {', '.join(sorted(row['files']))}"
        )
    dup = (
        df.group_by("kernel_id", "metric_name")
        .agg(pl.col("source_file").unique())
        .filter(pl.col("source_file").list.len() > 1)
    )
    if dup.height:
        row = dup.sort("kernel_id").row(0, named=True)
        raise BadTrace(
            f"metric {row['metric_name']} of kernel {row['kernel_id']} differs between "
            f"{', '.join(sorted(row['source_file']))}"
        )
