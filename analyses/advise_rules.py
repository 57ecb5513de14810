"""The checks behind ``tracehouse advise``: one function per rule, each reading
:class:`RunFacts` and returning a :class:`Finding` (or ``None`` when the rule does not fire).

Every estimate is an upper bound on what the change could save on this run's device timeline,
from the store's own numbers; estimates of different rules overlap (hiding host waits and
capturing a CUDA graph attack the same idle time), so they are ranked, never summed.
Thresholds are module constants so the rule table can print them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

from tracehouse.analyses.advise_context import RunFacts
from tracehouse.analyses.compare import backend_speedups
from tracehouse.analyses.roofline import FUSED_BACKENDS

MIN_ATTENTION_SHARE = 0.05
MIN_LAUNCH_BOUND_SHARE = 0.5
MIN_LAUNCH_BOUND_KERNELS = 50
MIN_HOST_WAIT_SHARE = 0.10
MIN_PAGEABLE_NS = 10_000
PINNED_SPEEDUP = 2.0
MIN_FP32_GEMM_SHARE = 0.02
MIN_CONV_SHARE = 0.25
MIN_EXPOSED_COMM_SHARE = 0.05
MIN_OTHER_SHARE = 0.20
MIN_LAUNCH_SAVED_SHARE = 0.01
MIN_STEPS = 3
MAX_SLOWEST_OVER_MEDIAN = 1.05
MIN_TEMPORAL_SHARE = 0.25  # of the run's attention time
MIN_TEMPORAL_SLOWDOWN = 2.0  # spatial attention's FLOP/s over temporal attention's

# The paper's Table II: measured end-to-end speedup of Flash Attention over baseline attention.
PAPER_FLASH_SPEEDUP = {
    "llama": 1.52,
    "imagen": 1.22,
    "stablediffusion": 1.67,
    "muse": 1.11,
    "parti": 1.17,
    "prodimage": 1.04,
    "makeavideo": 1.06,
    "phenaki": 1.15,
}
MATERIALISED_BACKENDS = frozenset({"baseline", "math", "eager", "sdpa_math"})
FUSED_KERNEL = re.compile(
    r"flash|fmha|efficient_attention|mem_eff|cutlassf|xformers|attn_fwd|_attention_fwd", re.IGNORECASE
)
SIMT_FP32_GEMM = re.compile(r"sgemm|scudnn|gcgemm", re.IGNORECASE)
TENSOR_CORE = re.compile(r"tensorop|xmma|tf32|hmma|wmma|1688|884|16816|s161616|bf16|f16", re.IGNORECASE)
PAGEABLE_COPY = re.compile(r"pageable", re.IGNORECASE)


@dataclass
class Finding:
    """What a rule found: ``saved_ns`` (estimate, null when the store cannot size it), one
    sentence, the evidence numbers and how the estimate was made on this run."""

    summary: str
    saved_ns: int | None
    evidence: dict[str, object] = field(default_factory=dict)
    basis: str = ""


def attention_materialised(f: RunFacts) -> Finding | None:
    attention_ns = f.operators.get("attention", 0)
    share = attention_ns / f.run.total_ns if f.run.total_ns else 0.0
    if share < MIN_ATTENTION_SHARE or not _materialised(f):
        return None
    measured = _pair_attention_speedup(f)
    evidence: dict[str, object] = {"attention_ns": attention_ns, "total_ns": f.run.total_ns, "attention_share": share}
    if measured is not None:
        speedup, pair = measured
        evidence |= {"attention_speedup": speedup, "pair_run_id": pair}
        saved = attention_ns * (1 - 1 / speedup)
        basis = f"attention_ns × (1 − 1/attention speedup) measured on stored pair run {pair}"
    else:
        e2e = PAPER_FLASH_SPEEDUP.get(_key(f.model_name), min(PAPER_FLASH_SPEEDUP.values()))
        evidence["paper_end_to_end_speedup"] = e2e
        saved = min(attention_ns, f.run.total_ns * (1 - 1 / e2e))
        basis = "no stored flash pair: total_ns × (1 − 1/paper Table II speedup), capped at attention_ns"
    return Finding(
        f"attention runs on the materialised path ({share:.0%} of kernel time); a fused "
        "kernel (FlashAttention / SDPA flash) exists",
        round(saved),
        evidence,
        basis,
    )


def _materialised(f: RunFacts) -> bool:
    backend = (f.run.attention_backend or "").lower()
    if backend in FUSED_BACKENDS:
        return False
    if backend in MATERIALISED_BACKENDS:
        return True
    names = f.kernel_names.filter(pl.col("operator") == "attention")["kernel"]
    return f.is_gpu and not any(FUSED_KERNEL.search(n) for n in names)


def _pair_attention_speedup(f: RunFacts) -> tuple[float, int] | None:
    """The attention speedup of this run's own stored flash pair, else of the model's latest."""
    if f.model_name is None:
        return None
    pairs = backend_speedups(f.session, f.run.attention_backend or "baseline", "flash", model=f.model_name)
    pairs = pairs.filter(pl.col("operator_speedup").is_not_null())
    if pairs.is_empty():
        return None
    own = pairs.filter(pl.col("baseline_run_id") == f.run_id)
    row = (own if not own.is_empty() else pairs.sort("other_run_id")).row(-1, named=True)
    return float(row["operator_speedup"]), int(row["other_run_id"])


def _key(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (name or "").lower())


def launch_bound(f: RunFacts) -> Finding | None:
    kernels = f.launched
    bound = kernels.filter(pl.col("dur_ns") < pl.col("launch_dur_ns"))
    if kernels.is_empty() or bound.height < MIN_LAUNCH_BOUND_KERNELS:
        return None
    share = bound.height / kernels.height
    if share < MIN_LAUNCH_BOUND_SHARE:
        return None
    excess = int((bound["launch_dur_ns"] - bound["dur_ns"]).sum())
    # A busy GPU hides the host's launch time: a graph can only give back time the device sat idle.
    device_idle = int(f.utilization["idle_ns"].sum())
    saved = min(excess, device_idle)
    if not f.run.span_ns or saved < MIN_LAUNCH_SAVED_SHARE * f.run.span_ns:
        return None
    return Finding(
        f"{share:.0%} of launched kernels ran shorter than their launch call: launch-bound "
        "(capture the step in a CUDA graph)",
        saved,
        {
            "kernels": kernels.height,
            "launch_bound_kernels": bound.height,
            "launch_bound_share": share,
            "launch_ns": int(bound["launch_dur_ns"].sum()),
            "gpu_ns": int(bound["dur_ns"].sum()),
            "launch_excess_ns": excess,
            "device_idle_ns": device_idle,
        },
        "min(Σ over launch-bound kernels of (launch_dur_ns − dur_ns), device idle time): the host "
        "time a graph launch no longer spends per kernel, as far as the GPU waited for it",
    )


def idle_host_wait(f: RunFacts) -> Finding | None:
    if not f.is_gpu or f.idle.is_empty() or not f.run.span_ns:
        return None
    per_stream = f.idle.filter(pl.col("idle_category") == "host_wait").sort(
        "idle_ns", "stream", descending=[True, False]
    )
    worst = per_stream.row(0, named=True)
    device = f.utilization.filter(pl.col("device") == worst["device"])
    device_idle = int(device["idle_ns"][0]) if device.height else 0
    saved = min(int(worst["idle_ns"]), device_idle)
    if saved < MIN_HOST_WAIT_SHARE * f.run.span_ns:
        return None
    return Finding(
        f"the GPU waits on the host: {saved / f.run.span_ns:.0%} of the span is idle with the next "
        f"launch not yet issued (device {worst['device']}, stream {worst['stream']})",
        saved,
        {
            "device": worst["device"],
            "stream": worst["stream"],
            "host_wait_ns": int(worst["idle_ns"]),
            "host_wait_gaps": int(worst["gaps"]),
            "device_idle_ns": device_idle,
            "span_ns": f.run.span_ns,
        },
        "min(host-wait idle of the worst stream, the device's idle time): what overlapping "
        "host work (data loading, launches) with the GPU could recover",
    )


def pageable_copies(f: RunFacts) -> Finding | None:
    names = f.kernel_names.filter(pl.col("kind") == "memcpy")
    pageable = names.filter(
        pl.col("kernel").map_elements(lambda n: bool(PAGEABLE_COPY.search(n)), return_dtype=pl.Boolean)
        & pl.col("kernel").str.contains("HtoD")
    )
    copy_ns = int(pageable["total_ns"].sum())
    if copy_ns < MIN_PAGEABLE_NS:
        return None
    saved = round(copy_ns * (1 - 1 / PINNED_SPEEDUP))
    return Finding(
        f"{int(pageable['kernel_count'].sum())} host-to-device copies from pageable memory "
        f"({copy_ns / 1e6:.2f} ms): pin the host buffers (pin_memory=True, non_blocking=True)",
        saved,
        {
            "pageable_htod_ns": copy_ns,
            "pageable_htod_copies": int(pageable["kernel_count"].sum()),
            "assumed_pinned_speedup": PINNED_SPEEDUP,
        },
        f"copy time × (1 − 1/{PINNED_SPEEDUP:g}): pinned copies skip the staging copy and run asynchronously",
    )


def fp32_simt_gemm(f: RunFacts) -> Finding | None:
    hw = f.hardware
    if not f.is_gpu or hw is None or not hw.peak_fp32_flops or hw.vendor != "nvidia":
        return None
    target = hw.peak_tf32_flops or hw.peak_fp16_flops
    if not target:
        return None
    simt = f.kernel_names.filter(pl.col("kind") == "kernel").filter(
        pl.col("kernel").map_elements(
            lambda n: bool(SIMT_FP32_GEMM.search(n)) and not TENSOR_CORE.search(n), return_dtype=pl.Boolean
        )
    )
    gemm_ns = int(simt["total_ns"].sum())
    if not f.run.total_ns or gemm_ns < MIN_FP32_GEMM_SHARE * f.run.total_ns:
        return None
    mode = "TF32" if hw.peak_tf32_flops else "FP16/BF16 autocast"
    saved = round(gemm_ns * (1 - hw.peak_fp32_flops / target))
    return Finding(
        f"FP32 GEMM / convolution kernels on the CUDA cores ({gemm_ns / f.run.total_ns:.0%} of kernel "
        f"time) on a device with tensor cores: enable {mode}",
        saved,
        {
            "fp32_simt_ns": gemm_ns,
            "fp32_simt_kernels": int(simt["kernel_count"].sum()),
            "peak_fp32_flops": hw.peak_fp32_flops,
            "peak_target_flops": target,
            "target": mode,
        },
        "kernel time × (1 − peak FP32 / peak tensor-core FLOP/s): compute-bound upper bound",
    )


def conv_after_fused_attention(f: RunFacts) -> Finding | None:
    fused = (f.run.attention_backend or "").lower() in FUSED_BACKENDS or any(
        FUSED_KERNEL.search(n) for n in f.kernel_names.filter(pl.col("operator") == "attention")["kernel"]
    )
    conv_ns = f.operators.get("conv", 0)
    if not fused or not f.run.total_ns or conv_ns < MIN_CONV_SHARE * f.run.total_ns:
        return None
    largest = max(f.operators, key=lambda op: (f.operators[op], op))
    if largest != "conv":
        return None
    return Finding(
        f"with attention fused, convolution is the largest operator ({conv_ns / f.run.total_ns:.0%}): "
        "the paper's finding for diffusion models; tune conv (channels_last, cudnn.benchmark)",
        None,
        {
            "conv_ns": conv_ns,
            "total_ns": f.run.total_ns,
            "conv_share": conv_ns / f.run.total_ns,
            "attention_ns": f.operators.get("attention", 0),
        },
        "no stored measurement sizes a conv change: see `tracehouse roofline` for conv's "
        "efficiency against the device's ceiling",
    )


def temporal_attention_slow(f: RunFacts) -> Finding | None:
    """The paper's §VI bottleneck: temporal attention (the frame count its sequence length)
    running far below spatial attention's FLOP rate while taking much of the attention time."""
    rows = {row["attention_type"]: row for row in f.attention_types.iter_rows(named=True)}
    temporal, spatial = rows.get("temporal"), rows.get("spatial")
    if temporal is None or spatial is None or not temporal["achieved_flops_s"] or not spatial["achieved_flops_s"]:
        return None
    slowdown = spatial["achieved_flops_s"] / temporal["achieved_flops_s"]
    if temporal["time_share"] < MIN_TEMPORAL_SHARE or slowdown < MIN_TEMPORAL_SLOWDOWN:
        return None
    shaped_ns = temporal["flops"] / temporal["achieved_flops_s"] * 1e9  # its calls with known shapes
    at_spatial_rate_ns = temporal["flops"] / spatial["achieved_flops_s"] * 1e9
    return Finding(
        f"temporal attention runs at 1/{slowdown:.1f} of spatial attention's FLOP/s and takes "
        f"{temporal['time_share']:.0%} of attention time (the paper's §VI bottleneck: the frame count is its "
        "sequence length, so its matmuls are small): read its kernels' memory counters (Nsight Compute) "
        "and try a fused attention kernel for the temporal layers",
        round(shaped_ns - at_spatial_rate_ns),
        {
            "temporal_ns": temporal["total_ns"],
            "spatial_ns": spatial["total_ns"],
            "temporal_time_share": temporal["time_share"],
            "temporal_flops": temporal["flops"],
            "spatial_flops": spatial["flops"],
            "temporal_flops_s": temporal["achieved_flops_s"],
            "spatial_flops_s": spatial["achieved_flops_s"],
            "slowdown": slowdown,
        },
        "the time temporal attention's calls with known shapes would take at spatial attention's FLOP/s, "
        "taken from their time: an upper bound (short sequences rarely reach long ones' rate)",
    )


