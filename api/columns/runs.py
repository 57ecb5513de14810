"""The run routes (``api/routes/runs.py``): the run list, a run's breakdown and its kernel rows."""

from __future__ import annotations

from tracehouse.api.columns.catalogue import Table, col
from tracehouse.core.frames import KERNEL_ROW_SCHEMA

BREAKDOWN_KEYS = ("operator", "attention_type", "seq_q", "seq_kv", "component", "kernel", "kind", "min_ns", "max_ns")


# A run's kernel rows (names from the schema run_kernels reads them with): what the shared
# vocabulary does not say.
_KERNEL_ROW_MEANINGS = {
    "seq": col("integer", "", "Execution order within the run"),
    "stream": col("integer", "", "Stream"),
    "start_ns": col("integer", "ns", "Start"),
    "dur_ns": col("integer", "ns", "Duration"),
    "name": col("string", "", "Kernel name (host op name on CPU-only runs)"),
    "correlation": col("integer", "", "Correlation id joining the kernel to its launch"),
    **{
        f"{part}_{axis}": col("integer", "count", f"{part.capitalize()} size, {axis}")
        for part in ("grid", "block")
        for axis in "xyz"
    },
    "bytes": col("integer", "bytes", "Bytes moved by a memcpy / memset"),
    "operator_source": col("string", "", "What decided the operator: annotation / op / kernel_name / ..."),
    "cpu_op": col("string", "", "Enclosing aten op"),
    "annotation": col("string", "", "Enclosing collector annotation (th|...)"),
    "op_flops": col("integer", "FLOP", "Analytic FLOPs of the launching op, on its first kernel"),
    "op_bytes": col("integer", "bytes", "Analytic bytes of the launching op, on its first kernel"),
    "launch_ns": col("integer", "ns", "Host launch call start"),
    "launch_dur_ns": col("integer", "ns", "Host launch call duration"),
}


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
    "/v1/runs/{run_id}/breakdown": Table(("kernel_count", "total_ns", "share", "other_share"), BREAKDOWN_KEYS),
    "/v1/runs/{run_id}/kernels": Table(tuple(KERNEL_ROW_SCHEMA), overrides=_KERNEL_ROW_MEANINGS),
}
