"""One run's analyses (``api/routes/analyses.py``, ``/v1/runs/{run_id}/...``): attribution,
attention, utilisation, advice, critical path, memory, launches and rooflines."""

from __future__ import annotations

from tracehouse.api.columns.catalogue import Table, col
from tracehouse.api.columns.runs import BREAKDOWN_KEYS

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

_ADVICE = {
    "rank": col("integer", "", "1 = largest estimated saving; unsized findings last"),
    "rule": col("string", "", "Advice rule id (tracehouse advise-rules)"),
    "finding": col("string", "", "What the rule found, in one sentence"),
    "saved_ns": col("integer", "ns", "Estimated time saved (upper bound; null when the store cannot size it)"),
    "saved_share": col("number", "fraction", "saved_ns / the run's span"),
    "evidence": col("string", "", "The numbers from the store, as a JSON object"),
    "basis": col("string", "", "How the estimate was made on this run"),
    "query": col("string", "", "CLI command that shows the evidence"),
    "rest": col("string", "", "REST path that shows the evidence"),
    "detects": col("string", "", "What the rule detects, with its threshold"),
    "estimate_basis": col("string", "", "How the rule estimates the time saved"),
}


TABLES: dict[str, Table] = {
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
            "kind": col("string", "", "kernels: kernel / memcpy / memset / cpu; rules: name / op / scope"),
            "source": col("string", "", "What decided the class: kind, kernel_name, annotation, op, scope or none"),
            "share": col("number", "fraction", "Share of the run's kernel time"),
            "kernels": col("integer", "count", "Kernel rows (rules: that the rule decided)"),
        },
    ),
    "/v1/runs/{run_id}/normalized": Table(
        ("kernel_count", "total_ns", "share", "normalized", "other_share"), BREAKDOWN_KEYS
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
            "stream": col("integer", "", "Stream"),
            "idle_category": col(
                "string",
                "",
                "host_wait (launch came after the previous kernel ended), kernel_wait (shorter gap) or other",
            ),
            "gaps": col("integer", "count", "Idle intervals between consecutive kernels of the stream"),
            "idle_ns": col("integer", "ns", "Summed idle intervals of the category"),
            "idle_share": col("number", "fraction", "idle_ns / the stream's idle time"),
        },
    ),
    "/v1/runs/{run_id}/advice": Table(
        ("rank", "rule", "finding", "saved_ns", "saved_share", "evidence", "basis", "query", "rest"), overrides=_ADVICE
    ),
    "/v1/advice/rules": Table(("rule", "detects", "estimate_basis", "query", "rest"), overrides=_ADVICE),
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
            "kernel_ns": col("integer", "ns", "GPU kernel time of the operator on the critical path"),
            "launch_ns": col("integer", "ns", "Launch-call time on the path"),
            "host_ns": col(
                "integer", "ns", "Host time between launch calls on the path, charged to the next launch's op"
            ),
            "wait_ns": col("integer", "ns", "Queue waits and host waits on the GPU on the path"),
            "path_ns": col("integer", "ns", "kernel_ns + launch_ns + host_ns + wait_ns"),
            "share": col("number", "fraction", "path_ns / the path's length"),
            "resource": col("string", "", "segments view: kernel, launch, host or wait"),
            "start_ns": col("integer", "ns", "Segment start"),
            "end_ns": col("integer", "ns", "Segment end"),
            "dur_ns": col("integer", "ns", "Segment length"),
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
            "component": col("string", "", "Model component (unet, text_encoder ...); null: the whole run"),
            "params": col("integer", "count", "Parameters of the component"),
            "weight_bytes": col(
                "integer", "bytes", "params x bytes per element (whole run: the collector's weight_bytes)"
            ),
            "activation_peak_bytes": col(
                "integer",
                "bytes",
                "Allocator peak in the component's range less the weights, from the profiler's memory events",
            ),
            "similarity_bytes": col(
                "integer", "bytes", "Largest attention similarity matrix e*B*H*Lq*Lkv; 0 when fused"
            ),
            "peak_bytes": col("integer", "bytes", "weight_bytes + activation_peak_bytes (whole run: the run's peak)"),
            "weight_share": col("number", "fraction", "weight_bytes / peak_bytes"),
            "activation_share": col("number", "fraction", "activation_peak_bytes / peak_bytes"),
            "similarity_share": col("number", "fraction", "similarity_bytes / peak_bytes"),
            "measured_peak_bytes": col(
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
            "device": col("string", "", "Device of the allocator: cpu, cuda:0 ..."),
            "bucket": col("integer", "", "Time bucket, 0 .. points-1 (buckets without events are left out)"),
            "start_ns": col("integer", "ns", "Bucket start, on the kernel rows' clock"),
            "offset_ns": col("integer", "ns", "Bucket start less the run's first memory event"),
            "allocated_bytes": col("integer", "bytes", "Largest allocated total in the bucket (peaks survive)"),
            "allocated_end_bytes": col("integer", "bytes", "Allocated total after the bucket's last event"),
            "reserved_bytes": col("integer", "bytes", "Largest reserved total in the bucket (caching allocators)"),
            "events": col("integer", "count", "Allocations and frees in the bucket"),
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
            "device": col("string", "", "Device of the allocator: cpu, cuda:0 ..."),
            "peak_ns": col("integer", "ns", "When the device's allocated total first reached its peak"),
            "peak_offset_ns": col("integer", "ns", "peak_ns less the run's first memory event"),
            "peak_bytes": col("integer", "bytes", "The device's largest allocated total"),
            "component": col(
                "string",
                "",
                "Component the live allocations were made in; unattributed outside annotations;"
                " (before trace): held before profiling began",
            ),
            "operator": col("string", "", "Operator they were made in (annotation, else the enclosing op's rule)"),
            "live_bytes": col("integer", "bytes", "Bytes allocated there and not freed by the peak"),
            "allocations": col("integer", "count", "Live allocations (null for the before-trace row)"),
            "share": col("number", "fraction", "live_bytes / peak_bytes (a device's rows sum to 1)"),
            "estimated_weight_bytes": col(
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
        overrides={"time_ns": col("integer", "ns", "Summed kernel time")},
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
}