def exposed_communication(f: RunFacts) -> Finding | None:
    util = f.utilization.with_columns(exposed_ns=pl.col("communication_ns") - pl.col("overlap_ns"))
    if util.is_empty() or not f.run.span_ns:
        return None
    worst = util.sort("exposed_ns", descending=True).row(0, named=True)
    if worst["exposed_ns"] < MIN_EXPOSED_COMM_SHARE * f.run.span_ns:
        return None
    return Finding(
        f"{worst['exposed_ns'] / f.run.span_ns:.0%} of the span is communication not hidden under "
        "compute: overlap it (bucketed all-reduce, async collectives)",
        int(worst["exposed_ns"]),
        {
            "device": worst["device"],
            "communication_ns": int(worst["communication_ns"]),
            "overlap_ns": int(worst["overlap_ns"]),
            "exposed_ns": int(worst["exposed_ns"]),
            "span_ns": f.run.span_ns,
        },
        "communication_ns − overlap_ns (union of intervals): fully overlapped, it costs nothing",
    )


def other_share(f: RunFacts) -> Finding | None:
    other_ns = f.run.other_ns or 0
    if not f.run.total_ns or other_ns < MIN_OTHER_SHARE * f.run.total_ns:
        return None
    return Finding(
        f"{other_ns / f.run.total_ns:.0%} of kernel time is in `other`: no rule placed it, so the "
        "breakdown (and these findings) miss it; annotate the model or add a rule",
        None,
        {"other_ns": other_ns, "total_ns": f.run.total_ns, "other_share": other_ns / f.run.total_ns},
        "saves no time itself: a data-quality finding",
    )


def unstable_steps(f: RunFacts) -> Finding | None:
    steps = f.steps
    if steps.height < MIN_STEPS:
        return None
    times = steps["step_ns"]
    # One row of plain numbers (Series.mean() and kin are typed as any Python scalar, a date included).
    step_ns = pl.col("step_ns")
    row = steps.select(mean=step_ns.mean(), std=step_ns.std(ddof=0), median=step_ns.median(), max=step_ns.max()).row(0)
    mean, std, median, slowest = float(row[0]), float(row[1]), float(row[2]), int(row[3])
    if slowest < MAX_SLOWEST_OVER_MEDIAN * median:
        return None
    cv = std / mean if mean else 0.0
    saved = round(float((times - median).clip(lower_bound=0).sum()))
    return Finding(
        f"unstable step times: the slowest of {steps.height} steps took {slowest / median - 1:.0%} longer "
        "than the median: look for recompiles, allocator or data-loader stalls",
        saved,
        {
            "steps": steps.height,
            "mean_step_ns": mean,
            "std_step_ns": std,
            "median_step_ns": median,
            "max_step_ns": slowest,
            "cv": cv,
        },
        "Σ over steps of (step_ns − median), where positive: every step as fast as the median",
    )
