"""Runs side by side: the Compare page (normalised to the first run, per-operator speedups,
attention speedup against Amdahl's law) and Table II (every baseline / flash pair, with the
paper's published A100 figure beside ours)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

import polars as pl
from fastapi import Query, Request
from fastapi.responses import Response

from tracehouse.analyses.compare import backend_speedups, breakdown_normalized, compare_runs, compare_summary
from tracehouse.analyses.runs import list_runs
from tracehouse.api.dashboard import charts
from tracehouse.api.dashboard.access import reader
from tracehouse.api.dashboard.render import Chart, page, rest_path
from tracehouse.api.deps import SessionDep
from tracehouse.core.errors import BadInput

MAX_COMPARED = 12
SHOWN = (
    "run_id",
    "model",
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
)
# The paper's Table II: end-to-end speedup of flash over baseline attention on an A100.
PAPER_A100 = {
    "llama": 1.52,
    "stable-diffusion": 1.67,
    "imagen": 1.22,
    "muse": 1.11,
    "parti": 1.17,
    "make-a-video": 1.06,
    "phenaki": 1.15,
}
_SPELLINGS = {
    "sd": "stable-diffusion",
    "stablediffusion": "stable-diffusion",
    "makeavideo": "make-a-video",
    "mav": "make-a-video",
}


def paper_figure(model: str | None) -> float | None:
    """The published speedup for a stored model name (``llama-2-7b`` counts as LLaMA)."""
    if not model:
        return None
    name = model.lower().replace("_", "-")
    name = _SPELLINGS.get(name.replace("-", ""), name)
    for key, value in PAPER_A100.items():
        if name == key or name.startswith(f"{key}-"):
            return value
    return None


def _labels(run_ids: list[int], session: SessionDep) -> dict[int, str]:
    runs = list_runs(session, run_ids=run_ids)
    return {
        r["run_id"]: " ".join(
            str(p) for p in (f"run {r['run_id']}:", r["model"], r["hardware"], r["attention_backend"]) if p
        ).rstrip(":")
        for r in runs.iter_rows(named=True)
    }


def _normalized(session: SessionDep, run_ids: list[int], labels: dict[int, str]) -> Chart:
    first = run_ids[0]
    frames = [(rid, breakdown_normalized(session, rid, first, "operator")) for rid in run_ids]
    table = pl.concat([f.select(pl.lit(rid).alias("run_id"), pl.all()) for rid, f in frames], how="vertical_relaxed")
    fig = charts.stacked_bars(
        [(labels.get(rid, f"run {rid}"), f) for rid, f in frames],
        "operator",
        "normalized",
        f"time / run {first}'s total",
    )
    return Chart(
        "normalized",
        f"Normalised to run {first} (Fig 7, second bar)",
        fig,
        table,
        rest_path(f"/v1/runs/{run_ids[-1]}/normalized", reference=first, by="operator"),
        caption="Each bar is a run's summed kernel time over the first run's; a bar of 0.6 is a 1.67× speedup.",
    )


def _speedups(session: SessionDep, run_ids: list[int], labels: dict[int, str]) -> tuple[Chart, Chart]:
    first = run_ids[0]
    per_op = pl.concat(
        [compare_runs(session, first, rid).select(pl.lit(rid).alias("other_run_id"), pl.all()) for rid in run_ids[1:]],
        how="vertical_relaxed",
    )
    wide = per_op.pivot(on="other_run_id", index="operator", values="speedup", aggregate_function="first")
    series = [(str(rid), labels.get(rid, f"run {rid}")) for rid in run_ids[1:]]
    ops = Chart(
        "operator-speedups",
        f"Per-operator speedup over run {first}",
        charts.paired_bars(wide, "operator", series, "speedup (baseline / other)", log=True),
        per_op,
        rest_path("/v1/compare", baseline=first, other=run_ids[-1]),
        caption="Above 1: the operator got faster.  No bar: the operator is absent from one run.",
    )
    summary = pl.concat([compare_summary(session, first, rid) for rid in run_ids[1:]], how="vertical_relaxed")
    shown = summary.with_columns(
        label=pl.col("other_run_id").replace_strict(
            {rid: labels.get(rid, f"run {rid}") for rid in run_ids}, return_dtype=pl.String
        )
    )
    amdahl = Chart(
        "amdahl",
        "Attention speedup against Amdahl's law",
        charts.paired_bars(
            shown,
            "label",
            [
                ("operator_speedup", "attention speedup"),
                ("amdahl_speedup", "Amdahl's prediction (end to end)"),
                ("end_to_end_speedup", "measured end to end"),
            ],
            "speedup",
        ),
        summary,
        rest_path("/v1/compare", baseline=first, other=run_ids[-1], summary="true"),
        caption="Amdahl: 1 / ((1 − f) + f / s) with f the attention share of the first run and s the "
        "attention speedup.  Measured above predicted: other operators got faster too.",
    )
    return ops, amdahl


@reader.get("/compare")
def compare_page(
    request: Request,
    session: SessionDep,
    run: Annotated[list[int], Query(description="Runs, the first is the reference")] = [],
) -> Response:
    run_ids = list(dict.fromkeys(run))
    if len(run_ids) < 2:
        raise BadInput("pick two or more runs to compare (tick them on the Runs page)")
    if len(run_ids) > MAX_COMPARED:
        raise BadInput(f"compare at most {MAX_COMPARED} runs at a time")
    labels = _labels(run_ids, session)
    normalized = _normalized(session, run_ids, labels)
    ops, amdahl = _speedups(session, run_ids, labels)
    runs = list_runs(session, run_ids=run_ids)
    runs = runs.sort(pl.col("run_id").replace_strict({rid: i for i, rid in enumerate(run_ids)})).select(SHOWN)
    switch = {
        rid: "?" + urlencode([("run", r) for r in [rid, *(o for o in run_ids if o != rid)]]) for rid in run_ids[1:]
    }
    return page(
        request,
        "compare.html",
        nav="Runs",
        run_ids=run_ids,
        runs=runs,
        labels=labels,
        switch=switch,
        charts=[normalized, ops, amdahl],
    )


@reader.get("/speedups")
def speedups_page(
    request: Request,
    session: SessionDep,
    baseline: str = "baseline",
    other: str = "flash",
    model: str | None = None,
    hardware: str | None = None,
) -> Response:
    frame = backend_speedups(session, baseline, other, model=model or None, hardware=hardware or None)
    table = frame.select(
        "model",
        "family",
        "hardware",
        "baseline_run_id",
        "other_run_id",
        "end_to_end_speedup",
        pl.col("model").map_elements(paper_figure, return_dtype=pl.Float64).alias("paper_a100"),
        "operator_speedup",
        "operator_share",
        "amdahl_speedup",
        "amdahl_error",
        "differences",
    )
    shown = table.with_columns(
        pair=pl.format("{} @ {}", pl.col("model").fill_null("?"), pl.col("hardware").fill_null("?"))
    )
    figure = (
        charts.paired_bars(
            shown,
            "pair",
            [
                ("end_to_end_speedup", "ours (end to end)"),
                ("amdahl_speedup", "Amdahl from attention"),
                ("paper_a100", "paper (A100)"),
            ],
            "speedup",
        )
        if table.height
        else None
    )
    chart = Chart(
        "speedups",
        f"{other} over {baseline}: end-to-end speedup (Table II)",
        figure,
        table,
        rest_path("/v1/speedups", baseline=baseline, other=other, model=model or None, hardware=hardware or None),
        caption="paper_a100: the speedup the paper publishes for the model on an A100; ours is measured "
        "on the run's own hardware.",
        note="" if table.height else f"No stored pair of {baseline} and {other} runs alike in everything else.",
    )
    return page(
        request,
        "speedups.html",
        nav="Table II",
        table2=chart,
        baseline=baseline,
        other=other,
        model=model or "",
        hardware=hardware or "",
        paper=PAPER_A100,
    )
