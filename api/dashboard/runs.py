"""The Runs page (filter, sort, pick runs to compare) and one run's page (the paper's Fig 5, 7,
8 and 9 over that run, with utilisation, launch overhead, what to fix and memory over time).  Every figure comes from the
analysis function its REST route calls, with the same arguments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import polars as pl
from fastapi import Query, Request
from fastapi.responses import Response

from tracehouse.analyses.advise import advise
from tracehouse.analyses.advise_context import RunFacts
from tracehouse.analyses.breakdown import breakdown
from tracehouse.analyses.common import get_run
from tracehouse.analyses.launches import launch_overhead
from tracehouse.analyses.memory_timeline import memory_timeline
from tracehouse.analyses.roofline import roofline_by
from tracehouse.analyses.runs import RunFilters, count_runs, list_runs, run_choices, run_tags
from tracehouse.analyses.sequence import attention_calls, fundamental_period, seq_len_histogram
from tracehouse.api.dashboard import charts
from tracehouse.api.dashboard.access import reader
from tracehouse.api.dashboard.render import Chart, downsample, page, rest_path
from tracehouse.api.deps import SessionDep
from tracehouse.core.errors import BadInput
from tracehouse.core.meta import parse_key_values

PAGE_SIZE = 100
RUN_COLUMNS = (
    "run_id",
    "model",
    "family",
    "hardware",
    "attention_backend",
    "scale",
    "batch",
    "dtype",
    "image_size",
    "frames",
    "denoising_steps",
    "device_kind",
    "kernel_count",
    "total_ns",
    "created_at",
)
TOP_BY = (("attention_type", "By attention type"), ("component", "By component"), ("kernel", "By kernel"))


def _moment(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{name} must be a date or ISO 8601 time, got {text!r}") from None


def _choices(frame: pl.DataFrame, column: str) -> list[str]:
    return sorted({v for v in frame[column].to_list() if v is not None})


@reader.get("/")
def runs_page(
    request: Request,
    session: SessionDep,
    model: str | None = None,
    family: str | None = None,
    hardware: str | None = None,
    attention_backend: str | None = None,
    tag: Annotated[list[str], Query()] = [],
    since: str | None = None,
    until: str | None = None,
    sort: str = "run_id",
    order: Literal["asc", "desc"] = "asc",
    page_no: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> Response:
    tags = [t for t in tag if t.strip()]
    filters = {
        "model": model or None,
        "family": family or None,
        "hardware": hardware or None,
        "attention_backend": attention_backend or None,
    }
    chosen = RunFilters(
        model=filters["model"],
        family=filters["family"],
        hardware=filters["hardware"],
        attention_backend=filters["attention_backend"],
        tags=parse_key_values(tags),
        since=_moment(since, "since"),
        until=_moment(until, "until"),
    )
    # One page of runs, sorted and cut in the database, and the count of them all: the page
    # costs the same in a store of 10,000 runs as in one of 100.
    shown = list_runs(
        session, **chosen, sort=sort, descending=order == "desc", offset=(page_no - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    total = count_runs(session, **chosen)
    tag_text = {
        run_id: "; ".join(f"{k}={v}" for k, v in sorted(run_tags(session, run_id).items()))
        for run_id in shown["run_id"].to_list()
    }
    options = run_choices(session)
    rest = rest_path("/v1/runs", **filters, tag=tags or None, since=since or None, until=until or None)
    return page(
        request,
        "runs.html",
        nav="Runs",
        runs=shown,
        columns=RUN_COLUMNS,
        tags=tag_text,
        total=total,
        page_no=page_no,
        pages=max(1, -(-total // PAGE_SIZE)),
        options=options,
        filters={**filters, "tag": ", ".join(tags), "since": since or "", "until": until or ""},
        sort=sort,
        order=order,
        rest=rest,
    )


def _metadata(session: SessionDep, run_id: int, operators: pl.DataFrame) -> list[tuple[str, str, object]]:
    """``(key, label, value)`` rows of the run's metadata table, as ``GET /v1/runs/{id}`` has them
    plus the run's stored parameter count, peak memory and host."""
    run = get_run(session, run_id)
    rows = list_runs(session, run_id=run_id)
    first = rows.row(0, named=True)
    other = operators.filter(pl.col("operator") == "other")
    sources = "; ".join(f"{r['source']} ({r['format']})" for r in rows.iter_rows(named=True) if r["source"])
    items: list[tuple[str, str, object]] = [
        ("model", "Model", first["model"]),
        ("family", "Family", first["family"]),
        ("param_count", "Parameters", run.param_count),
        ("hardware", "Hardware", first["hardware"]),
        ("device_kind", "Device kind", run.device_kind),
        ("attention_backend", "Attention backend", run.attention_backend),
        ("scale", "Scale", run.scale),
        ("dtype", "dtype", run.dtype),
        ("batch", "Batch", run.batch),
        ("image_size", "Image size", run.image_size),
        ("frames", "Frames", run.frames),
        ("denoising_steps", "Denoising steps", run.denoising_steps),
        ("decode_tokens", "Decode tokens", run.decode_tokens),
        ("text_length", "Text length", run.text_length),
        ("peak_memory_bytes", "Peak memory [bytes]", run.peak_memory_bytes),
        ("host", "Host", run.host),
        ("rank", "Rank / world size", f"{run.rank} / {run.world_size}" if run.rank is not None else None),
        ("kernel_count", "Kernels", run.kernel_count),
        ("total_ns", "Summed kernel time [ns]", run.total_ns),
        ("span_ns", "Span [ns]", run.span_ns),
        ("other_share", "Share of time in `other`", other["share"][0] if other.height else None),
        ("source", "Source files", sources or None),
        ("created_at", "Ingested", first["created_at"]),
    ]
    return [item for item in items if item[2] is not None or item[0] == "other_share"]


