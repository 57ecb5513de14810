"""Fleet job records into ``fleet_job``: CSV/JSON job tables, Slurm ``sacct --parsable2`` and
``nvidia-smi --query-gpu=timestamp,index,memory.used,memory.total,utilization.gpu --format=csv``
logs.  Parsers are pure (text -> polars) and vectorised, so a million rows parse in seconds;
``import_fleet`` writes one file as one import in the caller's transaction.

Times without an offset (sacct, nvidia-smi) are taken as UTC.  Utilisations are fractions;
a CSV/JSON column with any value above 1 is read as percent.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from tracehouse.core.errors import BadInput
from tracehouse.ingest.load import bulk_insert
from tracehouse.schema.models import FleetImport, FleetJob, FleetRollup, Model

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


def import_fleet(session: Session, parsed: Parsed, source: str, *, host: str | None = None) -> dict:
    """Write one parsed file as one import (the caller's transaction) and return its report."""
    record = FleetImport(
        source=source,
        format=parsed.format,
        rows_imported=0,
        rows_rejected=parsed.rejected,
        created_at=datetime.now(UTC),
    )
    session.add(record)
    session.flush()
    extra = (
        _apply_samples(session, parsed.rows, host)
        if parsed.format == "nvidia-smi"
        else _insert_jobs(session, parsed.rows, record.id, host)
    )
    imported = parsed.rows.height
    report = {
        "import_id": record.id,
        "source": source,
        "format": parsed.format,
        "rows_imported": imported,
        "rows_rejected": parsed.rejected,
        "rejected": [{"line": ln, "reason": why} for ln, why in parsed.rejects],
        **extra,
    }
    record.rows_imported = imported
    record.report = orjson.dumps({k: report[k] for k in ("rejected", *extra)}).decode()
    return report


def _model_ids(session: Session, names: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(names), 500):  # stay under bound-parameter limits
        chunk = names[i : i + 500]
        found |= dict(session.execute(select(Model.name, Model.id).where(Model.name.in_(chunk))).all())
    return found


def _insert_jobs(session: Session, rows: pl.DataFrame, import_id: int, host: str | None) -> dict:
    names = rows["model_name"].unique().sort().to_list()
    ids = _model_ids(session, names)
    lookup = pl.DataFrame(
        {"model_name": list(ids), "model_id": list(ids.values())},
        schema={"model_name": pl.String, "model_id": pl.Int64},
    )
    out = rows.join(lookup, on="model_name", how="left").with_columns(import_id=pl.lit(import_id, pl.Int64))
    if host is not None:
        out = out.with_columns(host=pl.coalesce(pl.col("host"), pl.lit(host)))
    bulk_insert(
        session,
        FleetJob.__tablename__,
        _for_db(session, out.select(*(c for c in JOB_COLUMNS), "model_id", "gpu_hours", "import_id")),
    )
    replaced, old_months = _replace_earlier_copies(session, import_id)
    refresh_rollup(session, sorted(set(rows["start"].dt.strftime("%Y-%m").unique().to_list()) | old_months))
    return {"unknown_models": [n for n in names if n not in ids], "jobs_replaced": replaced}


UTIL_COLUMNS = ("mean_mem_util", "peak_mem_util", "sm_util")


def _replace_earlier_copies(session: Session, import_id: int) -> tuple[int, set[str]]:
    """Accounting dumps overlap (sacct run daily over a week's window), so a job already stored
    by an earlier import (same cluster, job id and start) is replaced by this import's copy,
    which knows its latest end time.
    Utilisation the earlier copy got from nvidia-smi logs is kept where the new copy has none.
    Returns the number replaced and the months their old copies counted in."""
    new, old = aliased(FleetJob), FleetJob
    # A job id alone is not a job: two sources (or Slurm after a reset) reuse ids.  Cluster, id
    # and start together are, and the start of a job does not change between dumps.
    same_job = and_(
        new.import_id == import_id,
        new.job_id == old.job_id,
        new.start == old.start,
        new.cluster.is_not_distinct_from(old.cluster),
    )
    earlier = session.execute(
        select(old.id, old.job_id, old.cluster, old.start, *(getattr(old, c) for c in UTIL_COLUMNS)).where(
            old.import_id != import_id, exists().where(same_job)
        )
    ).all()
    for row in earlier:
        for col in UTIL_COLUMNS:
            if getattr(row, col) is not None:
                session.execute(
                    update(FleetJob)
                    .where(
                        FleetJob.import_id == import_id,
                        FleetJob.job_id == row.job_id,
                        FleetJob.start == row.start,
                        FleetJob.cluster.is_not_distinct_from(row.cluster),
                        getattr(FleetJob, col).is_(None),
                    )
                    .values({col: getattr(row, col)})
                )
    ids = [row.id for row in earlier]
    for i in range(0, len(ids), 500):  # stay under bound-parameter limits
        session.execute(delete(FleetJob).where(FleetJob.id.in_(ids[i : i + 500])))
    months = {_as_utc(row.start).strftime("%Y-%m") for row in earlier}
    return len(ids), months


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _for_db(session: Session, frame: pl.DataFrame) -> pl.DataFrame:
    """Datetimes as the text each backend stores: SQLAlchemy's naive-UTC form on SQLite (so ORM
    reads and comparisons agree), with an explicit offset for PostgreSQL's COPY."""
    fmt = "%Y-%m-%d %H:%M:%S.%6f" + ("+00:00" if session.get_bind().dialect.name == "postgresql" else "")
    return frame.with_columns(pl.col(c).dt.convert_time_zone("UTC").dt.strftime(fmt) for c in ("start", "end"))


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    lo = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    return lo, (lo + timedelta(days=32)).replace(day=1)


def refresh_rollup(session: Session, months: list[str]) -> None:
    """Recompute the rollup rows of the given months from ``fleet_job`` (index on ``start``)."""
    j = FleetJob
    hours = j.gpu_hours

    def fsum(e: SQLColumnExpression[Any]) -> ColumnElement[Any]:
        return func.coalesce(func.sum(e), 0.0)

    def weight(c: SQLColumnExpression[Any]) -> ColumnElement[Any]:  # GPU-hours that have the figure
        return fsum(case((c.is_not(None), hours)))

    for month in sorted(months):
        lo, hi = _month_bounds(month)
        session.execute(delete(FleetRollup).where(FleetRollup.month == month))
        sel = (
            select(
                literal(month),
                j.model_name,
                j.cluster,
                j.gpu_type,
                j.phase,
                func.count(),
                fsum(hours),
                fsum(j.gpu_count * 1.0),
                fsum(j.gpu_count * j.gpu_count * 1.0),
                fsum(j.gpu_count * hours),
                fsum(hours * j.mean_mem_util),
                weight(j.mean_mem_util),
                fsum(hours * j.peak_mem_util),
                weight(j.peak_mem_util),
                fsum(hours * j.sm_util),
                weight(j.sm_util),
            )
            .where(j.start >= lo, j.start < hi)
            .group_by(j.model_name, j.cluster, j.gpu_type, j.phase)
        )
        cols = [
            "month",
            "model_name",
            "cluster",
            "gpu_type",
            "phase",
            "jobs",
            "gpu_hours",
            "gpu_sum",
            "gpu_sq_sum",
            "gpu_x_hours",
            "mem_hours",
            "mem_weight",
            "peak_hours",
            "peak_weight",
            "sm_hours",
            "sm_weight",
        ]
        session.execute(insert(FleetRollup).from_select(cols, sel))


def _apply_samples(session: Session, samples: pl.DataFrame, host: str | None) -> dict:
    """Mean and peak memory utilisation (and mean SM utilisation) of the samples inside each
    job's window, onto the jobs; all GPU indices in the log count (it is one host's log)."""
    lo, hi = samples["ts"].min(), samples["ts"].max()
    stmt = select(FleetJob.id, FleetJob.start, FleetJob.end).where(FleetJob.start <= hi, FleetJob.end >= lo)
    if host is not None:
        stmt = stmt.where(FleetJob.host == host)
    found = session.execute(stmt).all()
    jobs = pl.DataFrame(
        [tuple(r) for r in found],
        schema={"id": pl.Int64, "start": pl.Datetime("us"), "end": pl.Datetime("us")},
        orient="row",
    )

    def utc(name: str) -> pl.Expr:
        naive = isinstance(dtype := jobs[name].dtype, pl.Datetime) and dtype.time_zone is None
        return pl.col(name).dt.replace_time_zone("UTC") if naive else pl.col(name)

    jobs = jobs.with_columns(utc("start"), utc("end"))
    matched = samples.join_where(jobs, pl.col("ts") >= pl.col("start"), pl.col("ts") <= pl.col("end"))
    per_job = matched.group_by("id").agg(
        mean_mem_util=pl.col("mem").mean(),
        peak_mem_util=pl.col("mem").max(),
        sm_util=pl.col("sm").mean(),
        start=pl.col("start").first(),
    )
    if not per_job.is_empty():
        session.execute(update(FleetJob), per_job.drop("start").to_dicts())
        refresh_rollup(session, per_job["start"].dt.strftime("%Y-%m").unique().to_list())
    unmatched = samples.height - matched["line"].n_unique() if matched.height else samples.height
    return {"jobs_updated": per_job.height, "samples_without_job": unmatched}


def register_model(
    session: Session, name: str, family: str, param_count: int, architecture: str | None = None
) -> Model:
    """Add (or correct) a registry entry and attach fleet jobs already imported under its name."""
    if family not in ("llm", "tti", "ttv"):
        raise BadInput(f"unknown family {family!r}; choose llm, tti or ttv")
    if param_count <= 0:
        raise BadInput("parameter count must be positive")
    model = session.scalars(select(Model).where(Model.name == name)).one_or_none()
    if model is None:
        model = Model(name=name)
        session.add(model)
    model.family, model.param_count = family, param_count
    model.architecture = architecture or model.architecture
    session.flush()
    session.execute(
        update(FleetJob).where(FleetJob.model_name == name, FleetJob.model_id.is_(None)).values(model_id=model.id)
    )
    return model


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from exc
