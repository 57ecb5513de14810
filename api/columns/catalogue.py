"""The column vocabulary every table route shares: a name's type, unit and meaning, and the
``Table`` that lists a route's columns (with the names that mean something else there)."""

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


def col(type_: str, unit: str, description: str) -> Column:
    return Column(type_, unit, description)


COLUMNS: dict[str, Column] = {
    # Keys: what a kernel's time is attributed to (docs/schema.md says where each comes from).
    "run_id": col("integer", "", "Run id"),
    "operator": col("string", "", "Operator class: attention, linear, conv, norm, ... or other"),
    "attention_type": col("string", "", "self / cross / spatial / temporal / causal-decode; null when not attention"),
    "seq_q": col("integer", "tokens", "Attention query sequence length"),
    "seq_kv": col("integer", "tokens", "Attention key/value sequence length"),
    "seq_len": col("integer", "tokens", "The bucketed sequence length (seq_q or seq_kv, as asked)"),
    "batch": col("integer", "count", "Batch size"),
    "heads": col("integer", "count", "Attention heads"),
    "head_dim": col("integer", "count", "Elements per attention head"),
    "component": col("string", "", "Model component (text_encoder, unet, vae, ...)"),
    "step": col("integer", "", "Denoising / decode step"),
    "kernel": col("string", "", "Kernel name"),
    "kernel_name": col("string", "", "Kernel name as Nsight Compute reports it"),
    "kind": col("string", "", "kernel / memcpy / memset / cpu"),
    "device": col("integer", "", "Device index"),
    # Run metadata.
    "model": col("string", "", "Model name"),
    "name": col("string", "", "Model name"),
    "family": col("string", "", "llm / tti / ttv"),
    "architecture": col("string", "", "Model architecture"),
    "param_count": col("integer", "count", "Parameters"),
    "hardware": col("string", "", "Device name"),
    "attention_backend": col("string", "", "Attention implementation: baseline, flash, ..."),
    "scale": col("string", "", "tiny / paper"),
    "dtype": col("string", "", "Compute dtype"),
    "image_size": col("integer", "pixels", "Output image side"),
    "frames": col("integer", "count", "Video frames"),
    "denoising_steps": col("integer", "count", "Denoising steps"),
    "decode_tokens": col("integer", "count", "Tokens decoded"),
    "text_length": col("integer", "tokens", "Text encoder sequence length"),
    "device_kind": col("string", "", "gpu / cpu: what the run's kernel rows are"),
    "rank": col("integer", "", "Distributed rank"),
    "source": col(
        "string", "", "Where a figure comes from (runs: the trace's file name; roofline: counters or analytic)"
    ),
    "format": col("string", "", "Trace format: kineto / nsys / ncu"),
    "created_at": col("date-time", "", "When the run was ingested (UTC)"),
    "span_ns": col("integer", "ns", "First kernel start to last kernel end"),
    # Counts and times.
    "kernel_count": col(
        "integer",
        "count",
        "Activities counted: kernels (a breakdown's memcpy / memset groups count those; host ops on CPU-only runs)",
    ),
    "activity_count": col(
        "integer",
        "count",
        "Every activity on the run's timeline: kernels, memcpy and memset "
        "(host ops on CPU-only runs); what total_ns sums",
    ),
    "memcpy_count": col("integer", "count", "Memory copies on the run's timeline"),
    "memset_count": col("integer", "count", "Memory sets on the run's timeline"),
    "kernels": col("integer", "count", "Launched kernels"),
    "instances": col("integer", "count", "Kernel rows or launches in the group"),
    "call_count": col("integer", "count", "Attention calls"),
    "run_count": col("integer", "count", "Runs averaged"),
    "run_ids": col("integer[]", "", "The runs averaged"),
    "total_ns": col("integer", "ns", "Summed kernel time (busy time, not wall)"),
    "min_ns": col("integer", "ns", "Shortest kernel"),
    "max_ns": col("integer", "ns", "Longest kernel"),
    "time_ns": col("number", "ns", "Summed kernel time"),
    "time_s": col("number", "s", "Kernel duration measured by Nsight Compute"),
    "dur_ns": col("integer", "ns", "Summed kernel durations of the call"),
    "start_ns": col("integer", "ns", "First kernel's start"),
    "end_ns": col("integer", "ns", "Last kernel's end"),
    "share": col("number", "fraction", "Share of the run's total kernel time"),
    "normalized": col("number", "fraction", "Time over the reference run's total"),
    # Compare / Table II.
    "baseline_count": col("integer", "count", "Kernels in the baseline run"),
    "other_count": col("integer", "count", "Kernels in the other run"),
    "baseline_ns": col("integer", "ns", "Operator time in the baseline run"),
    # One name, two uses: the compared run (compare) and the unattributed operator (runs, explain).
    "other_ns": col(
        "integer",
        "ns",
        "compare: the operator's time in the other run; runs and explain: "
        "kernel time no rule attributed (operator other)",
    ),
    "speedup": col("number", "ratio", "Reference time over this time (above 1: faster)"),
    "baseline_share": col("number", "fraction", "Operator share of the baseline run"),
    "other_normalized": col("number", "fraction", "Other run's time over the baseline run's total"),
    "delta_ns": col("integer", "ns", "Other minus baseline"),
    "baseline_run_id": col("integer", "", "Baseline run id"),
    "other_run_id": col("integer", "", "Optimised run id"),
    "baseline_total_ns": col("integer", "ns", "Baseline run's total kernel time"),
    "other_total_ns": col("integer", "ns", "Other run's total kernel time"),
    "end_to_end_speedup": col("number", "ratio", "baseline_total_ns / other_total_ns"),
    "operator_baseline_ns": col("integer", "ns", "The operator's time in the baseline run"),
    "operator_other_ns": col("integer", "ns", "The operator's time in the other run"),
    "operator_speedup": col("number", "ratio", "The operator's speedup"),
    "operator_share": col("number", "fraction", "The operator's share of the baseline (f in Amdahl's law)"),
    "amdahl_speedup": col("number", "ratio", "1 / ((1 - f) + f / s)"),
    "amdahl_error": col("number", "fraction", "Measured over predicted speedup, minus 1"),
    "differences": col("string", "", "Knobs that differ between the two runs"),
    "exceeds_amdahl": col("boolean", "", "end_to_end_speedup > amdahl_speedup: more than the operator got faster"),
    # Attention calls, histogram, period.
    "call": col("integer", "", "Call ordinal (0-based)"),
    "first_seq": col("integer", "", "First kernel's execution order"),
    "last_seq": col("integer", "", "Last kernel's execution order"),
    "weight": col("integer", "count or ns", "call_count or total_ns, as asked"),
    "fraction": col("number", "fraction", "Share of the weight; sums to 1"),
    "position": col("integer", "", "Place in the repeating pattern"),
    "period": col("integer", "count", "Calls per repetition"),
    "offset": col("integer", "", "Call ordinal where the repetition starts"),
    "repeats": col("integer", "count", "Whole repetitions found"),
    # Sweep, attention FLOPs.
    "exponent": col("number", "", "Fitted growth exponent of time against the knob"),
    "flops": col("number", "FLOP", "Floating-point operations"),
    "shaped_calls": col("integer", "count", "Calls with known shapes"),
    "time_share": col("number", "fraction", "Share of attention time"),
    "flop_share": col("number", "fraction", "Share of attention FLOPs"),
    "achieved_flops_s": col("number", "FLOP/s", "FLOPs over time"),
    "time_vs_spatial": col("number", "ratio", "Time over spatial attention's"),
    "flops_vs_spatial": col("number", "ratio", "FLOPs over spatial attention's"),
    "spatial_flops": col("number", "FLOP", "Spatial attention FLOPs"),
    "temporal_flops": col("number", "FLOP", "Temporal attention FLOPs"),
    "temporal_over_spatial": col("number", "ratio", "temporal_flops / spatial_flops"),
    # Utilisation and launches.
    "busy_ns": col("integer", "ns", "Union of kernel intervals"),
    "idle_ns": col("integer", "ns", "span_ns - busy_ns"),
    "compute_ns": col("integer", "ns", "Union of compute kernels"),
    "non_compute_ns": col("integer", "ns", "Busy time not computing"),
    "communication_ns": col("integer", "ns", "Union of NCCL / RCCL kernels"),
    "memory_ns": col("integer", "ns", "Union of memcpy / memset"),
    "overlap_ns": col("integer", "ns", "Communication hidden under compute"),
    "idle_share": col("number", "fraction", "idle_ns / span_ns"),
    "compute_share": col("number", "fraction", "compute_ns / span_ns"),
    "non_compute_share": col("number", "fraction", "non_compute_ns / span_ns"),
    "comm_overlap_share": col("number", "fraction", "overlap_ns / communication_ns"),
    "gpu_ns": col("integer", "ns", "The kernels' run time"),
    "launch_ns": col("integer", "ns", "Host time in launch calls"),
    "launch_bound": col("integer", "count", "Kernels shorter than their launch call"),
    "delay_median_ns": col("number", "ns", "Median queue delay (start minus launch end)"),
    "delay_p95_ns": col("number", "ns", "95th percentile queue delay"),
    "delay_max_ns": col("integer", "ns", "Longest queue delay"),
    "launch_per_gpu": col("number", "ratio", "launch_ns / gpu_ns"),
    "launch_bound_share": col("number", "fraction", "launch_bound / directly launched kernels"),
    "graph_kernels": col("integer", "count", "Kernels a CUDA graph launched (no queue delay of their own)"),
    "launches": col("integer", "count", "Launch calls; a CUDA graph's once, however many kernels it ran"),
    # Why a kernel got its class (explain).
    "other_share": col("number", "fraction", "Share of the time no rule attributed (operator other)"),
    "graph_ns": col("integer", "ns", "Time in kernels a CUDA graph launched; null until a reingest for older runs"),
    "graph_share": col("number", "fraction", "graph_ns / total_ns"),
    "rule_name": col("string", "", "What the kernel-name rules match: the base name, no template or parameter lists"),
    "rule": col("string", "", "Id of the rule that decided the class (name.*, op.*, user.*, attention-scope)"),
    "decided_by": col("string", "", "The deciding op, annotation, rule name or kind"),
    "pattern": col("string", "", "The rule's case-insensitive regular expression"),
    "authoritative": col("boolean", "", "The rule decides over the enclosing op and annotations"),
    "origin": col("string", "", "Where the rule is written: built-in, or the rules file and line"),
    **{
        f"by_{s}_share": col("number", "fraction", f"Share of the run's time the {s} source decided")
        for s in ("annotation", "op", "kernel_name", "kind", "scope", "none")
    },
    # Roofline and costs.
    "bytes": col("number", "bytes", "Analytic memory traffic"),
    "dram_bytes": col("number", "bytes", "DRAM traffic"),
    "l2_bytes": col("number", "bytes", "L2 traffic"),
    "l1_bytes": col("number", "bytes", "L1 traffic"),
    "ai_dram": col("number", "FLOP/byte", "Arithmetic intensity at DRAM"),
    "ai_l2": col("number", "FLOP/byte", "Arithmetic intensity at L2"),
    "ai_l1": col("number", "FLOP/byte", "Arithmetic intensity at L1"),
    "arithmetic_intensity": col("number", "FLOP/byte", "flops / bytes"),
    "gflops_per_s": col("number", "GFLOP/s", "Achieved"),
    "peak_flops_s": col("number", "FLOP/s", "Device peak for the dtype"),
    "peak_bandwidth_bytes_s": col("number", "bytes/s", "Device peak memory bandwidth"),
    "attainable_flops_s": col("number", "FLOP/s", "min(peak, intensity x bandwidth)"),
    "ridge_point": col("number", "FLOP/byte", "peak_flops_s / peak_bandwidth_bytes_s"),
    "bound": col("string", "", "memory / compute"),
    "efficiency": col("number", "fraction", "Achieved over attainable FLOP/s"),
    "shaped_ns": col("integer", "ns", "Kernel time the analytic costs cover"),
    "elem_bytes": col("integer", "bytes", "Bytes per element of the dtype"),
    "attention_model": col("string", "", "Attention memory model used: fused or materialised"),
    # Nsight Compute counters.
    "kernel_id": col("integer", "", "Nsight Compute launch id (order within the run)"),
    "flops_fp64": col("number", "FLOP", "FP64 add + mul + 2 fma"),
    "flops_fp32": col("number", "FLOP", "FP32 add + mul + 2 fma"),
    "flops_fp16": col("number", "FLOP", "FP16 add + mul + 2 fma"),
    "tensor_inst": col("number", "count", "Tensor-pipe instructions"),
    "flops_tensor": col("number", "FLOP", "tensor_inst x tensor_flops_per_inst"),
    "l1_hit_rate_pct": col("number", "%", "L1 hit rate"),
    "l2_hit_rate_pct": col("number", "%", "L2 hit rate"),
    "dram_bytes_per_s": col("number", "bytes/s", "DRAM bandwidth achieved"),
    "l2_bytes_per_s": col("number", "bytes/s", "L2 bandwidth achieved"),
    "l1_bytes_per_s": col("number", "bytes/s", "L1 bandwidth achieved"),
    "linked": col("boolean", "", "Matched to a timeline kernel of the run"),
    "tensor_flops_per_inst": col("number", "FLOP", "Per tensor instruction on this architecture"),
    # Memory model.
    "stage": col("integer", "", "UNet stage (0: full latent resolution)"),
    "side_h": col("integer", "tokens", "Latent height at the stage"),
    "side_w": col("integer", "tokens", "Latent width at the stage"),
    "tokens": col("integer", "tokens", "side_h x side_w"),
    "visits": col("integer", "count", "Times one UNet pass visits the stage"),
    "self_bytes_per_call": col("integer", "bytes", "Self-attention similarity matrix"),
    "cross_bytes_per_call": col("integer", "bytes", "Cross-attention similarity matrix"),
    "bytes_per_visit": col("integer", "bytes", "Self plus cross"),
    "stage_bytes": col("integer", "bytes", "bytes_per_visit x visits"),
    "cumulative_bytes": col("integer", "bytes", "Sum over stages so far"),
    "self_calls": col("integer", "count", "Self-attention calls seen at the stage"),
    "cross_calls": col("integer", "count", "Cross-attention calls seen at the stage"),
    "observed_self_bytes_per_call": col("integer", "bytes", "From the run's stored shapes"),
    "observed_cross_bytes_per_call": col("integer", "bytes", "From the run's stored shapes"),
    "observed_bytes": col("integer", "bytes", "From the run's stored shapes"),
    "matches": col("boolean", "", "The formula agrees with the observed shapes"),
    # Hardware comparison.
    "run_total_ns": col("number", "ns", "Mean total kernel time of the runs"),
    "operator_ns": col("number", "ns", "Mean operator time"),
    # Fleet.
    "cluster": col("string", "", "Cluster"),
    "gpu": col("string", "", "GPU type"),
    "gpu_type": col("string", "", "GPU type"),
    "phase": col("string", "", "training / inference"),
    "month": col("string", "", "YYYY-MM of the jobs' start (UTC)"),
    "months": col("integer", "count", "Months with a ratio"),
    "jobs": col("integer", "count", "Cluster jobs"),
    "jobs_with_params": col("integer", "count", "Jobs whose model has a parameter count"),
    "job_id": col("string", "", "Scheduler job id"),
    "model_name": col("string", "", "Model name as the job records it"),
    "gpu_count": col("integer", "count", "GPUs of the job"),
    "gpu_hours": col("number", "GPU-hours", "GPU-hours"),
    "gpu_hours_per_bparam": col("number", "GPU-hours", "GPU-hours per billion parameters"),
    "gpus_per_bparam": col("number", "GPUs", "Job-weighted GPUs per billion parameters"),
    "gpus_per_bparam_std": col("number", "GPUs", "Its standard deviation"),
    "gpus_per_bparam_gpuh": col("number", "GPUs", "GPU-hour-weighted GPUs per billion parameters"),
    "mean_mem_util": col("number", "fraction", "GPU-hour-weighted mean memory utilisation"),
    "peak_mem_util": col("number", "fraction", "GPU-hour-weighted peak memory utilisation"),
    "sm_util": col("number", "fraction", "GPU-hour-weighted SM utilisation"),
    "fleet_jobs": col("integer", "count", "Fleet jobs of the model"),
    # Experiments, steps, diff and check.
    "experiment": col("string", "", "Experiment the run belongs to (repeats share one)"),
    "git_commit": col("string", "", "Git commit of the code that made the run"),
    "version": col("string", "", "Version string of the code that made the run"),
    "steps": col("integer", "count", "Steps (or 1 for a once-run stage)"),
    "warmup": col("boolean", "", "A leading step slower than 1.5x the median of the later ones"),
    "warmup_steps": col("integer", "count", "Warm-up steps, left out of steady-state figures"),
    "steady_median_ns": col("number", "ns", "Median time of the steady-state steps"),
    "steady_low_ns": col("number", "ns", "Low end of its 95% interval"),
    "steady_high_ns": col("number", "ns", "High end of its 95% interval"),
    "steady_mean_ns": col("number", "ns", "Mean time of the steady-state steps"),
    "throughput": col("number", "", "Throughput in throughput_unit"),
    "throughput_unit": col("string", "", "tokens/s (decode), steps/s, s/image (diffusion run)"),
    "method": col("string", "", "How the interval was computed"),
    "key": col("string", "", "Operator, attention type, kernel base name or component; (total) is the run"),
    "a_ns": col("number", "ns", "Mean time in A's runs"),
    "b_ns": col("number", "ns", "Mean time in B's runs"),
    "ratio": col("number", "ratio", "B / A"),
    "ratio_low": col("number", "ratio", "Low end of the ratio's 95% interval"),
    "ratio_high": col("number", "ratio", "High end of the ratio's 95% interval"),
    "a_share": col("number", "fraction", "Share of A's time"),
    "b_share": col("number", "fraction", "Share of B's time"),
    "a_samples": col("integer", "count", "A's samples behind the interval"),
    "b_samples": col("integer", "count", "B's samples behind the interval"),
    "samples": col("string", "", "What the samples are: runs (repeats), steps, or single (no interval)"),
    "status": col("string", "", "added / removed / slower / faster / same"),
    "regressed": col("boolean", "", "The ratio's whole interval lies above 1 + threshold"),
    "threshold": col("number", "fraction", "Smallest change that counts"),
    "baseline": col("string", "", "Baseline name"),
    "note": col("string", "", "What the baseline is"),
}
# Ratios to llm (fleet summary by family, ratio spread): unitless.
for _name in ("gpus_per_bparam", "gpus_per_bparam_gpuh", "mean_mem_util"):
    COLUMNS[f"{_name}_vs_llm"] = col("number", "ratio", f"{_name} over llm's")
    for _stat in ("min", "median", "max"):
        COLUMNS[f"{_name}_vs_llm_{_stat}"] = col("number", "ratio", f"{_stat} over months of {_name}_vs_llm")


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
