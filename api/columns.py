"""One catalogue of the columns the table routes return: name, type, unit and meaning.

The OpenAPI document's row schema for every table route is generated from it
(``api.responses.install_openapi``), and ``tests/test_openapi.py`` checks each route's real
answer against what is documented here, so the two cannot drift apart silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Column:
    type: str  # integer / number / string / boolean / date-time / integer[]
    unit: str  # ns, s, bytes, FLOP, FLOP/s, bytes/s, FLOP/byte, fraction (0..1), %, count, or ""
    description: str

    def json_schema(self) -> dict[str, object]:
        if self.type == "date-time":
            schema: dict[str, object] = {"type": "string", "format": "date-time"}
        elif self.type == "integer[]":
            schema = {"type": "array", "items": {"type": "integer"}}
        else:
            schema = {"type": self.type}
        unit = f" [{self.unit}]" if self.unit else ""
        return {**schema, "description": self.description + unit, "x-unit": self.unit}


def _c(type_: str, unit: str, description: str) -> Column:
    return Column(type_, unit, description)


COLUMNS: dict[str, Column] = {
    # Keys: what a kernel's time is attributed to (docs/schema.md says where each comes from).
    "run_id": _c("integer", "", "Run id"),
    "operator": _c("string", "", "Operator class: attention, linear, conv, norm, ... or other"),
    "attention_type": _c("string", "", "self / cross / spatial / temporal / causal-decode; null when not attention"),
    "seq_q": _c("integer", "tokens", "Attention query sequence length"),
    "seq_kv": _c("integer", "tokens", "Attention key/value sequence length"),
    "seq_len": _c("integer", "tokens", "The bucketed sequence length (seq_q or seq_kv, as asked)"),
    "batch": _c("integer", "count", "Batch size"),
    "heads": _c("integer", "count", "Attention heads"),
    "head_dim": _c("integer", "count", "Elements per attention head"),
    "component": _c("string", "", "Model component (text_encoder, unet, vae, ...)"),
    "step": _c("integer", "", "Denoising / decode step"),
    "kernel": _c("string", "", "Kernel name"),
    "kernel_name": _c("string", "", "Kernel name as Nsight Compute reports it"),
    "kind": _c("string", "", "kernel / memcpy / memset / cpu"),
    "device": _c("integer", "", "Device index"),
    # Run metadata.
    "model": _c("string", "", "Model name"),
    "name": _c("string", "", "Model name"),
    "family": _c("string", "", "llm / tti / ttv"),
    "architecture": _c("string", "", "Model architecture"),
    "param_count": _c("integer", "count", "Parameters"),
    "hardware": _c("string", "", "Device name"),
    "attention_backend": _c("string", "", "Attention implementation: baseline, flash, ..."),
    "scale": _c("string", "", "tiny / paper"),
    "dtype": _c("string", "", "Compute dtype"),
    "image_size": _c("integer", "pixels", "Output image side"),
    "frames": _c("integer", "count", "Video frames"),
    "denoising_steps": _c("integer", "count", "Denoising steps"),
    "decode_tokens": _c("integer", "count", "Tokens decoded"),
    "text_length": _c("integer", "tokens", "Text encoder sequence length"),
    "device_kind": _c("string", "", "gpu / cpu: what the run's kernel rows are"),
    "rank": _c("integer", "", "Distributed rank"),
    "source": _c(
        "string", "", "Where a figure comes from (runs: the trace's file name; roofline: counters or analytic)"
    ),
    "format": _c("string", "", "Trace format: kineto / nsys / ncu"),
    "created_at": _c("date-time", "", "When the run was ingested (UTC)"),
    "span_ns": _c("integer", "ns", "First kernel start to last kernel end"),
    # Counts and times.
    "kernel_count": _c(
        "integer",
        "count",
        "Activities counted: kernels (a breakdown's memcpy / memset groups count those; host ops on CPU-only runs)",
    ),
    "activity_count": _c(
        "integer",
        "count",
        "Every activity on the run's timeline: kernels, memcpy and memset "
        "(host ops on CPU-only runs); what total_ns sums",
    ),
    "memcpy_count": _c("integer", "count", "Memory copies on the run's timeline"),
    "memset_count": _c("integer", "count", "Memory sets on the run's timeline"),
    "kernels": _c("integer", "count", "Launched kernels"),
    "instances": _c("integer", "count", "Kernel rows or launches in the group"),
    "call_count": _c("integer", "count", "Attention calls"),
    "run_count": _c("integer", "count", "Runs averaged"),
    "run_ids": _c("integer[]", "", "The runs averaged"),
    "total_ns": _c("integer", "ns", "Summed kernel time (busy time, not wall)"),
    "min_ns": _c("integer", "ns", "Shortest kernel"),
    "max_ns": _c("integer", "ns", "Longest kernel"),
    "time_ns": _c("number", "ns", "Summed kernel time"),
    "time_s": _c("number", "s", "Kernel duration measured by Nsight Compute"),
    "dur_ns": _c("integer", "ns", "Summed kernel durations of the call"),
    "start_ns": _c("integer", "ns", "First kernel's start"),
    "end_ns": _c("integer", "ns", "Last kernel's end"),
    "share": _c("number", "fraction", "Share of the run's total kernel time"),
    "normalized": _c("number", "fraction", "Time over the reference run's total"),
    # Compare / Table II.
    "baseline_count": _c("integer", "count", "Kernels in the baseline run"),
    "other_count": _c("integer", "count", "Kernels in the other run"),
    "baseline_ns": _c("integer", "ns", "Operator time in the baseline run"),
    # One name, two uses: the compared run (compare) and the unattributed operator (runs, explain).
    "other_ns": _c(
        "integer",
        "ns",
        "compare: the operator's time in the other run; runs and explain: "
        "kernel time no rule attributed (operator other)",
    ),
    "speedup": _c("number", "ratio", "Reference time over this time (above 1: faster)"),
    "baseline_share": _c("number", "fraction", "Operator share of the baseline run"),
    "other_normalized": _c("number", "fraction", "Other run's time over the baseline run's total"),
    "delta_ns": _c("integer", "ns", "Other minus baseline"),
    "baseline_run_id": _c("integer", "", "Baseline run id"),
    "other_run_id": _c("integer", "", "Optimised run id"),
    "baseline_total_ns": _c("integer", "ns", "Baseline run's total kernel time"),
    "other_total_ns": _c("integer", "ns", "Other run's total kernel time"),
    "end_to_end_speedup": _c("number", "ratio", "baseline_total_ns / other_total_ns"),
    "operator_baseline_ns": _c("integer", "ns", "The operator's time in the baseline run"),
    "operator_other_ns": _c("integer", "ns", "The operator's time in the other run"),
    "operator_speedup": _c("number", "ratio", "The operator's speedup"),
    "operator_share": _c("number", "fraction", "The operator's share of the baseline (f in Amdahl's law)"),
    "amdahl_speedup": _c("number", "ratio", "1 / ((1 - f) + f / s)"),
    "amdahl_error": _c("number", "fraction", "Measured over predicted speedup, minus 1"),
    "differences": _c("string", "", "Knobs that differ between the two runs"),
    "exceeds_amdahl": _c("boolean", "", "end_to_end_speedup > amdahl_speedup: more than the operator got faster"),
    # Attention calls, histogram, period.
    "call": _c("integer", "", "Call ordinal (0-based)"),
    "first_seq": _c("integer", "", "First kernel's execution order"),
    "last_seq": _c("integer", "", "Last kernel's execution order"),
    "weight": _c("integer", "count or ns", "call_count or total_ns, as asked"),
    "fraction": _c("number", "fraction", "Share of the weight; sums to 1"),
    "position": _c("integer", "", "Place in the repeating pattern"),
    "period": _c("integer", "count", "Calls per repetition"),
    "offset": _c("integer", "", "Call ordinal where the repetition starts"),
    "repeats": _c("integer", "count", "Whole repetitions found"),
    # Sweep, attention FLOPs.
    "exponent": _c("number", "", "Fitted growth exponent of time against the knob"),
    "flops": _c("number", "FLOP", "Floating-point operations"),
    "shaped_calls": _c("integer", "count", "Calls with known shapes"),
    "time_share": _c("number", "fraction", "Share of attention time"),
    "flop_share": _c("number", "fraction", "Share of attention FLOPs"),
    "achieved_flops_s": _c("number", "FLOP/s", "FLOPs over time"),
    "time_vs_spatial": _c("number", "ratio", "Time over spatial attention's"),
    "flops_vs_spatial": _c("number", "ratio", "FLOPs over spatial attention's"),
    "spatial_flops": _c("number", "FLOP", "Spatial attention FLOPs"),
    "temporal_flops": _c("number", "FLOP", "Temporal attention FLOPs"),
    "temporal_over_spatial": _c("number", "ratio", "temporal_flops / spatial_flops"),
    # Utilisation and launches.
    "busy_ns": _c("integer", "ns", "Union of kernel intervals"),
    "idle_ns": _c("integer", "ns", "span_ns - busy_ns"),
    "compute_ns": _c("integer", "ns", "Union of compute kernels"),
    "non_compute_ns": _c("integer", "ns", "Busy time not computing"),
    "communication_ns": _c("integer", "ns", "Union of NCCL / RCCL kernels"),
    "memory_ns": _c("integer", "ns", "Union of memcpy / memset"),
    "overlap_ns": _c("integer", "ns", "Communication hidden under compute"),
    "idle_share": _c("number", "fraction", "idle_ns / span_ns"),
    "compute_share": _c("number", "fraction", "compute_ns / span_ns"),
    "non_compute_share": _c("number", "fraction", "non_compute_ns / span_ns"),
    "comm_overlap_share": _c("number", "fraction", "overlap_ns / communication_ns"),
    "gpu_ns": _c("integer", "ns", "The kernels' run time"),
    "launch_ns": _c("integer", "ns", "Host time in launch calls"),
    "launch_bound": _c("integer", "count", "Kernels shorter than their launch call"),
    "delay_median_ns": _c("number", "ns", "Median queue delay (start minus launch end)"),
    "delay_p95_ns": _c("number", "ns", "95th percentile queue delay"),
    "delay_max_ns": _c("integer", "ns", "Longest queue delay"),
    "launch_per_gpu": _c("number", "ratio", "launch_ns / gpu_ns"),
    "launch_bound_share": _c("number", "fraction", "launch_bound / directly launched kernels"),
    "graph_kernels": _c("integer", "count", "Kernels a CUDA graph launched (no queue delay of their own)"),
    "launches": _c("integer", "count", "Launch calls; a CUDA graph's once, however many kernels it ran"),
    # Why a kernel got its class (explain).
    "other_share": _c("number", "fraction", "Share of the time no rule attributed (operator other)"),
    "graph_ns": _c("integer", "ns", "Time in kernels a CUDA graph launched; null until a reingest for older runs"),
    "graph_share": _c("number", "fraction", "graph_ns / total_ns"),
    "rule_name": _c("string", "", "What the kernel-name rules match: the base name, no template or parameter lists"),
    "rule": _c("string", "", "Id of the rule that decided the class (name.*, op.*, user.*, attention-scope)"),
    "decided_by": _c("string", "", "The deciding op, annotation, rule name or kind"),
    "pattern": _c("string", "", "The rule's case-insensitive regular expression"),
    "authoritative": _c("boolean", "", "The rule decides over the enclosing op and annotations"),
    "origin": _c("string", "", "Where the rule is written: built-in, or the rules file and line"),
    **{
        f"by_{s}_share": _c("number", "fraction", f"Share of the run's time the {s} source decided")
        for s in ("annotation", "op", "kernel_name", "kind", "scope", "none")
    },
    # Roofline and costs.
    "bytes": _c("number", "bytes", "Analytic memory traffic"),
    "dram_bytes": _c("number", "bytes", "DRAM traffic"),
    "l2_bytes": _c("number", "bytes", "L2 traffic"),
    "l1_bytes": _c("number", "bytes", "L1 traffic"),
    "ai_dram": _c("number", "FLOP/byte", "Arithmetic intensity at DRAM"),
    "ai_l2": _c("number", "FLOP/byte", "Arithmetic intensity at L2"),
    "ai_l1": _c("number", "FLOP/byte", "Arithmetic intensity at L1"),
    "arithmetic_intensity": _c("number", "FLOP/byte", "flops / bytes"),
    "gflops_per_s": _c("number", "GFLOP/s", "Achieved"),
    "peak_flops_s": _c("number", "FLOP/s", "Device peak for the dtype"),
    "peak_bandwidth_bytes_s": _c("number", "bytes/s", "Device peak memory bandwidth"),
    "attainable_flops_s": _c("number", "FLOP/s", "min(peak, intensity x bandwidth)"),
    "ridge_point": _c("number", "FLOP/byte", "peak_flops_s / peak_bandwidth_bytes_s"),
    "bound": _c("string", "", "memory / compute"),
    "efficiency": _c("number", "fraction", "Achieved over attainable FLOP/s"),
    "shaped_ns": _c("integer", "ns", "Kernel time the analytic costs cover"),
    "elem_bytes": _c("integer", "bytes", "Bytes per element of the dtype"),
    "attention_model": _c("string", "", "Attention memory model used: fused or materialised"),
    # Nsight Compute counters.
    "kernel_id": _c("integer", "", "Nsight Compute launch id (order within the run)"),
    "flops_fp64": _c("number", "FLOP", "FP64 add + mul + 2 fma"),
    "flops_fp32": _c("number", "FLOP", "FP32 add + mul + 2 fma"),
    "flops_fp16": _c("number", "FLOP", "FP16 add + mul + 2 fma"),
    "tensor_inst": _c("number", "count", "Tensor-pipe instructions"),
    "flops_tensor": _c("number", "FLOP", "tensor_inst x tensor_flops_per_inst"),
    "l1_hit_rate_pct": _c("number", "%", "L1 hit rate"),
    "l2_hit_rate_pct": _c("number", "%", "L2 hit rate"),
    "dram_bytes_per_s": _c("number", "bytes/s", "DRAM bandwidth achieved"),
    "l2_bytes_per_s": _c("number", "bytes/s", "L2 bandwidth achieved"),
    "l1_bytes_per_s": _c("number", "bytes/s", "L1 bandwidth achieved"),
    "linked": _c("boolean", "", "Matched to a timeline kernel of the run"),
    "tensor_flops_per_inst": _c("number", "FLOP", "Per tensor instruction on this architecture"),
    # Memory model.
    "stage": _c("integer", "", "UNet stage (0: full latent resolution)"),
    "side_h": _c("integer", "tokens", "Latent height at the stage"),
    "side_w": _c("integer", "tokens", "Latent width at the stage"),
    "tokens": _c("integer", "tokens", "side_h x side_w"),
    "visits": _c("integer", "count", "Times one UNet pass visits the stage"),
    "self_bytes_per_call": _c("integer", "bytes", "Self-attention similarity matrix"),
    "cross_bytes_per_call": _c("integer", "bytes", "Cross-attention similarity matrix"),
    "bytes_per_visit": _c("integer", "bytes", "Self plus cross"),
    "stage_bytes": _c("integer", "bytes", "bytes_per_visit x visits"),
    "cumulative_bytes": _c("integer", "bytes", "Sum over stages so far"),
    "self_calls": _c("integer", "count", "Self-attention calls seen at the stage"),
    "cross_calls": _c("integer", "count", "Cross-attention calls seen at the stage"),
    "observed_self_bytes_per_call": _c("integer", "bytes", "From the run's stored shapes"),
    "observed_cross_bytes_per_call": _c("integer", "bytes", "From the run's stored shapes"),
    "observed_bytes": _c("integer", "bytes", "From the run's stored shapes"),
    "matches": _c("boolean", "", "The formula agrees with the observed shapes"),
    # Hardware comparison.
    "run_total_ns": _c("number", "ns", "Mean total kernel time of the runs"),
    "operator_ns": _c("number", "ns", "Mean operator time"),
    # Fleet.
    "cluster": _c("string", "", "Cluster"),
    "gpu": _c("string", "", "GPU type"),
    "gpu_type": _c("string", "", "GPU type"),
    "phase": _c("string", "", "training / inference"),
    "month": _c("string", "", "YYYY-MM of the jobs' start (UTC)"),
    "months": _c("integer", "count", "Months with a ratio"),
    "jobs": _c("integer", "count", "Cluster jobs"),
    "jobs_with_params": _c("integer", "count", "Jobs whose model has a parameter count"),
    "job_id": _c("string", "", "Scheduler job id"),
    "model_name": _c("string", "", "Model name as the job records it"),
    "gpu_count": _c("integer", "count", "GPUs of the job"),
    "gpu_hours": _c("number", "GPU-hours", "GPU-hours"),
    "gpu_hours_per_bparam": _c("number", "GPU-hours", "GPU-hours per billion parameters"),
    "gpus_per_bparam": _c("number", "GPUs", "Job-weighted GPUs per billion parameters"),
    "gpus_per_bparam_std": _c("number", "GPUs", "Its standard deviation"),
    "gpus_per_bparam_gpuh": _c("number", "GPUs", "GPU-hour-weighted GPUs per billion parameters"),
    "mean_mem_util": _c("number", "fraction", "GPU-hour-weighted mean memory utilisation"),
    "peak_mem_util": _c("number", "fraction", "GPU-hour-weighted peak memory utilisation"),
    "sm_util": _c("number", "fraction", "GPU-hour-weighted SM utilisation"),
    "fleet_jobs": _c("integer", "count", "Fleet jobs of the model"),
    # Experiments, steps, diff and check.
    "experiment": _c("string", "", "Experiment the run belongs to (repeats share one)"),
    "git_commit": _c("string", "", "Git commit of the code that made the run"),
    "version": _c("string", "", "Version string of the code that made the run"),
    "steps": _c("integer", "count", "Steps (or 1 for a once-run stage)"),
    "warmup": _c("boolean", "", "A leading step slower than 1.5x the median of the later ones"),
    "warmup_steps": _c("integer", "count", "Warm-up steps, left out of steady-state figures"),
    "steady_median_ns": _c("number", "ns", "Median time of the steady-state steps"),
    "steady_low_ns": _c("number", "ns", "Low end of its 95% interval"),
    "steady_high_ns": _c("number", "ns", "High end of its 95% interval"),
    "steady_mean_ns": _c("number", "ns", "Mean time of the steady-state steps"),
    "throughput": _c("number", "", "Throughput in throughput_unit"),
    "throughput_unit": _c("string", "", "tokens/s (decode), steps/s, s/image (diffusion run)"),
    "method": _c("string", "", "How the interval was computed"),
    "key": _c("string", "", "Operator, attention type, kernel base name or component; (total) is the run"),
    "a_ns": _c("number", "ns", "Mean time in A's runs"),
    "b_ns": _c("number", "ns", "Mean time in B's runs"),
    "ratio": _c("number", "ratio", "B / A"),
    "ratio_low": _c("number", "ratio", "Low end of the ratio's 95% interval"),
    "ratio_high": _c("number", "ratio", "High end of the ratio's 95% interval"),
    "a_share": _c("number", "fraction", "Share of A's time"),
    "b_share": _c("number", "fraction", "Share of B's time"),
    "a_samples": _c("integer", "count", "A's samples behind the interval"),
    "b_samples": _c("integer", "count", "B's samples behind the interval"),
    "samples": _c("string", "", "What the samples are: runs (repeats), steps, or single (no interval)"),
    "status": _c("string", "", "added / removed / slower / faster / same"),
    "regressed": _c("boolean", "", "The ratio's whole interval lies above 1 + threshold"),
    "threshold": _c("number", "fraction", "Smallest change that counts"),
    "baseline": _c("string", "", "Baseline name"),
    "note": _c("string", "", "What the baseline is"),
}
# Ratios to llm (fleet summary by family, ratio spread): unitless.
for _name in ("gpus_per_bparam", "gpus_per_bparam_gpuh", "mean_mem_util"):
    COLUMNS[f"{_name}_vs_llm"] = _c("number", "ratio", f"{_name} over llm's")
    for _stat in ("min", "median", "max"):
        COLUMNS[f"{_name}_vs_llm_{_stat}"] = _c("number", "ratio", f"{_stat} over months of {_name}_vs_llm")


@dataclass(frozen=True, slots=True)
class Table:
    """A table route's columns: ``always`` present, ``optional`` depending on the parameters
    (``by``, ``knob``...); ``overrides`` where a name means something else on this route."""

    always: tuple[str, ...]
    optional: tuple[str, ...] = ()
    overrides: dict[str, Column] = field(default_factory=dict)

    def column(self, name: str) -> Column:
        return self.overrides.get(name) or COLUMNS[name]

    def names(self) -> tuple[str, ...]:
        return self.always + self.optional


_RUN_KNOBS = (
    "attention_backend",
    "hardware",
    "dtype",
    "scale",
    "device_kind",
    "frames",
    "batch",
    "denoising_steps",
    "decode_tokens",
    "text_length",
    "image_size",
)
_ROOFLINE = (
    "instances",
    "time_ns",
    "flops",
    "dram_bytes",
    "l2_bytes",
    "l1_bytes",
    "ai_dram",
    "ai_l2",
    "ai_l1",
    "gflops_per_s",
    "source",
    "peak_flops_s",
    "peak_bandwidth_bytes_s",
    "attainable_flops_s",
    "bound",
    "efficiency",
)
_LAUNCHES = (
    "kernels",
    "graph_kernels",
    "launches",
    "gpu_ns",
    "launch_ns",
    "launch_bound",
    "delay_median_ns",
    "delay_p95_ns",
    "delay_max_ns",
    "launch_per_gpu",
    "launch_bound_share",
)
_BREAKDOWN_KEYS = ("operator", "attention_type", "seq_q", "seq_kv", "component", "kernel", "kind", "min_ns", "max_ns")
_SUMMARY = (
    "baseline_run_id",
    "other_run_id",
    "baseline_total_ns",
    "other_total_ns",
    "end_to_end_speedup",
    "operator",
    "operator_baseline_ns",
    "operator_other_ns",
    "operator_speedup",
    "operator_share",
    "amdahl_speedup",
    "amdahl_error",
    "other_normalized",
    "differences",
    "exceeds_amdahl",
)
_STAGES = (
    "stage",
    "side_h",
    "side_w",
    "tokens",
    "visits",
    "self_bytes_per_call",
    "cross_bytes_per_call",
    "bytes_per_visit",
    "stage_bytes",
    "cumulative_bytes",
)
_FLEET = (
    "jobs",
    "gpu_hours",
    "jobs_with_params",
    "gpus_per_bparam",
    "gpus_per_bparam_std",
    "gpus_per_bparam_gpuh",
    "mean_mem_util",
    "peak_mem_util",
    "sm_util",
)

# A run's kernel rows as stored (docs/schema.md, table `kernel`), names spelled out.
_KERNEL_ROW = (
    "seq",
    "kind",
    "device",
    "stream",
    "start_ns",
    "dur_ns",
    "name",
    "correlation",
    "grid_x",
    "grid_y",
    "grid_z",
    "block_x",
    "block_y",
    "block_z",
    "bytes",
    "operator",
    "operator_source",
    "attention_type",
    "seq_q",
    "seq_kv",
    "batch",
    "heads",
    "head_dim",
    "component",
    "step",
    "cpu_op",
    "annotation",
    "op_flops",
    "op_bytes",
    "launch_ns",
    "launch_dur_ns",
)
_KERNEL_ROW_MEANINGS = {
    "seq": _c("integer", "", "Execution order within the run"),
    "stream": _c("integer", "", "Stream"),
    "start_ns": _c("integer", "ns", "Start"),
    "dur_ns": _c("integer", "ns", "Duration"),
    "name": _c("string", "", "Kernel name (host op name on CPU-only runs)"),
    "correlation": _c("integer", "", "Correlation id joining the kernel to its launch"),
    **{
        f"{part}_{axis}": _c("integer", "count", f"{part.capitalize()} size, {axis}")
        for part in ("grid", "block")
        for axis in "xyz"
    },
    "bytes": _c("integer", "bytes", "Bytes moved by a memcpy / memset"),
    "operator_source": _c("string", "", "What decided the operator: annotation / op / kernel_name / ..."),
    "cpu_op": _c("string", "", "Enclosing aten op"),
    "annotation": _c("string", "", "Enclosing collector annotation (th|...)"),
    "op_flops": _c("integer", "FLOP", "Analytic FLOPs of the launching op, on its first kernel"),
    "op_bytes": _c("integer", "bytes", "Analytic bytes of the launching op, on its first kernel"),
    "launch_ns": _c("integer", "ns", "Host launch call start"),
    "launch_dur_ns": _c("integer", "ns", "Host launch call duration"),
}

_ADVICE = {
    "rank": _c("integer", "", "1 = largest estimated saving; unsized findings last"),
    "rule": _c("string", "", "Advice rule id (tracehouse advise-rules)"),
    "finding": _c("string", "", "What the rule found, in one sentence"),
    "saved_ns": _c("integer", "ns", "Estimated time saved (upper bound; null when the store cannot size it)"),
    "saved_share": _c("number", "fraction", "saved_ns / the run's span"),
    "evidence": _c("string", "", "The numbers from the store, as a JSON object"),
    "basis": _c("string", "", "How the estimate was made on this run"),
    "query": _c("string", "", "CLI command that shows the evidence"),
    "rest": _c("string", "", "REST path that shows the evidence"),
    "detects": _c("string", "", "What the rule detects, with its threshold"),
    "estimate_basis": _c("string", "", "How the rule estimates the time saved"),
}
_DIFF = (
    "key",
    "a_ns",
    "b_ns",
    "delta_ns",
    "ratio",
    "ratio_low",
    "ratio_high",
    "a_share",
    "b_share",
    "a_samples",
    "b_samples",
    "samples",
    "status",
    "method",
)
_HISTORY_MEANINGS = {
    "position": _c("integer", "", "Place in the series (by date, or by commit)"),
    "key": _c("string", "", "What is tracked: total, an operator or an attention type"),
    "value": _c("number", "", "Time (ns) or share, as asked"),
    "segment": _c("integer", "", "Segment between change points, from 0"),
    "change_point": _c("boolean", "", "A new segment begins at this run"),
    "segment_median": _c("number", "", "Median value of the run's segment"),
    "change_ratio": _c("number", "ratio", "This segment over the previous one (change points only)"),
    "change_low": _c("number", "ratio", "Low end of its 95% interval"),
    "change_high": _c("number", "ratio", "High end of its 95% interval"),
    "created_at": _c("date-time", "", "When the run was ingested (UTC)"),
}
_DIFF_MEANINGS = {"delta_ns": _c("number", "ns", "b_ns - a_ns")}

# Keyed by the route's path as the OpenAPI document spells it (GET routes).
TABLES: dict[str, Table] = {
    "/v1/runs": Table(
        (
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
            "rank",
            "activity_count",
            "kernel_count",
            "memcpy_count",
            "memset_count",
            "total_ns",
            "span_ns",
            "source",
            "format",
            "created_at",
            "other_ns",
            "graph_ns",
            "other_share",
            "graph_share",
            "experiment",
            "git_commit",
            "version",
        )
    ),
    "/v1/runs/{run_id}/breakdown": Table(("kernel_count", "total_ns", "share", "other_share"), _BREAKDOWN_KEYS),
    "/v1/runs/{run_id}/kernels": Table(_KERNEL_ROW, overrides=_KERNEL_ROW_MEANINGS),
    # One table per view: kernels (the default), summary, rules.
    "/v1/runs/{run_id}/explain": Table(
        (),
        (
            "kernel",
            "rule_name",
            "kind",
            "operator",
            "attention_type",
            "source",
            "rule",
            "decided_by",
            "kernels",
            "graph_kernels",
            "total_ns",
            "share",
            "run_id",
            "kernel_count",
            "other_ns",
            "graph_ns",
            "other_share",
            "graph_share",
            *(f"by_{s}_share" for s in ("annotation", "op", "kernel_name", "kind", "scope", "none")),
            "pattern",
            "authoritative",
            "origin",
        ),
        overrides={
            "kind": _c("string", "", "kernels: kernel / memcpy / memset / cpu; rules: name / op / scope"),
            "source": _c("string", "", "What decided the class: kind, kernel_name, annotation, op, scope or none"),
            "share": _c("number", "fraction", "Share of the run's kernel time"),
            "kernels": _c("integer", "count", "Kernel rows (rules: that the rule decided)"),
        },
    ),
    "/v1/runs/{run_id}/normalized": Table(
        ("kernel_count", "total_ns", "share", "normalized", "other_share"), _BREAKDOWN_KEYS
    ),
    # Per-operator rows, or with ``summary`` the one Amdahl row.
    "/v1/compare": Table(
        (),
        tuple(
            dict.fromkeys(
                (
                    "operator",
                    "baseline_count",
                    "other_count",
                    "baseline_ns",
                    "other_ns",
                    "speedup",
                    "baseline_share",
                    "other_normalized",
                    "delta_ns",
                    *_SUMMARY,
                )
            )
        ),
    ),
    # Per latest pair, or (experiment / repeats) per pair group over repeats.
    "/v1/speedups": Table(
        (
            "model",
            "family",
            "hardware",
            "scale",
            "batch",
            "dtype",
            "image_size",
            "frames",
            "denoising_steps",
            "decode_tokens",
            "text_length",
            "device_kind",
        ),
        (
            *_SUMMARY,
            "experiment",
            "repeats",
            "baseline_run_ids",
            "other_run_ids",
            *(
                f"{f}_{end}"
                for f in ("end_to_end_speedup", "operator_speedup", "amdahl_speedup", "operator_share")
                for end in ("low", "high")
            ),
            "method",
        ),
        overrides={
            "baseline_run_ids": _c("integer[]", "", "Baseline runs, repeat by repeat"),
            "other_run_ids": _c("integer[]", "", "Optimised runs, repeat by repeat"),
            "repeats": _c("integer", "count", "Repeat pairs behind the medians"),
            "method": _c("string", "", "median + percentile bootstrap 95%, or single run"),
            **{
                f"{f}_{end}": _c(
                    "number",
                    "fraction" if f == "operator_share" else "ratio",
                    f"{end.capitalize()} end of {f}'s 95% interval",
                )
                for f in ("end_to_end_speedup", "operator_speedup", "amdahl_speedup", "operator_share")
                for end in ("low", "high")
            },
        },
    ),
    "/v1/runs/{run_id}/attention-calls": Table(
        (
            "call",
            "first_seq",
            "last_seq",
            "kernel_count",
            "start_ns",
            "end_ns",
            "dur_ns",
            "attention_type",
            "seq_q",
            "seq_kv",
            "batch",
            "heads",
            "head_dim",
            "component",
            "step",
        )
    ),
    "/v1/runs/{run_id}/seq-len-histogram": Table(("seq_len", "call_count", "total_ns", "weight", "fraction")),
    "/v1/runs/{run_id}/period": Table(
        ("position", "attention_type", "seq_q", "seq_kv", "component", "period", "offset", "repeats", "call_count")
    ),
    "/v1/sweep": Table(
        (
            "operator",
            "total_ns",
            "median_ns",
            "run_count",
            "run_ids",
            "exponent",
            "r2",
            "exponent_low",
            "exponent_high",
        ),
        (*_RUN_KNOBS, "experiment"),
        {
            "total_ns": _c("number", "ns", "Mean total kernel time of the runs at this knob value"),
            "median_ns": _c("number", "ns", "Median total kernel time of the runs at this knob value"),
            "r2": _c("number", "", "R² of the log-log fit over the series' runs"),
            "exponent_low": _c("number", "", "Low end of the exponent's 95% interval (Student t)"),
            "exponent_high": _c("number", "", "High end of the exponent's 95% interval (Student t)"),
        },
    ),
    "/v1/runs/{run_id}/temporal-spatial": Table(
        (
            "attention_type",
            "call_count",
            "kernel_count",
            "total_ns",
            "flops",
            "shaped_calls",
            "time_share",
            "flop_share",
            "achieved_flops_s",
            "time_vs_spatial",
            "flops_vs_spatial",
        )
    ),
    "/v1/attention-flops": Table(("frames", "spatial_flops", "temporal_flops", "temporal_over_spatial")),
    "/v1/runs/{run_id}/utilization": Table(
        (
            "device",
            "span_ns",
            "busy_ns",
            "idle_ns",
            "compute_ns",
            "non_compute_ns",
            "communication_ns",
            "memory_ns",
            "overlap_ns",
            "idle_share",
            "compute_share",
            "non_compute_share",
            "comm_overlap_share",
        )
    ),
    "/v1/runs/{run_id}/idle": Table(
        ("device", "stream", "idle_category", "gaps", "idle_ns", "idle_share"),
        overrides={
            "stream": _c("integer", "", "Stream"),
            "idle_category": _c(
                "string",
                "",
                "host_wait (launch came after the previous kernel ended), kernel_wait (shorter gap) or other",
            ),
            "gaps": _c("integer", "count", "Idle intervals between consecutive kernels of the stream"),
            "idle_ns": _c("integer", "ns", "Summed idle intervals of the category"),
            "idle_share": _c("number", "fraction", "idle_ns / the stream's idle time"),
        },
    ),
    "/v1/runs/{run_id}/advice": Table(
        ("rank", "rule", "finding", "saved_ns", "saved_share", "evidence", "basis", "query", "rest"), overrides=_ADVICE
    ),
    "/v1/advice/rules": Table(("rule", "detects", "estimate_basis", "query", "rest"), overrides=_ADVICE),
    "/v1/jobs": Table(
        (
            "job",
            "world_size",
            "ranks_stored",
            "rank",
            "run_id",
            "steps",
            "median_step_ns",
            "max_step_ns",
            "span_ns",
            "communication_ns",
            "exposed_comm_ns",
            "exposed_comm_share",
            "vs_job_median",
            "straggler",
        ),
        overrides={
            "job": _c("string", "", "tag:<run tag job> or knobs:<model|hardware|world size|knobs> shared by the ranks"),
            "world_size": _c("integer", "count", "Ranks in the job"),
            "ranks_stored": _c("integer", "count", "Rank runs of the job in the store"),
            "steps": _c("integer", "count", "Steps of the rank's run"),
            "median_step_ns": _c("number", "ns", "Median step time of the rank"),
            "max_step_ns": _c("integer", "ns", "Slowest step of the rank"),
            "exposed_comm_ns": _c("integer", "ns", "communication_ns - overlap_ns summed over devices"),
            "exposed_comm_share": _c("number", "fraction", "exposed_comm_ns / span_ns"),
            "vs_job_median": _c("number", "ratio", "median_step_ns / the job's median of rank medians"),
            "straggler": _c("boolean", "", "vs_job_median >= 1.05 with more than one rank stored"),
        },
    ),
    "/v1/suite/model-points": Table(
        (
            "model",
            "family",
            "hardware",
            "run_id",
            "dtype",
            "param_count",
            "capacity_bytes",
            "flops",
            "time_ns",
            "capacity_intensity",
            "achieved_flops_s",
            "peak_flops_s",
            "peak_bandwidth_bytes_s",
            "ridge_point",
            "attainable_flops_s",
            "bound",
        ),
        overrides={
            "capacity_bytes": _c("number", "bytes", "param_count x bytes per element of the run's dtype"),
            "flops": _c("number", "FLOP", "Analytic FLOPs of the run (GEMM, conv, attention with shapes)"),
            "time_ns": _c("integer", "ns", "The run's summed kernel time"),
            "capacity_intensity": _c("number", "FLOP/byte", "flops / capacity_bytes (the paper's Fig 5 x axis)"),
            "achieved_flops_s": _c("number", "FLOP/s", "flops / time_ns"),
            "attainable_flops_s": _c("number", "FLOP/s", "min(peak, capacity_intensity x bandwidth)"),
            "bound": _c("string", "", "memory below the ridge point, else compute"),
        },
    ),
    "/v1/suite/ceilings": Table(
        ("hardware", "dtype", "peak_flops_s", "peak_bandwidth_bytes_s", "ridge_point"),
        overrides={"dtype": _c("string", "", "Data type of the peak: fp64 ... int8")},
    ),
    "/v1/suite/compute-comm": Table(
        ("model", "world_size", "compute_share", "communication_share", "exposed_comm_share", "idle_share"),
        ("run_id", "rank", "span_ns", "runs"),
        overrides={
            "world_size": _c("integer", "count", "GPUs in the job (1 when the trace says nothing)"),
            "communication_share": _c("number", "fraction", "communication_ns / span_ns"),
            "exposed_comm_share": _c("number", "fraction", "(communication_ns - overlap_ns) / span_ns"),
            "runs": _c("integer", "count", "Runs of the model at this world size"),
        },
    ),
    "/v1/runs/{run_id}/critical-path": Table(
        (),
        (
            "operator",
            "kernel_ns",
            "launch_ns",
            "host_ns",
            "wait_ns",
            "path_ns",
            "share",
            "resource",
            "start_ns",
            "end_ns",
            "dur_ns",
        ),
        overrides={
            "kernel_ns": _c("integer", "ns", "GPU kernel time of the operator on the critical path"),
            "launch_ns": _c("integer", "ns", "Launch-call time on the path"),
            "host_ns": _c(
                "integer", "ns", "Host time between launch calls on the path, charged to the next launch's op"
            ),
            "wait_ns": _c("integer", "ns", "Queue waits and host waits on the GPU on the path"),
            "path_ns": _c("integer", "ns", "kernel_ns + launch_ns + host_ns + wait_ns"),
            "share": _c("number", "fraction", "path_ns / the path's length"),
            "resource": _c("string", "", "segments view: kernel, launch, host or wait"),
            "start_ns": _c("integer", "ns", "Segment start"),
            "end_ns": _c("integer", "ns", "Segment end"),
            "dur_ns": _c("integer", "ns", "Segment length"),
        },
    ),
    "/v1/runs/{run_id}/memory-peak": Table(
        (
            "component",
            "params",
            "weight_bytes",
            "activation_peak_bytes",
            "similarity_bytes",
            "peak_bytes",
            "weight_share",
            "activation_share",
            "similarity_share",
            "measured_peak_bytes",
        ),
        overrides={
            "component": _c("string", "", "Model component (unet, text_encoder ...); null: the whole run"),
            "params": _c("integer", "count", "Parameters of the component"),
            "weight_bytes": _c(
                "integer", "bytes", "params x bytes per element (whole run: the collector's weight_bytes)"
            ),
            "activation_peak_bytes": _c(
                "integer",
                "bytes",
                "Allocator peak in the component's range less the weights, from the profiler's memory events",
            ),
            "similarity_bytes": _c(
                "integer", "bytes", "Largest attention similarity matrix e*B*H*Lq*Lkv; 0 when fused"
            ),
            "peak_bytes": _c("integer", "bytes", "weight_bytes + activation_peak_bytes (whole run: the run's peak)"),
            "weight_share": _c("number", "fraction", "weight_bytes / peak_bytes"),
            "activation_share": _c("number", "fraction", "activation_peak_bytes / peak_bytes"),
            "similarity_share": _c("number", "fraction", "similarity_bytes / peak_bytes"),
            "measured_peak_bytes": _c(
                "integer",
                "bytes",
                "Largest allocated total in the run's memory events (main device; per component: inside it);"
                " null without them",
            ),
        },
    ),
    "/v1/runs/{run_id}/memory-timeline": Table(
        (
            "device",
            "bucket",
            "start_ns",
            "offset_ns",
            "allocated_bytes",
            "allocated_end_bytes",
            "reserved_bytes",
            "events",
        ),
        overrides={
            "device": _c("string", "", "Device of the allocator: cpu, cuda:0 ..."),
            "bucket": _c("integer", "", "Time bucket, 0 .. points-1 (buckets without events are left out)"),
            "start_ns": _c("integer", "ns", "Bucket start, on the kernel rows' clock"),
            "offset_ns": _c("integer", "ns", "Bucket start less the run's first memory event"),
            "allocated_bytes": _c("integer", "bytes", "Largest allocated total in the bucket (peaks survive)"),
            "allocated_end_bytes": _c("integer", "bytes", "Allocated total after the bucket's last event"),
            "reserved_bytes": _c("integer", "bytes", "Largest reserved total in the bucket (caching allocators)"),
            "events": _c("integer", "count", "Allocations and frees in the bucket"),
        },
    ),
    "/v1/runs/{run_id}/memory-peak/live": Table(
        (
            "device",
            "peak_ns",
            "peak_offset_ns",
            "peak_bytes",
            "component",
            "operator",
            "attention_type",
            "live_bytes",
            "allocations",
            "share",
            "estimated_weight_bytes",
        ),
        overrides={
            "device": _c("string", "", "Device of the allocator: cpu, cuda:0 ..."),
            "peak_ns": _c("integer", "ns", "When the device's allocated total first reached its peak"),
            "peak_offset_ns": _c("integer", "ns", "peak_ns less the run's first memory event"),
            "peak_bytes": _c("integer", "bytes", "The device's largest allocated total"),
            "component": _c(
                "string",
                "",
                "Component the live allocations were made in; unattributed outside annotations;"
                " (before trace): held before profiling began",
            ),
            "operator": _c("string", "", "Operator they were made in (annotation, else the enclosing op's rule)"),
            "live_bytes": _c("integer", "bytes", "Bytes allocated there and not freed by the peak"),
            "allocations": _c("integer", "count", "Live allocations (null for the before-trace row)"),
            "share": _c("number", "fraction", "live_bytes / peak_bytes (a device's rows sum to 1)"),
            "estimated_weight_bytes": _c(
                "integer", "bytes", "Parameters x bytes per element (memory-peak's weights), for comparison"
            ),
        },
    ),
    "/v1/runs/{run_id}/launches": Table(_LAUNCHES, ("operator", "kernel", "attention_type", "component")),
    "/v1/runs/{run_id}/roofline": Table(_ROOFLINE, ("operator", "attention_type", "kernel")),
    "/v1/runs/{run_id}/operator-costs": Table(
        (
            "operator",
            "attention_type",
            "kernel_count",
            "time_ns",
            "flops",
            "bytes",
            "shaped_ns",
            "arithmetic_intensity",
            "achieved_flops_s",
            "hardware",
            "dtype",
            "elem_bytes",
            "attention_model",
            "peak_flops_s",
            "peak_bandwidth_bytes_s",
            "ridge_point",
            "attainable_flops_s",
            "bound",
            "efficiency",
        ),
        overrides={"time_ns": _c("integer", "ns", "Summed kernel time")},
    ),
    "/v1/runs/{run_id}/counter-roofline": Table(
        (
            "kernel_id",
            "kernel_name",
            "flops_fp64",
            "flops_fp32",
            "flops_fp16",
            "tensor_inst",
            "dram_bytes",
            "l2_bytes",
            "l1_bytes",
            "l1_hit_rate_pct",
            "l2_hit_rate_pct",
            "time_s",
            "flops_tensor",
            "flops",
            "time_ns",
            "ai_dram",
            "ai_l2",
            "ai_l1",
            "dram_bytes_per_s",
            "l2_bytes_per_s",
            "l1_bytes_per_s",
            "gflops_per_s",
            "kernel",
            "operator",
            "attention_type",
            "seq_q",
            "seq_kv",
            "component",
            "linked",
            "tensor_flops_per_inst",
            "peak_flops_s",
            "peak_bandwidth_bytes_s",
            "attainable_flops_s",
            "bound",
        )
    ),
    "/v1/memory-model": Table(_STAGES),
    "/v1/runs/{run_id}/memory-model": Table(
        (
            *_STAGES,
            "self_calls",
            "cross_calls",
            "observed_self_bytes_per_call",
            "observed_cross_bytes_per_call",
            "observed_bytes",
            "matches",
        )
    ),
    "/v1/hardware": Table(
        (
            "hardware",
            "run_count",
            "run_ids",
            "run_total_ns",
            "speedup",
            "operator",
            "operator_ns",
            "share",
            "operator_speedup",
        ),
        overrides={"share": _c("number", "fraction", "Operator share of the mean run time")},
    ),
    "/v1/fleet/summary": Table(
        _FLEET,
        (
            "family",
            "cluster",
            "gpu",
            "phase",
            "month",
            "model",
            "gpus_per_bparam_vs_llm",
            "gpus_per_bparam_gpuh_vs_llm",
            "mean_mem_util_vs_llm",
        ),
    ),
    "/v1/fleet/ratio-spread": Table(
        (
            "family",
            "months",
            *(
                f"{n}_vs_llm_{s}"
                for n in ("gpus_per_bparam", "gpus_per_bparam_gpuh", "mean_mem_util")
                for s in ("min", "median", "max")
            ),
        )
    ),
    "/v1/fleet/top-jobs": Table(
        (
            "job_id",
            "cluster",
            "model_name",
            "family",
            "param_count",
            "phase",
            "gpu_count",
            "gpu_type",
            "gpu_hours",
            "gpu_hours_per_bparam",
            "mean_mem_util",
            "peak_mem_util",
        )
    ),
    "/v1/runs/{run_id}/steps": Table(
        (),
        (
            "phase",
            "step",
            "kind",
            "kernel_count",
            "total_ns",
            "start_ns",
            "end_ns",
            "share",
            "warmup",
            "steps",
            "warmup_steps",
            "steady_median_ns",
            "steady_low_ns",
            "steady_high_ns",
            "steady_mean_ns",
            "throughput",
            "throughput_unit",
            "method",
            "operator",
            "attention_type",
        ),
        overrides={
            "kind": _c("string", "", "step / stage (run once: prefill, text encoder ...) / run"),
            "phase": _c(
                "string", "", "Component the steps belong to (decode, unet ...; step for ProfilerStep#N traces)"
            ),
            "share": _c("number", "fraction", "Share of the run's time (breakdown: of the step's)"),
        },
    ),
    "/v1/diff": Table(_DIFF, overrides=_DIFF_MEANINGS),
    "/v1/check": Table((*_DIFF, "regressed", "threshold", "baseline"), overrides=_DIFF_MEANINGS),
    "/v1/history": Table(
        (
            "position",
            "run_id",
            "git_commit",
            "version",
            "created_at",
            "key",
            "value",
            "segment",
            "change_point",
            "segment_median",
            "change_ratio",
            "change_low",
            "change_high",
        ),
        overrides=_HISTORY_MEANINGS,
    ),
    "/v1/matrix": Table(
        ("run_id", "model", "attention_backend", "experiment", "key", "value"),
        overrides={
            "value": _c("number", "", "The key's time (ns) or share of the run, as asked"),
            "key": _c("string", "", "Operator or attention type"),
        },
    ),
    "/v1/baselines": Table(
        ("baseline", "run_ids", "run_count", "note", "created_at"),
        overrides={
            "run_ids": _c("integer[]", "", "The baseline's runs (repeats)"),
            "run_count": _c("integer", "count", "Runs in the baseline"),
            "created_at": _c("date-time", "", "When the baseline was set (UTC)"),
        },
    ),
    "/v1/models": Table(("name", "family", "architecture", "param_count", "fleet_jobs")),
}
