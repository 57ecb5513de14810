"""Pages across many runs: Sweep (operator time against a knob, Fig 10 / 12 / 14), Hardware
(one workload across devices) and Fleet (Fig 1).  A bad choice in a form (a knob the model
never varied, runs that differ in more than the device) is shown on the page beside the form."""

from __future__ import annotations

from typing import Annotated, Literal

import polars as pl
from fastapi import Query, Request
from fastapi.responses import Response

from tracehouse.analyses import fleet_usage as fleet
from tracehouse.analyses.attention import temporal_vs_spatial
from tracehouse.analyses.hardware_compare import compare_hardware
from tracehouse.analyses.params import typed_filters
from tracehouse.analyses.runs import model_spread, run_choices
from tracehouse.analyses.sweep import KNOBS, sweep
from tracehouse.api.dashboard import charts
from tracehouse.api.dashboard.access import reader
from tracehouse.api.dashboard.render import Chart, Notice, page, rest_path
from tracehouse.api.deps import SessionDep
from tracehouse.core.errors import TracehouseError

MAX_SPLIT_RUNS = 20  # runs whose attention types the sweep page splits, at most
SWEEP_META = (
    "total_ns",
    "median_ns",
    "run_count",
    "run_ids",
    "exponent",
    "r2",
    "exponent_low",
    "exponent_high",
    "operator",
)


def _models(session: SessionDep) -> list[str]:
    return run_choices(session)["model"]


def _default_model(session: SessionDep, column: str) -> str | None:
    """What a page opened without a model shows: the model whose runs take the most values of
    ``column`` (the sweep's knob, the hardware), then the one with the most runs, then by name.
    The first model by name may never have been swept or run on a second device."""
    spread = model_spread(session, column)
    return str(spread["model"][0]) if spread.height else None


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.replace(";", ",").split(",") if w.strip()]


def _sweep_charts(session: SessionDep, model: str, knob: str, ops: list[str], filters: list[str]) -> list[Chart]:
    frame = sweep(session, model, knob, ops, **typed_filters(filters))
    varying = [c for c in frame.columns if c not in (*SWEEP_META, knob) and frame[c].n_unique() > 1]
    drawn = frame.filter(pl.col("total_ns") > 0)
    rest = rest_path("/v1/sweep", model=model, knob=knob, operator=ops, filter=filters or None)
    main = Chart(
        "sweep",
        f"{model}: operator time against {knob} (Fig 10, 14)",
        charts.sweep_chart(drawn, knob, varying) if drawn.height else None,
        frame,
        rest,
        caption="Log-log; k is the least-squares slope of log time on log knob (time ∝ knob^k). "
        "Runs alike in everything but the knob form one line.",
        note="" if drawn.height else f"No run of {model} has {knob} set with these operators.",
    )
    run_ids = sorted({rid for ids in frame["run_ids"].to_list() for rid in ids})[:MAX_SPLIT_RUNS]
    knob_of = {
        rid: value for ids, value in zip(frame["run_ids"].to_list(), frame[knob].to_list(), strict=True) for rid in ids
    }
    parts = [temporal_vs_spatial(session, rid).select(pl.lit(rid).alias("run_id"), pl.all()) for rid in run_ids]
    types = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()
    bars = [(f"run {rid} ({knob}={knob_of[rid]})", types.filter(pl.col("run_id") == rid)) for rid in run_ids]
    has_types = types.height > 0
    split = []
    for key, value, axis in (
        ("types-time", "total_ns", "attention time [ns]"),
        ("types-flops", "flops", "attention FLOPs"),
    ):
        split.append(
            Chart(
                key,
                f"Attention time and FLOPs by type: temporal vs spatial (Fig 12) — {axis}",
                charts.stacked_bars(bars, "attention_type", value, axis) if has_types else None,
                types,
                rest_path(f"/v1/runs/{run_ids[0]}/temporal-spatial") if run_ids else rest,
                caption="One bar per run of the sweep (GET /v1/runs/{id}/temporal-spatial each).",
                note="" if has_types else "The sweep's runs have no attention calls.",
            )
        )
    return [main, *split]