def _breakdown_charts(session: SessionDep, run_id: int, operators: pl.DataFrame, top: int) -> list[Chart]:
    fig7 = charts.stacked_bars([(f"run {run_id}", operators)], "operator", "share", "share of summed kernel time")
    found = [
        Chart(
            "operator",
            "Where the time went, by operator (Fig 7)",
            fig7 if operators.height else None,
            operators,
            rest_path(f"/v1/runs/{run_id}/breakdown", by="operator"),
            caption="Share of the run's summed kernel time (busy time, not wall time).",
            note="" if operators.height else "No timed kernels (a counters-only run).",
        )
    ]
    for by, title in TOP_BY:
        frame = breakdown(session, run_id, by)
        shown = frame.head(top)
        note = f"Top {top} of {frame.height} groups." if frame.height > top else ""
        found.append(
            Chart(
                by,
                f"{title} (top {top})",
                charts.top_bars(shown, by, "share", "share") if shown.height else None,
                shown,
                rest_path(f"/v1/runs/{run_id}/breakdown", by=by),
                note=note or ("" if shown.height else "Nothing to show."),
            )
        )
    return found


def _sequence_charts(session: SessionDep, run_id: int) -> list[Chart]:
    calls = attention_calls(session, run_id)
    period = fundamental_period(session, run_id)
    drawn = downsample(calls, "seq_q")
    caption = (
        f"Fundamental period: {period['period'][0]} calls, repeated {period['repeats'][0]} times from "
        f"call {period['offset'][0]}."
        if period.height
        else ""
    )
    fig8 = Chart(
        "calls",
        "Attention calls in execution order (Fig 8)",
        charts.calls_chart(drawn, period, calls.height) if calls.height else None,
        drawn,
        rest_path(f"/v1/runs/{run_id}/attention-calls"),
        caption=caption,
        note="" if calls.height else "This run has no attention calls.",
        total_rows=calls.height if drawn.height < calls.height else None,
    )
    by_count = seq_len_histogram(session, run_id, "count")
    by_time = seq_len_histogram(session, run_id, "time")
    fig9 = Chart(
        "histogram",
        "Sequence-length distribution by count and by time (Fig 9)",
        charts.histogram_chart(by_count, by_time) if by_count.height else None,
        by_time,
        rest_path(f"/v1/runs/{run_id}/seq-len-histogram", weight="time"),
        note="" if by_count.height else "No attention call has a stored sequence length.",
    )
    periods = Chart("period", "The repeating pattern", None, period, rest_path(f"/v1/runs/{run_id}/period"))
    return [fig8, fig9, periods]


