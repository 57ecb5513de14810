"""The experiment routes (``api/routes/experiments.py``): steps, diff, check, history, matrix
and baselines."""

from __future__ import annotations

from tracehouse.api.columns.catalogue import Table, col

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
    "position": col("integer", "", "Place in the series (by date, or by commit)"),
    "key": col("string", "", "What is tracked: total, an operator or an attention type"),
    "value": col("number", "", "Time (ns) or share, as asked"),
    "segment": col("integer", "", "Segment between change points, from 0"),
    "change_point": col("boolean", "", "A new segment begins at this run"),
    "segment_median": col("number", "", "Median value of the run's segment"),
    "change_ratio": col("number", "ratio", "This segment over the previous one (change points only)"),
    "change_low": col("number", "ratio", "Low end of its 95% interval"),
    "change_high": col("number", "ratio", "High end of its 95% interval"),
    "created_at": col("date-time", "", "When the run was ingested (UTC)"),
}

_DIFF_MEANINGS = {"delta_ns": col("number", "ns", "b_ns - a_ns")}


TABLES: dict[str, Table] = {
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
            "kind": col("string", "", "step / stage (run once: prefill, text encoder ...) / run"),
            "phase": col(
                "string", "", "Component the steps belong to (decode, unet ...; step for ProfilerStep#N traces)"
            ),
            "share": col("number", "fraction", "Share of the run's time (breakdown: of the step's)"),
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
            "value": col("number", "", "The key's time (ns) or share of the run, as asked"),
            "key": col("string", "", "Operator or attention type"),
        },
    ),
    "/v1/baselines": Table(
        ("baseline", "run_ids", "run_count", "note", "created_at"),
        overrides={
            "run_ids": col("integer[]", "", "The baseline's runs (repeats)"),
            "run_count": col("integer", "count", "Runs in the baseline"),
            "created_at": col("date-time", "", "When the baseline was set (UTC)"),
        },
    ),
}