@reader.get("/sweep")
def sweep_page(
    request: Request,
    session: SessionDep,
    model: str | None = None,
    knob: Literal[KNOBS] = "image_size",  # type: ignore[valid-type]
    operators: str = "attention, conv, total",
    filters: str = "",
) -> Response:
    models = _models(session)
    asked, model = model, model or _default_model(session, knob)
    ops, pins = _words(operators), _words(filters)
    found: list[Chart] = []
    notice, status = None, 200
    if model:
        try:
            found = _sweep_charts(session, model, knob, ops, pins)
        except TracehouseError as exc:
            notice, status = Notice(exc.message, "error"), exc.status if asked else 200
    else:
        notice = Notice("No runs stored yet.")
    return page(
        request,
        "sweep.html",
        status=status,
        nav="Sweep",
        models=models,
        model=model,
        knob=knob,
        knobs=KNOBS,
        operators=", ".join(ops),
        filters=", ".join(pins),
        charts=found,
        notice=notice,
    )


@reader.get("/hardware")
def hardware_page(
    request: Request, session: SessionDep, model: str | None = None, reference: str = "slowest", filters: str = ""
) -> Response:
    models = _models(session)
    asked, model = model, model or _default_model(session, "hardware")
    pins = _words(filters)
    chart, notice, status = None, None, 200
    if model:
        try:
            frame = compare_hardware(session, model, reference, **typed_filters(pins))
            per_device = [
                (hw, frame.filter(pl.col("hardware") == hw)) for hw in frame["hardware"].unique(maintain_order=True)
            ]
            chart = Chart(
                "hardware",
                f"{model} across devices",
                charts.stacked_bars(per_device, "operator", "operator_ns", "mean summed kernel time [ns]"),
                frame,
                rest_path("/v1/hardware", model=model, reference=reference, filter=pins or None),
                caption="speedup: the reference device's time over this device's (slowest device by default).",
            )
        except TracehouseError as exc:
            # The default choice is the page's, not the reader's: not an error answer.
            notice, status = Notice(exc.message, "error"), exc.status if asked else 200
    else:
        notice = Notice("No runs stored yet.")
    return page(
        request,
        "hardware.html",
        status=status,
        nav="Hardware",
        models=models,
        model=model,
        reference=reference,
        filters=", ".join(pins),
        hw_chart=chart,
        notice=notice,
    )


@reader.get("/fleet")
def fleet_page(
    request: Request,
    session: SessionDep,
    by: Annotated[Literal[fleet.BY_CHOICES], Query()] = "family",  # type: ignore[valid-type]
    phase: Literal["training", "inference"] | None = None,
    n: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    summary = fleet.fleet_summary(session, by, phase)
    rest = rest_path("/v1/fleet/summary", by=by, phase=phase)
    found = []
    for key, column, spread, axis in (
        ("gpus", "gpus_per_bparam", "gpus_per_bparam_std", "GPUs per billion parameters"),
        ("memory", "mean_mem_util", None, "mean memory utilisation"),
    ):
        shown = summary.filter(pl.col(column).is_not_null())
        found.append(
            Chart(
                key,
                f"{axis} by {by} (Fig 1)",
                charts.error_bars(shown, by, column, spread, axis) if shown.height else None,
                summary,
                rest,
                caption="Error bars: the job-weighted standard deviation." if spread else "",
                note="" if shown.height else "No fleet jobs with this figure (tracehouse fleet import).",
            )
        )
    if "gpus_per_bparam_vs_llm" in summary.columns:
        ratios = summary.filter(
            pl.col("gpus_per_bparam_vs_llm").is_not_null() | pl.col("mean_mem_util_vs_llm").is_not_null()
        )
        found.append(
            Chart(
                "ratio",
                "Ratio to LLM (Fig 1)",
                charts.paired_bars(
                    ratios,
                    by,
                    [
                        ("gpus_per_bparam_vs_llm", "GPUs per billion parameters"),
                        ("mean_mem_util_vs_llm", "mean memory utilisation"),
                    ],
                    "ratio to llm",
                )
                if ratios.height
                else None,
                summary,
                rest,
                caption="Each family's figure over llm's: the paper's TTI/TTV vs LLM comparison.",
                note="" if ratios.height else "No llm jobs to compare with.",
            )
        )
    spreads = pl.concat([fleet.ratio_spread(session, family, phase) for family in ("tti", "ttv")])
    top = fleet.top_jobs(session, n, phase)
    return page(
        request,
        "fleet.html",
        nav="Fleet",
        by=by,
        phase=phase or "",
        n=n,
        choices=fleet.BY_CHOICES,
        charts=found,
        spreads=spreads,
        top=top,
        spread_rest=rest_path("/v1/fleet/ratio-spread", family="tti", phase=phase),
        top_rest=rest_path("/v1/fleet/top-jobs", n=n, phase=phase),
    )
