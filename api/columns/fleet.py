"""The fleet-usage routes (``api/routes/fleet_usage.py``): fleet summaries, top jobs and models."""

from __future__ import annotations

from tracehouse.api.columns.catalogue import Table

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


TABLES: dict[str, Table] = {
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
    "/v1/models": Table(("name", "family", "architecture", "param_count", "fleet_jobs")),
}