def _device_charts(session: SessionDep, run_id: int, top: int, facts: RunFacts) -> list[Chart]:
    roof = roofline_by(session, run_id, "operator")
    placed = charts.roofline_points(roof)
    has_peaks = roof.height > 0 and roof["peak_flops_s"].drop_nulls().len() > 0
    roof_note = "" if has_peaks else "The device has no peaks in the hardware catalogue: no ceilings to draw."
    if not placed.height:
        roof_note = "No operator has known FLOPs and bytes (record shapes, or attach Nsight Compute counters)."
    roofline = Chart(
        "roofline",
        "Roofline, one point per operator (Fig 5)",
        charts.roofline_chart(roof, "operator") if placed.height else None,
        roof,
        rest_path(f"/v1/runs/{run_id}/roofline", by="operator"),
        note=roof_note,
        caption="Circles: analytic (shape-derived) costs; diamonds: Nsight Compute counters.",
    )
    util = facts.utilization  # temporal_breakdown, read once for this chart and advise's rules
    utilization = Chart.of(
        "utilization",
        "Utilization: busy, idle, communication",
        util,
        charts.utilization_chart,
        rest_path(f"/v1/runs/{run_id}/utilization"),
        empty="No kernels.",
    )
    launch = Chart.of(
        "launches",
        "Launch overhead by operator",
        launch_overhead(session, run_id, "operator").head(top),
        lambda shown: charts.paired_bars(
            shown, "operator", [("gpu_ns", "kernel time"), ("launch_ns", "launch calls")], "time [ns]", log=True
        ),
        rest_path(f"/v1/runs/{run_id}/launches", by="operator"),
        empty="No launches recorded (a CPU-only run has none).",
    )
    return [roofline, utilization, launch]


def _diagnosis_charts(session: SessionDep, run_id: int, facts: RunFacts) -> list[Chart]:
    """What to fix (``advise``, as ``tracehouse advise``) and the allocated memory over time."""
    advice = Chart.of(
        "advice",
        "What to fix, by estimated time saved",
        advise(session, run_id, facts=facts).select("rank", "rule", "finding", "saved_ns", "saved_share", "query"),
        None,
        rest_path(f"/v1/runs/{run_id}/advice"),
        empty="No rule found anything to fix in this run.",
        caption="Each finding's evidence and how its saving was estimated: the REST answer, or tracehouse advise.",
    )
    memory = Chart.of(
        "memory",
        "Allocated memory over time",
        memory_timeline(session, run_id),
        charts.memory_chart,
        rest_path(f"/v1/runs/{run_id}/memory-timeline"),
        empty="No memory events: the run was profiled without profile_memory (tracehouse collect keeps them).",
        caption="Per time bucket, the largest allocated total (markers) and the reserved total (dotted).",
    )
    return [advice, memory]


def _downloads(request: Request, run_id: int) -> dict[str, str]:
    """Whole-run downloads the REST API offers (the raw trace and kernel rows, where this server has them)."""
    paths = request.app.openapi()["paths"]  # what this server's REST API offers, however its routers nest
    found = {
        "Breakdown (CSV)": rest_path(f"/v1/runs/{run_id}/breakdown", by="operator", format="csv"),
        "Breakdown (Parquet)": rest_path(f"/v1/runs/{run_id}/breakdown", by="operator", format="parquet"),
    }
    if "/v1/runs/{run_id}/kernels" in paths:
        found["Kernel rows (Parquet)"] = rest_path(f"/v1/runs/{run_id}/kernels", format="parquet")
        found["Kernel rows (CSV)"] = rest_path(f"/v1/runs/{run_id}/kernels", format="csv")
    if "/v1/runs/{run_id}/trace" in paths:
        found["Raw trace"] = f"/v1/runs/{run_id}/trace"
    return found


@reader.get("/runs/{run_id}")
def run_page(
    run_id: int, request: Request, session: SessionDep, top: Annotated[int, Query(ge=1, le=100)] = 10
) -> Response:
    operators = breakdown(session, run_id, "operator")
    meta = _metadata(session, run_id, operators)
    facts = RunFacts(session, run_id)  # what advise's rules read: the charts share what they draw of it
    return page(
        request,
        "run.html",
        nav="Runs",
        run_id=run_id,
        meta=meta,
        tags=run_tags(session, run_id),
        breakdowns=_breakdown_charts(session, run_id, operators, top),
        sequence=_sequence_charts(session, run_id),
        device=_device_charts(session, run_id, top, facts),
        diagnosis=_diagnosis_charts(session, run_id, facts),
        downloads=_downloads(request, run_id),
        top=top,
    )
