"""What to fix in a run (``tracehouse advise RUN``): every rule in :data:`RULES` looks at the
store's numbers for the run; those that fire become findings ranked by estimated time saved
(findings the store cannot size come last).  Each finding carries its evidence (the numbers,
as JSON), how the estimate was made, and the CLI command and REST path that show the evidence.

``saved_share`` is the estimate over the run's span (first kernel start to last kernel end).
Estimates overlap between rules and are not additive: see ``advise_rules``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy.orm import Session

from tracehouse.analyses import advise_rules as r
from tracehouse.analyses.advise_context import RunFacts
from tracehouse.core.errors import BadInput


@dataclass(frozen=True)
class Rule:
    """One row of the rule table; ``query`` / ``rest`` take ``{run}``."""

    id: str
    detects: str
    estimate_basis: str
    query: str
    rest: str
    check: Callable[[RunFacts], r.Finding | None]


RULES: tuple[Rule, ...] = (
    Rule(
        "attention.materialised",
        f"attention ≥ {r.MIN_ATTENTION_SHARE:.0%} of kernel time on the materialised (math / baseline) path",
        "stored baseline/flash pair's attention speedup s: attention_ns·(1 − 1/s); else Amdahl with the "
        "paper's Table II speedup, capped at attention_ns",
        "tracehouse speedups --model MODEL",
        "/v1/speedups?model=MODEL",
        r.attention_materialised,
    ),
    Rule(
        "launch.bound",
        f"≥ {r.MIN_LAUNCH_BOUND_SHARE:.0%} of ≥ {r.MIN_LAUNCH_BOUND_KERNELS} launched kernels shorter than "
        "their launch call (decode / small-kernel steps)",
        "min(Σ (launch_dur_ns − dur_ns) over launch-bound kernels, device idle) (CUDA graphs)",
        "tracehouse launches {run}",
        "/v1/runs/{run}/launches",
        r.launch_bound,
    ),
    Rule(
        "idle.host_wait",
        f"GPU idle while the host had not issued the next launch ≥ {r.MIN_HOST_WAIT_SHARE:.0%} of the span",
        "min(host-wait idle of the worst stream, device idle)",
        "tracehouse idle {run}",
        "/v1/runs/{run}/idle",
        r.idle_host_wait,
    ),
    Rule(
        "memcpy.pageable",
        f"host-to-device copies from pageable memory ≥ {r.MIN_PAGEABLE_NS / 1000:g} µs",
        f"copy time × (1 − 1/{r.PINNED_SPEEDUP:g}) (pinned memory)",
        "tracehouse breakdown {run} --by kernel",
        "/v1/runs/{run}/breakdown?by=kernel",
        r.pageable_copies,
    ),
    Rule(
        "gemm.fp32_simt",
        f"FP32 SIMT GEMM / conv kernels (sgemm, scudnn) ≥ {r.MIN_FP32_GEMM_SHARE:.0%} of kernel time on an "
        "NVIDIA device with tensor cores",
        "kernel time × (1 − peak FP32 / peak TF32 or FP16)",
        "tracehouse breakdown {run} --by kernel",
        "/v1/runs/{run}/breakdown?by=kernel",
        r.fp32_simt_gemm,
    ),
    Rule(
        "conv.after_fused_attention",
        f"attention fused and convolution the largest operator, ≥ {r.MIN_CONV_SHARE:.0%} (paper §IV)",
        "not sized (no stored measurement of a conv change)",
        "tracehouse roofline {run}",
        "/v1/runs/{run}/roofline",
        r.conv_after_fused_attention,
    ),
    Rule(
        "attention.temporal_slow",
        f"temporal attention ≥ {r.MIN_TEMPORAL_SHARE:.0%} of attention time at ≤ 1/{r.MIN_TEMPORAL_SLOWDOWN:g} of "
        "spatial attention's FLOP/s (paper §VI)",
        "temporal attention's shaped time − its FLOPs at spatial attention's FLOP/s",
        "tracehouse temporal-spatial {run}",
        "/v1/runs/{run}/temporal-spatial",
        r.temporal_attention_slow,
    ),
    Rule(
        "comm.exposed",
        f"communication not overlapped with compute ≥ {r.MIN_EXPOSED_COMM_SHARE:.0%} of the span",
        "communication_ns − overlap_ns on the worst device",
        "tracehouse utilization {run}",
        "/v1/runs/{run}/utilization",
        r.exposed_communication,
    ),
    Rule(
        "other.high",
        f"kernel time no rule placed (`other`) ≥ {r.MIN_OTHER_SHARE:.0%}",
        "not sized (a data-quality finding)",
        "tracehouse explain {run} --summary",
        "/v1/runs/{run}/explain?view=summary",
        r.other_share,
    ),
    Rule(
        "steps.unstable",
        f"≥ {r.MIN_STEPS} steps, the slowest ≥ {r.MAX_SLOWEST_OVER_MEDIAN:g} × the median step",
        "Σ (step_ns − median step) over slower-than-median steps",
        "tracehouse steps {run}",
        "/v1/runs/{run}/steps",
        r.unstable_steps,
    ),
)

ADVICE_SCHEMA = {
    "rank": pl.Int64,
    "rule": pl.String,
    "finding": pl.String,
    "saved_ns": pl.Int64,
    "saved_share": pl.Float64,
    "evidence": pl.String,
    "basis": pl.String,
    "query": pl.String,
    "rest": pl.String,
}


def rule_table() -> pl.DataFrame:
    """One row per rule: ``rule, detects, estimate_basis, query, rest``."""
    return pl.DataFrame(
        [
            {"rule": x.id, "detects": x.detects, "estimate_basis": x.estimate_basis, "query": x.query, "rest": x.rest}
            for x in RULES
        ]
    )


def advise(
    session: Session, run_id: int, rules: tuple[str, ...] | None = None, *, facts: RunFacts | None = None
) -> pl.DataFrame:
    """Findings for one run, best first (see the module docstring for the columns).
    ``rules``: only these rule ids (default: all).  ``facts``: the run's facts where a caller
    has read some of them already (the dashboard's run page draws its utilization)."""
    unknown = sorted(set(rules or ()) - {rule.id for rule in RULES})
    if unknown:
        raise BadInput(f"unknown rule {', '.join(unknown)}; see `tracehouse advise-rules`")
    facts = facts if facts is not None else RunFacts(session, run_id)
    rows = []
    for rule in RULES:
        if rules is not None and rule.id not in rules:
            continue
        finding = rule.check(facts)
        if finding is None:
            continue
        model = facts.model_name or "MODEL"
        rows.append(
            {
                "rule": rule.id,
                "finding": finding.summary,
                "saved_ns": finding.saved_ns,
                "saved_share": finding.saved_ns / facts.run.span_ns
                if finding.saved_ns is not None and facts.run.span_ns
                else None,
                "evidence": json.dumps(finding.evidence, sort_keys=True, default=_plain),
                "basis": finding.basis,
                "query": rule.query.format(run=run_id).replace("MODEL", model),
                "rest": rule.rest.format(run=run_id).replace("MODEL", model),
            }
        )
    frame = pl.DataFrame(rows, schema={k: v for k, v in ADVICE_SCHEMA.items() if k != "rank"})
    frame = frame.sort("saved_ns", "rule", descending=[True, False], nulls_last=True)
    return frame.with_columns(rank=pl.int_range(1, frame.height + 1, dtype=pl.Int64)).select(list(ADVICE_SCHEMA))


def _plain(value: object) -> object:
    """numpy / polars scalars in evidence as plain JSON numbers."""
    return value.item() if hasattr(value, "item") else str(value)
