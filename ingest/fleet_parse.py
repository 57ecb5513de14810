"""Fleet job records parsed: CSV/JSON job tables, Slurm ``sacct --parsable2`` and
``nvidia-smi --query-gpu=timestamp,index,memory.used,memory.total,utilization.gpu --format=csv``
logs.  Parsers are pure (text -> polars) and vectorised, so a million rows parse in seconds;
``fleet_import.import_fleet`` writes what they return.

Times without an offset (sacct, nvidia-smi) are taken as UTC.  Utilisations are fractions;
a CSV/JSON column with any value above 1 is read as percent.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl

from tracehouse.core.errors import BadInput

FORMATS = ("auto", "csv", "json", "sacct", "nvidia-smi")
DEFAULT_MODEL_PATTERN = r"model=([\w.-]+)"
DEFAULT_PHASE_PATTERN = r"phase=(training|inference)"
PHASES = ("training", "inference")
JOB_COLUMNS = (
    "job_id",
    "cluster",
    "host",
    "model_name",
    "phase",
    "gpu_count",
    "gpu_type",
    "start",
    "end",
    "mean_mem_util",
    "peak_mem_util",
    "sm_util",
)
# Names real exports use for the same thing; the first match wins.
ALIASES = {
    "job_id": ("job_id", "jobid", "id", "job"),
    "cluster": ("cluster",),
    "host": ("host", "node", "nodelist"),
    "model_name": ("model_name", "model"),
    "phase": ("phase", "kind"),
    "gpu_count": ("gpu_count", "gpus", "num_gpus", "n_gpus"),
    "gpu_type": ("gpu_type", "gpu", "gpu_model"),
    "start": ("start", "start_time", "started_at"),
    "end": ("end", "end_time", "ended_at"),
    "mean_mem_util": ("mean_mem_util", "mem_util", "memory_util", "mean_memory_util"),
    "peak_mem_util": ("peak_mem_util", "max_mem_util", "peak_memory_util"),
    "sm_util": ("sm_util", "gpu_util"),
}
MAX_REPORTED = 1000  # rejected lines kept in the report; the count is always exact


@dataclass
class Parsed:
    """Good rows (``JOB_COLUMNS`` + ``line``) or, for nvidia-smi, samples; and the rejects."""

    format: str
    rows: pl.DataFrame
    rejects: list[tuple[int, str]] = field(default_factory=list)
    rejected: int = 0


def detect_format(text: str, name: str = "") -> str:
    head = text.lstrip()[:4096]
    first = head.splitlines()[0] if head else ""
    if head.startswith(("[", "{")) or name.endswith((".json", ".jsonl")):
        return "json"
    if "|" in first and "jobid" in first.lower():
        return "sacct"
    if (first.lower().startswith("timestamp") and "memory.used" in first) or re.match(r"\d{4}/\d\d/\d\d \d", first):
        return "nvidia-smi"
    if "," in first:
        return "csv"
    raise BadInput(f"{name or 'input'}: cannot tell the format (not CSV, JSON, sacct or nvidia-smi); pass --format")


def parse(
    text: str,
    fmt: str = "auto",
    *,
    name: str = "",
    cluster: str | None = None,
    model_pattern: str = DEFAULT_MODEL_PATTERN,
    phase_pattern: str = DEFAULT_PHASE_PATTERN,
) -> Parsed:
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    fmt = detect_format(text, name) if fmt == "auto" else fmt
    if fmt == "nvidia-smi":
        return parse_nvidia_smi(text, name)
    raw = {"csv": _csv_table, "json": _json_table}.get(fmt)
    frame = raw(text, name) if raw else _sacct_table(text, name, model_pattern, phase_pattern)
    if cluster is not None:
        frame = frame.with_columns(cluster=pl.coalesce(pl.col("cluster"), pl.lit(cluster)))
    return _validate(frame, fmt, name)


def _csv_table(text: str, name: str) -> pl.DataFrame:
    try:
        frame = pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=True)
    except Exception as exc:  # polars raises several kinds for broken CSV
        raise BadInput(f"{name}: not a readable CSV: {exc}") from exc
    # Line numbers as a user sees them: line 1 is the header.
    return _canonical(frame, name).with_columns(line=pl.int_range(2, frame.height + 2, dtype=pl.Int64))


def _json_table(text: str, name: str) -> pl.DataFrame:
    stripped = text.lstrip()
    try:
        if stripped.startswith(("[", "{")) and not _is_json_lines(stripped):
            data = orjson.loads(text)
            records = data.get("jobs", []) if isinstance(data, dict) else data
            lines = list(range(1, len(records) + 1))  # record number within the array
        else:
            pairs = [(i, orjson.loads(s)) for i, s in enumerate(text.splitlines(), 1) if s.strip()]
            lines, records = [p[0] for p in pairs], [p[1] for p in pairs]
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{name}: not valid JSON: {exc}") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadInput(f'{name}: JSON must be a list of job objects, {{"jobs": [...]}} or JSON lines')
    keys = sorted({k for r in records for k in r})
    columns = {k: [None if r.get(k) is None else str(r[k]) for r in records] for k in keys}
    frame = pl.DataFrame(columns, schema=dict.fromkeys(keys, pl.String))
    return _canonical(frame, name).with_columns(line=pl.Series(lines, dtype=pl.Int64))


def _is_json_lines(text: str) -> bool:
    first = text.split("\n", 1)[0].strip()
    return first.startswith("{") and first.endswith("}") and "\n" in text.strip()


def _canonical(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    lower = {c.strip().lower(): c for c in frame.columns}
    picked = {}
    for col, names in ALIASES.items():
        src = next((lower[n] for n in names if n in lower), None)
        picked[col] = pl.col(src).str.strip_chars() if src else pl.lit(None, pl.String)
    missing = [c for c in ("job_id", "model_name", "gpu_count", "start", "end") if picked[c].meta.is_literal()]
    if missing:
        raise BadInput(f"{name}: no column for {', '.join(missing)} (have {', '.join(frame.columns)})")
    return frame.select(**picked)


def _sacct_table(text: str, name: str, model_pattern: str, phase_pattern: str) -> pl.DataFrame:
    try:
        frame = pl.read_csv(
            io.StringIO(text), separator="|", infer_schema=False, quote_char=None, truncate_ragged_lines=True
        )
    except Exception as exc:
        raise BadInput(f"{name}: not readable sacct --parsable2 output: {exc}") from exc
    cols = {c.lower(): c for c in frame.columns}
    need = [c for c in ("JobID", "JobName", "Start", "End", "AllocTRES") if c.lower() not in cols]
    if need:
        raise BadInput(
            f"{name}: sacct output lacks {', '.join(need)} (run sacct --parsable2 "
            f"--format=JobID,JobName,Cluster,NodeList,Start,End,AllocTRES,Comment)"
        )

    def col(name: str) -> pl.Expr:
        return pl.col(cols[name.lower()]) if name.lower() in cols else pl.lit(None, pl.String)

    text_col = pl.concat_str(col("JobName"), col("Comment"), separator=" ", ignore_nulls=True)
    tres = col("AllocTRES")
    frame = frame.with_columns(line=pl.int_range(2, frame.height + 2, dtype=pl.Int64))
    # Job steps (123.batch, 123.extern, 123.0) repeat their job's GPUs: only allocations count.
    frame = frame.filter(~col("JobID").str.contains(r"\."))
    phase = pl.coalesce(
        text_col.str.extract(phase_pattern, 1),
        pl.when(text_col.str.contains(r"(?i)train|pretrain|finetune"))
        .then(pl.lit("training"))
        .when(text_col.str.contains(r"(?i)infer|serv|generat"))
        .then(pl.lit("inference")),
    )
    return frame.select(
        job_id=col("JobID"),
        cluster=col("Cluster"),
        host=col("NodeList"),
        model_name=text_col.str.extract(model_pattern, 1),
        phase=phase,
        gpu_count=pl.coalesce(tres.str.extract(r"gres/gpu:[^=,]+=(\d+)", 1), tres.str.extract(r"gres/gpu=(\d+)", 1)),
        gpu_type=tres.str.extract(r"gres/gpu:([^=,]+)=", 1),
        start=col("Start"),
        end=col("End"),
        mean_mem_util=pl.lit(None, pl.String),
        peak_mem_util=pl.lit(None, pl.String),
        sm_util=pl.lit(None, pl.String),
        line=pl.col("line"),
    )


def _timestamp(expr: pl.Expr) -> pl.Expr:
    """ISO 8601 with or without 'T', fraction and offset; slashes as nvidia-smi writes them."""
    s = expr.str.replace_all("/", "-").str.replace("T", " ").str.replace(r"Z$", "+00:00")
    with_offset = s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%:z", strict=False, time_zone="UTC")
    naive = s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC")
    date_only = s.str.to_datetime("%Y-%m-%d %H:%M", strict=False).dt.replace_time_zone("UTC")
    return pl.coalesce(with_offset, naive, date_only).dt.cast_time_unit("us")


def _fraction(frame: pl.DataFrame, col: str) -> pl.Expr:
    values = frame[col].str.strip_chars_end("% ").cast(pl.Float64, strict=False)
    peak = values.max()
    scale = 100.0 if isinstance(peak, float) and peak > 1.0 else 1.0
    return (pl.col(col).str.strip_chars_end("% ").cast(pl.Float64, strict=False) / scale).alias(col)


def _validate(frame: pl.DataFrame, fmt: str, name: str) -> Parsed:
    typed = frame.with_columns(
        _fraction(frame, "mean_mem_util"),
        _fraction(frame, "peak_mem_util"),
        _fraction(frame, "sm_util"),
        gpu_count=pl.col("gpu_count").cast(pl.Int64, strict=False),
        phase=pl.col("phase").str.to_lowercase(),
        start=_timestamp(pl.col("start")),
        end=_timestamp(pl.col("end")),
    )
    checks = [  # (bad when, reason): the first that applies is the row's reason
        (pl.col("job_id").is_null() | (pl.col("job_id") == ""), "no job id"),
        (pl.col("model_name").is_null() | (pl.col("model_name") == ""), "no model name"),
        (~pl.col("phase").is_in(PHASES) | pl.col("phase").is_null(), "phase is not training or inference"),
        (pl.col("gpu_count").is_null() | (pl.col("gpu_count") <= 0), "no GPU count (or not a positive integer)"),
        (pl.col("start").is_null(), "start is not a timestamp"),
        (pl.col("end").is_null(), "end is not a timestamp (job still running?)"),
        (pl.col("end") < pl.col("start"), "end before start"),
        *[
            (
                frame[c].is_not_null() & (frame[c] != "") & (pl.col(c).is_null() | (pl.col(c) < 0) | (pl.col(c) > 1)),
                f"{c} is not a utilisation in 0..1 or 0..100%",
            )
            for c in ("mean_mem_util", "peak_mem_util", "sm_util")
        ],
    ]
    reason = pl.lit(None, pl.String)
    for check, why in reversed(checks):
        reason = pl.when(check.fill_null(False)).then(pl.lit(why)).otherwise(reason)
    typed = typed.with_columns(reason=reason)
    bad = typed.filter(pl.col("reason").is_not_null())
    good = (
        typed.filter(pl.col("reason").is_null())
        .drop("reason")
        .with_columns(gpu_hours=pl.col("gpu_count") * (pl.col("end") - pl.col("start")).dt.total_microseconds() / 3.6e9)
    )
    rejects = list(
        zip(bad["line"].head(MAX_REPORTED).to_list(), bad["reason"].head(MAX_REPORTED).to_list(), strict=True)
    )
    if good.is_empty():
        detail = "; ".join(f"line {ln}: {why}" for ln, why in rejects[:5]) or "no rows"
        raise BadInput(f"{name}: nothing to import as {fmt} ({detail})")
    return Parsed(fmt, good, rejects, bad.height)


def parse_nvidia_smi(text: str, name: str = "") -> Parsed:
    """Samples ``timestamp, index, mem_util, sm_util`` (fractions); header and units optional."""
    lines = text.splitlines()
    has_header = bool(lines) and lines[0].lower().lstrip().startswith("timestamp")
    body = lines[1:] if has_header else lines
    frame = pl.DataFrame({"raw": body}, schema={"raw": pl.String}).with_columns(
        line=pl.int_range(2 if has_header else 1, len(body) + (2 if has_header else 1), dtype=pl.Int64)
    )
    frame = frame.filter(pl.col("raw").str.strip_chars() != "")
    parts = pl.col("raw").str.split(",")

    def num(i: int) -> pl.Expr:
        return parts.list.get(i, null_on_oob=True).str.replace_all(r"[^0-9.]", "").cast(pl.Float64, strict=False)

    typed = frame.with_columns(
        ts=_timestamp(parts.list.get(0, null_on_oob=True).str.strip_chars()),
        index=num(1).cast(pl.Int64, strict=False),
        used=num(2),
        total=num(3),
        util=num(4),
    )
    reason = (
        pl.when(parts.list.len() < 5)
        .then(pl.lit("expected 5 fields: timestamp, index, memory.used, memory.total, utilization.gpu"))
        .when(pl.col("ts").is_null())
        .then(pl.lit("timestamp is not a time"))
        .when(
            pl.col("used").is_null()
            | pl.col("total").is_null()
            | (pl.col("total") <= 0)
            | (pl.col("used") > pl.col("total"))
        )
        .then(pl.lit("memory.used/memory.total not readable"))
        .when(pl.col("util").is_null() | (pl.col("util") > 100))
        .then(pl.lit("utilization.gpu not a percentage"))
    )
    typed = typed.with_columns(reason=reason)
    bad = typed.filter(pl.col("reason").is_not_null())
    good = typed.filter(pl.col("reason").is_null()).select(
        "line", "ts", "index", mem=pl.col("used") / pl.col("total"), sm=pl.col("util") / 100
    )
    if good.is_empty():
        detail = "; ".join(f"line {ln}: {w}" for ln, w in bad.select("line", "reason").head(5).iter_rows())
        raise BadInput(f"{name}: nothing to import as nvidia-smi ({detail or 'no rows'})")
    rejects = list(bad.select("line", "reason").head(MAX_REPORTED).iter_rows())
    return Parsed("nvidia-smi", good, rejects, bad.height)


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from exc
