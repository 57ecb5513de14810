"""Why each kernel got its class: per distinct kernel name, the operator and attention type it
was given, what decided them (``source``: the kernel's kind, an authoritative or plain
kernel-name rule, one of our annotations, the enclosing op, an attention scope, or nothing),
the rule's id and the deciding op or annotation, with its time and count.  And per run, how
much time no rule could place (``other``) and how much ran in CUDA-graph kernels, which are
attributed to the graph's launching op only.

A name-rule classifier that silently leaks time to ``other`` mis-reports every share built on
it; this is where to look before trusting a breakdown.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from tracehouse.analyses.common import get_run, ratio, to_frame
from tracehouse.core.errors import BadInput
from tracehouse.core.kernel_names import rule_name
from tracehouse.core.rules import NAME_RULES, OP_RULES, NameRule
from tracehouse.schema.models import Kernel, Symbol

VIEWS = ("kernels", "summary", "rules")
_GROUP_SCHEMA = {
    "kernel": pl.String,
    "kind": pl.String,
    "operator": pl.String,
    "attention_type": pl.String,
    "source": pl.String,
    "rule": pl.String,
    "deciding_op": pl.String,
    "annotation": pl.String,
    "cpu_op": pl.String,
    "graph": pl.Boolean,
    "kernels": pl.Int64,
    "total_ns": pl.Int64,
}


def explain(session: Session, run_id: int, kernel: str | None = None) -> pl.DataFrame:
    """One row per kernel name and way it was classified: ``kernel``, ``rule_name`` (what the
    name rules matched), ``kind``, ``operator``, ``attention_type``, ``source``, ``rule``,
    ``decided_by`` (the deciding op, annotation or rule name), ``kernels``, ``graph_kernels``,
    ``total_ns`` and ``share`` of the run's kernel time; largest first.  ``kernel`` keeps the
    names containing it (case-insensitive)."""
    run = get_run(session, run_id)
    groups = _groups(session, run_id)
    if kernel:
        groups = groups.filter(pl.col("kernel").str.to_lowercase().str.contains(kernel.lower(), literal=True))
    names = groups["kernel"].unique()
    rule_names = pl.DataFrame(
        {"kernel": names, "rule_name": [rule_name(n) for n in names.to_list()]},
        schema={"kernel": pl.String, "rule_name": pl.String},
    )
    decided_by = (
        pl.when(pl.col("source") == "op")
        .then("deciding_op")
        .when(pl.col("source") == "annotation")
        .then("annotation")
        .when(pl.col("source") == "scope")
        .then("cpu_op")
        .when(pl.col("source") == "kernel_name")
        .then("rule_name")
        .when(pl.col("source") == "kind")
        .then("kind")
    )
    keys = ["kernel", "rule_name", "kind", "operator", "attention_type", "source", "rule", "decided_by"]
    return (
        groups.join(rule_names, on="kernel", how="left")
        .with_columns(decided_by=decided_by)
        .group_by(keys)
        .agg(
            kernels=pl.col("kernels").sum(),
            graph_kernels=pl.col("kernels").filter(pl.col("graph")).sum(),
            total_ns=pl.col("total_ns").sum(),
        )
        .with_columns(share=ratio("total_ns", pl.lit(run.total_ns)))
        .sort("total_ns", "kernel", descending=[True, False])
    )


def explain_summary(session: Session, run_id: int) -> pl.DataFrame:
    """One row: the run's ``total_ns``, time and share in ``other`` and in CUDA-graph kernels,
    and the share of time each source decided (``by_<source>_share``)."""
    run = get_run(session, run_id)
    by_source = dict(
        session.execute(
            select(Kernel.operator_source, func.sum(Kernel.dur_ns))
            .where(Kernel.run_id == run_id)
            .group_by(Kernel.operator_source)
        ).all()
    )
    total = run.total_ns or 0
    row = {
        "run_id": run_id,
        "kernel_count": run.kernel_count,
        "total_ns": total,
        "other_ns": run.other_ns,
        "graph_ns": run.graph_ns,
    }
    shares = {
        f"by_{s}_share": (int(by_source.get(s) or 0) / total if total else None)
        for s in ("annotation", "op", "kernel_name", "kind", "scope", "none")
    }
    return pl.DataFrame(
        [row],
        schema={
            "run_id": pl.Int64,
            "kernel_count": pl.Int64,
            "total_ns": pl.Int64,
            "other_ns": pl.Int64,
            "graph_ns": pl.Int64,
        },
    ).with_columns(
        other_share=ratio("other_ns", "total_ns"),
        graph_share=ratio("graph_ns", "total_ns"),
        **{k: pl.lit(v, dtype=pl.Float64) for k, v in shares.items()},
    )


def explain_rules(session: Session, run_id: int, name_rules: Sequence[NameRule] = NAME_RULES) -> pl.DataFrame:
    """Every rule in effect (a lab's own first, then the built-in name rules, then the op
    rules) with the kernels and time it decided in the run: ``rule``, ``kind`` (name / op),
    ``operator``, ``attention_type``, ``authoritative``, ``origin``, ``pattern``, ``kernels``,
    ``total_ns``.  A rule that decided nothing has 0."""
    get_run(session, run_id)
    used = {
        r: (n, t)
        for r, n, t in session.execute(
            select(Kernel.rule_id, func.count(), func.sum(Kernel.dur_ns))
            .where(Kernel.run_id == run_id, Kernel.rule_id.is_not(None))
            .group_by(Kernel.rule_id)
        ).all()
    }
    rows = [(r.id, "name", r.operator, r.attention_type, r.authoritative, r.origin, r.pattern) for r in name_rules]
    rows += [
        (f"op.{op}", "op", op, None, False, f"built-in (priority {prio})", pattern) for op, prio, pattern in OP_RULES
    ]
    rows.append(
        ("attention-scope", "scope", "attention", None, False, "built-in", "matmul/softmax in an attention module")
    )
    frame = pl.DataFrame(
        rows,
        orient="row",
        schema={
            "rule": pl.String,
            "kind": pl.String,
            "operator": pl.String,
            "attention_type": pl.String,
            "authoritative": pl.Boolean,
            "origin": pl.String,
            "pattern": pl.String,
        },
    )
    return frame.with_columns(
        kernels=pl.Series([int(used.get(r, (0, 0))[0]) for r in frame["rule"]], dtype=pl.Int64),
        total_ns=pl.Series([int(used.get(r, (0, 0))[1] or 0) for r in frame["rule"]], dtype=pl.Int64),
    )


def explain_view(
    session: Session,
    run_id: int,
    view: str = "kernels",
    kernel: str | None = None,
    name_rules: Sequence[NameRule] = NAME_RULES,
) -> pl.DataFrame:
    """``view``: ``kernels`` (``explain``), ``summary`` or ``rules``."""
    if view not in VIEWS:
        raise BadInput(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if view == "summary":
        return explain_summary(session, run_id)
    if view == "rules":
        return explain_rules(session, run_id, name_rules)
    return explain(session, run_id, kernel)


def _groups(session: Session, run_id: int) -> pl.DataFrame:
    """Kernel rows grouped by everything that can decide a class, names resolved."""
    k = Kernel
    name, op, ann, cpu = (aliased(Symbol) for _ in range(4))
    keys = (
        name.text,
        k.kind,
        k.operator,
        k.attention_type,
        k.operator_source,
        k.rule_id,
        op.text,
        ann.text,
        cpu.text,
        k.graph,
    )
    stmt = (
        select(*keys, func.count(), func.sum(k.dur_ns))
        .join(name, name.id == k.name_id)
        .outerjoin(op, op.id == k.deciding_op_id)
        .outerjoin(ann, ann.id == k.annotation_id)
        .outerjoin(cpu, cpu.id == k.cpu_op_id)
        .where(k.run_id == run_id)
        .group_by(*keys)
    )
    return to_frame(session, stmt, _GROUP_SCHEMA)
