"""Analyses across runs (``api/routes/analyses.py``): comparisons, speedups, sweeps, hardware,
distributed jobs and the model suite."""

from __future__ import annotations

from tracehouse.analyses.rank_jobs import JOB_RANK_COLUMNS
from tracehouse.api.columns.catalogue import Table, col

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


TABLES: dict[str, Table] = {
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
            "baseline_run_ids": col("integer[]", "", "Baseline runs, repeat by repeat"),
            "other_run_ids": col("integer[]", "", "Optimised runs, repeat by repeat"),
            "repeats": col("integer", "count", "Repeat pairs behind the medians"),
            "method": col("string", "", "median + percentile bootstrap 95%, or single run"),
            **{
                f"{f}_{end}": col(
                    "number",
                    "fraction" if f == "operator_share" else "ratio",
                    f"{end.capitalize()} end of {f}'s 95% interval",
                )
                for f in ("end_to_end_speedup", "operator_speedup", "amdahl_speedup", "operator_share")
                for end in ("low", "high")
            },
        },
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
            "total_ns": col("number", "ns", "Mean total kernel time of the runs at this knob value"),
            "median_ns": col("number", "ns", "Median total kernel time of the runs at this knob value"),
            "r2": col("number", "", "R² of the log-log fit over the series' runs"),
            "exponent_low": col("number", "", "Low end of the exponent's 95% interval (Student t)"),
            "exponent_high": col("number", "", "High end of the exponent's 95% interval (Student t)"),
        },
    ),
    "/v1/attention-flops": Table(("frames", "spatial_flops", "temporal_flops", "temporal_over_spatial")),
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
        overrides={"share": col("number", "fraction", "Operator share of the mean run time")},
    ),
    "/v1/jobs": Table(
        JOB_RANK_COLUMNS,
        overrides={
            "job": col(
                "string", "", "tag:<run tag job> or knobs:<model|hardware|world size|knobs> shared by the ranks"
            ),
            "world_size": col("integer", "count", "Ranks in the job"),
            "ranks_stored": col("integer", "count", "Rank runs of the job in the store"),
            "steps": col("integer", "count", "Steps of the rank's run"),
            "median_step_ns": col("number", "ns", "Median step time of the rank"),
            "max_step_ns": col("integer", "ns", "Slowest step of the rank"),
            "exposed_comm_ns": col("integer", "ns", "communication_ns - overlap_ns summed over devices"),
            "exposed_comm_share": col("number", "fraction", "exposed_comm_ns / span_ns"),
            "vs_job_median": col("number", "ratio", "median_step_ns / the job's median of rank medians"),
            "straggler": col("boolean", "", "vs_job_median >= 1.05 with more than one rank stored"),
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
            "capacity_bytes": col("number", "bytes", "param_count x bytes per element of the run's dtype"),
            "flops": col("number", "FLOP", "Analytic FLOPs of the run (GEMM, conv, attention with shapes)"),
            "time_ns": col("integer", "ns", "The run's summed kernel time"),
            "capacity_intensity": col("number", "FLOP/byte", "flops / capacity_bytes (the paper's Fig 5 x axis)"),
            "achieved_flops_s": col("number", "FLOP/s", "flops / time_ns"),
            "attainable_flops_s": col("number", "FLOP/s", "min(peak, capacity_intensity x bandwidth)"),
            "bound": col("string", "", "memory below the ridge point, else compute"),
        },
    ),
    "/v1/suite/ceilings": Table(
        ("hardware", "dtype", "peak_flops_s", "peak_bandwidth_bytes_s", "ridge_point"),
        overrides={"dtype": col("string", "", "Data type of the peak: fp64 ... int8")},
    ),
    "/v1/suite/compute-comm": Table(
        ("model", "world_size", "compute_share", "communication_share", "exposed_comm_share", "idle_share"),
        ("run_id", "rank", "span_ns", "runs"),
        overrides={
            "world_size": col("integer", "count", "GPUs in the job (1 when the trace says nothing)"),
            "communication_share": col("number", "fraction", "communication_ns / span_ns"),
            "exposed_comm_share": col("number", "fraction", "(communication_ns - overlap_ns) / span_ns"),
            "runs": col("integer", "count", "Runs of the model at this world size"),
        },
    ),
}
