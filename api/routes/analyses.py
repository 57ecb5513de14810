"""The paper's questions over REST; each route is one call to an analysis function."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tracehouse.analyses import (
    advise,
    attention,
    compare,
    counters,
    critical_path,
    explain,
    hardware_compare,
    idle,
    launches,
    memory_model,
    memory_peak,
    memory_timeline,
    rank_jobs,
    roofline,
    sequence,
    suite,
    sweep,
    utilization,
)
from tracehouse.analyses.params import typed_filters
from tracehouse.analyses.repeats import speedups_over_repeats
from tracehouse.api.deps import ReadToken, SessionDep
from tracehouse.api.responses import TableQuery
from tracehouse.ingest.user_rules import name_rules_for

router = APIRouter(prefix="/v1", tags=["analyses"])
Filters = Annotated[list[str], Query(description="KEY=VALUE, repeatable (e.g. image_size=512)")]


@router.get("/compare", summary="Compare two runs (Table II, Fig 7 second bar)")
def compare_two(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    baseline: Annotated[int, Query(description="Baseline run id", examples=[1])],
    other: Annotated[int, Query(description="Run to compare, e.g. with flash", examples=[2])],
    summary: Annotated[bool, Query(description="One row: end-to-end speedup vs Amdahl")] = False,
    operator: str = "attention",
) -> Response:
    """Per-operator times and speedups, or (``summary``) measured vs Amdahl-predicted speedup."""
    frame = (
        compare.compare_summary(session, baseline, other, operator)
        if summary
        else compare.compare_runs(session, baseline, other)
    )
    return table.respond(frame)


@router.get("/speedups", summary="Table II: every stored baseline / optimised pair")
def speedups(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    baseline: Annotated[str, Query(description="Backend of the reference runs")] = "baseline",
    other: Annotated[str, Query(description="Backend of the optimised runs")] = "flash",
    model: str | None = None,
    hardware: Annotated[str | None, Query(description="Substring of the device name")] = None,
    experiment: Annotated[str | None, Query(description="Only this experiment; repeats aggregated")] = None,
    repeats: Annotated[bool, Query(description="Aggregate repeats: median and 95% interval")] = False,
) -> Response:
    """Runs alike in everything but the attention backend are paired (the latest of each);
    per pair, the measured end-to-end speedup next to the attention speedup and Amdahl's law.
    With ``experiment`` or ``repeats``: every repeat pair, each figure a median with its 95%
    interval (``analyses/repeats``)."""
    if experiment or repeats:
        return table.respond(
            speedups_over_repeats(session, baseline, other, experiment=experiment, model=model, hardware=hardware)
        )
    return table.respond(compare.backend_speedups(session, baseline, other, model=model, hardware=hardware))


@router.get("/runs/{run_id}/normalized", summary="Breakdown normalised to another run's total")
def normalized(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    reference: Annotated[int, Query(description="Run whose total is 1.0")],
    by: str = "operator",
) -> Response:
    return table.respond(compare.breakdown_normalized(session, run_id, reference, by))


@router.get("/runs/{run_id}/attention-calls", summary="Every attention call in order (Fig 8)")
def attention_calls(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    return table.respond(sequence.attention_calls(session, run_id))


@router.get("/runs/{run_id}/seq-len-histogram", summary="Sequence-length distribution (Fig 9)")
def seq_len_histogram(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    weight: Literal["count", "time"] = "count",
    key: Literal["seq_q", "seq_kv"] = "seq_q",
) -> Response:
    return table.respond(sequence.seq_len_histogram(session, run_id, weight, key))


@router.get("/runs/{run_id}/period", summary="The repeating attention pattern (fundamental period)")
def period(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    return table.respond(sequence.fundamental_period(session, run_id))


@router.get("/sweep", summary="Operator time as one knob grows, with fitted exponents (Fig 10, 14)")
def sweep_knob(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    model: Annotated[str, Query(examples=["stable-diffusion"])],
    knob: Annotated[str, Query(examples=["image_size"])],
    operator: Annotated[list[str], Query(description="Operators (or 'total')")] = ["attention", "conv"],
    filter: Filters = [],
) -> Response:
    filters = typed_filters(filter, "query parameter 'filter'")
    return table.respond(sweep.sweep(session, model, knob, operator, **filters))


@router.get("/runs/{run_id}/temporal-spatial", summary="Temporal vs spatial attention (Fig 12)")
def temporal_spatial(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    return table.respond(attention.temporal_vs_spatial(session, run_id))


@router.get("/attention-flops", summary="Analytic spatial vs temporal FLOPs by frames (Fig 14)")
def attention_flops(
    _: ReadToken,
    table: TableQuery,
    frames: Annotated[list[int], Query(examples=[[8, 16, 32]])],
    height: int,
    width: int,
    batch: int = 1,
    heads: int = 1,
    head_dim: int = 64,
) -> Response:
    frame = attention.attention_flops_by_frames(frames, height, width, batch=batch, heads=heads, head_dim=head_dim)
    return table.respond(frame)


@router.get("/runs/{run_id}/utilization", summary="Busy, idle and communication overlap per device")
def run_utilization(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    """Union of kernel intervals per device: span, busy, idle, compute / communication / memory,
    and communication hidden under compute (HTA's temporal breakdown and overlap)."""
    return table.respond(utilization.temporal_breakdown(session, run_id))


@router.get("/runs/{run_id}/idle", summary="Why each stream sat idle: host wait, kernel wait, other")
def run_idle(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    consecutive_kernel_delay_ns: Annotated[
        int, Query(ge=0, description="Gaps shorter than this (and not a host wait) are kernel waits")
    ] = idle.HTA_DEFAULT_DELAY_NS,
) -> Response:
    """HTA's idle-time breakdown per device and stream: each gap between consecutive kernels is a
    host wait (the launch came after the previous kernel ended), a kernel wait or other."""
    return table.respond(idle.idle_time_breakdown(session, run_id, consecutive_kernel_delay_ns))


@router.get("/runs/{run_id}/advice", summary="What to fix: findings ranked by estimated time saved")
def run_advice(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    rule: Annotated[list[str] | None, Query(description="Only these rule ids (repeatable)")] = None,
) -> Response:
    """Each finding: the rule, one sentence, the estimated saving and its basis, the evidence
    (numbers from the store, JSON) and the CLI command / REST path that shows them."""
    return table.respond(advise.advise(session, run_id, tuple(rule) if rule else None))


@router.get("/runs/{run_id}/critical-path", summary="Lightweight critical path and each operator's share")
def run_critical_path(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    step: Annotated[int | None, Query(description="Only this step's kernels")] = None,
    view: Annotated[Literal["operators", "segments"], Query()] = "operators",
) -> Response:
    """The chain of launch calls, host time and kernels that bounds the run (or step):
    per operator (``operators``) or the path itself (``segments``)."""
    fn = critical_path.critical_path if view == "operators" else critical_path.critical_path_segments
    return table.respond(fn(session, run_id, step))


@router.get("/runs/{run_id}/memory-peak", summary="Peak memory per component: weights, activations, similarity")
def run_memory_peak(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    """The profiler's allocator peak per component beside parameters × bytes and the largest
    attention similarity matrix."""
    return table.respond(memory_peak.memory_peak(session, run_id))


Device = Annotated[str | None, Query(description="Only this device: cpu, cuda:0 ... (default: every device)")]


@router.get("/runs/{run_id}/memory-timeline", summary="Allocated bytes over time per device (memory events)")
def run_memory_timeline(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    points: Annotated[int, Query(ge=1, le=memory_timeline.MAX_POINTS, description="Time buckets per device")] = (
        memory_timeline.DEFAULT_POINTS
    ),
    device: Device = None,
) -> Response:
    """The profiler's allocated total over time, the largest figure per time bucket (peaks
    survive the downsampling); no rows for a run recorded without memory events."""
    return table.respond(memory_timeline.memory_timeline(session, run_id, points, device))


@router.get("/runs/{run_id}/memory-peak/live", summary="What was live at the measured memory peak, per component")
def run_memory_peak_live(
    run_id: int, session: SessionDep, _: ReadToken, table: TableQuery, device: Device = None
) -> Response:
    """Per device, the allocations live at the peak by component / operator / attention type,
    summing to the peak, beside the parameters × bytes estimate of the weights."""
    return table.respond(memory_timeline.memory_peak_live(session, run_id, device))


@router.get("/jobs", summary="Runs that are ranks of one job: step time, exposed comm, stragglers")
def jobs(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    straggler_factor: Annotated[
        float, Query(gt=1, description="A rank is a straggler at this × the job's median step")
    ] = rank_jobs.STRAGGLER_FACTOR,
) -> Response:
    """Multi-rank runs grouped by their ``job`` tag, else by model, hardware, world size and knobs."""
    return table.respond(rank_jobs.job_ranks(session, straggler_factor))


@router.get("/suite/model-points", summary="Fig 5: one roofline point per model, with each device's ceilings")
def model_points(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    family: Annotated[str | None, Query(description="Only this family (llm / tti / ttv)")] = None,
) -> Response:
    """Operational intensity as FLOPs per byte of model capacity (parameters × dtype bytes)."""
    return table.respond(suite.model_points(session, family))


@router.get("/suite/ceilings", summary="Fig 5's lines: every stored device's peak per dtype and bandwidth")
def ceilings(session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    return table.respond(suite.device_ceilings(session))


@router.get("/suite/compute-comm", summary="Fig 6: compute vs communication by GPU count")
def compute_comm(
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    model: str | None = None,
    by_world_size: Annotated[bool, Query(description="Mean shares per world size")] = False,
) -> Response:
    """Per GPU run: shares of the span in compute, communication, exposed communication and idle."""
    return table.respond(suite.compute_vs_communication(session, model, by_world_size))


@router.get("/advice/rules", summary="The advice rule table: what each rule detects and how it estimates")
def advice_rules(_: ReadToken, table: TableQuery) -> Response:
    return table.respond(advise.rule_table())


@router.get("/runs/{run_id}/launches", summary="Launch overhead per operator or kernel")
def run_launches(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    by: Annotated[Literal["operator", "kernel", "attention_type", "component"], Query()] = "operator",
) -> Response:
    """Host time in launch calls, queue delay, and kernels that ran shorter than their launch."""
    return table.respond(launches.launch_overhead(session, run_id, by))


@router.get("/runs/{run_id}/explain", summary="Why each kernel got its class; time left in other")
def run_explain(
    run_id: int,
    request: Request,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    view: Annotated[Literal["kernels", "summary", "rules"], Query()] = "kernels",
    kernel: Annotated[str | None, Query(description="Only kernel names containing this")] = None,
) -> Response:
    """``kernels``: per kernel name, its class, source, rule and deciding op or annotation, time
    and count; ``summary``: the run's time in ``other``, in CUDA graphs and by source;
    ``rules``: every rule in effect (the lab's own first) and what it decided in the run."""
    name_rules = name_rules_for(request.app.state.settings.rules_file())
    return table.respond(explain.explain_view(session, run_id, view, kernel, name_rules))


@router.get("/runs/{run_id}/roofline", summary="The run against the device's roofline (Fig 5, Fig 13)")
def run_roofline(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    by: Annotated[Literal["operator", "attention_type", "kernel"], Query()] = "operator",
) -> Response:
    """Per group: FLOPs, DRAM / L2 / L1 bytes, intensity, GFLOP/s and ``source``: Nsight
    Compute ``counters`` where the run has them, ``analytic`` (shape-derived) otherwise."""
    return table.respond(roofline.roofline_by(session, run_id, by))


@router.get("/runs/{run_id}/operator-costs", summary="Analytic FLOPs and bytes per operator (Fig 5)")
def run_operator_costs(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    """Shape-derived costs per operator and attention type, with the attention memory model used."""
    return table.respond(roofline.roofline(session, run_id))


@router.get("/runs/{run_id}/counter-roofline", summary="Nsight Compute counters per kernel launch")
def run_counter_roofline(run_id: int, session: SessionDep, _: ReadToken, table: TableQuery) -> Response:
    """Measured FLOPs (add + mul + 2·fma, tensor × the architecture's factor), bytes per
    memory level, hit rates and the launch's operator and attention type."""
    return table.respond(counters.counter_roofline(session, run_id))


@router.get("/memory-model", summary="The paper's similarity-matrix memory formula (§V)")
def memory(
    _: ReadToken,
    table: TableQuery,
    image_size: int,
    latent_factor: int,
    text_length: int,
    unet_depth: int,
    downsample_factor: int = 2,
    bytes_per_element: int = 2,
    heads: int = 1,
    batch: int = 1,
) -> Response:
    frame = memory_model.similarity_matrix_memory(
        image_size, latent_factor, text_length, unet_depth, downsample_factor, bytes_per_element, heads, batch
    )
    return table.respond(frame)


@router.get("/runs/{run_id}/memory-model", summary="§V formula next to the run's attention shapes")
def run_memory(
    run_id: int,
    session: SessionDep,
    _: ReadToken,
    table: TableQuery,
    latent_factor: int | None = None,
    unet_depth: int | None = None,
    downsample_factor: int = 2,
) -> Response:
    frame = memory_model.memory_model_vs_run(
        session, run_id, latent_factor=latent_factor, unet_depth=unet_depth, downsample_factor=downsample_factor
    )
    return table.respond(frame)


@router.get("/hardware", summary="The same model and knobs across devices")
def across_hardware(
    session: SessionDep, _: ReadToken, table: TableQuery, model: str, reference: str = "slowest", filter: Filters = []
) -> Response:
    filters = typed_filters(filter, "query parameter 'filter'")
    return table.respond(hardware_compare.compare_hardware(session, model, reference, **filters))
