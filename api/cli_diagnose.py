"""CLI subcommands that diagnose one run: why each kernel got its class (``explain``), why its
streams sat idle, what to fix (``advise``), its critical path, and multi-rank jobs.  Rendered
as every other table (``cli_analyses.show_frame``)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracehouse.api.cli_analyses import FormatOption, print_frame, show_frame
from tracehouse.api.cli_common import DbOption


def register(app: typer.Typer) -> None:
    _register_explain(app)
    _register_advice(app)


def _register_explain(app: typer.Typer) -> None:
    """Why each kernel got its class."""

    @app.command()
    def explain(
        run_id: int,
        kernel: Annotated[str | None, typer.Option(help="Only kernel names containing this")] = None,
        summary: Annotated[
            bool, typer.Option("--summary", help="Only the run's shares (other, graph, by source)")
        ] = False,
        rules: Annotated[
            bool, typer.Option("--rules", help="Every rule in effect and what it decided in the run")
        ] = False,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Per kernel name: its class, the rule / annotation / op that decided it, time and count;
        and the run's time left in `other` and in CUDA-graph kernels."""
        from tracehouse.analyses.explain import explain_view

        name_rules = _name_rules() if rules else ()
        view = "summary" if summary else "rules" if rules else "kernels"
        if view == "kernels" and fmt == "table":  # a terminal gets the run's shares first
            show_frame(
                db,
                fmt,
                f"run {run_id}: time no rule placed, and in CUDA graphs",
                lambda s: explain_view(s, run_id, "summary"),
                (
                    "total_ns",
                    "other_ns",
                    "other_share",
                    "graph_ns",
                    "graph_share",
                    "by_op_share",
                    "by_kernel_name_share",
                    "by_annotation_share",
                ),
            )
        columns = {
            "kernels": (
                "rule_name",
                "kind",
                "operator",
                "attention_type",
                "source",
                "rule",
                "decided_by",
                "kernels",
                "total_ns",
                "share",
            ),
            "rules": ("rule", "kind", "operator", "attention_type", "authoritative", "origin", "kernels", "total_ns"),
        }.get(view)
        show_frame(
            db,
            fmt,
            f"run {run_id} explained ({view})",
            lambda s: explain_view(s, run_id, view, kernel, name_rules),
            columns,
        )


def _name_rules() -> tuple:
    """The kernel-name rules in effect: the data dir's ``rules.toml`` (if any), then ours."""
    from tracehouse.core.settings import load_settings
    from tracehouse.ingest.user_rules import name_rules_for

    return name_rules_for(load_settings().rules_file())


def _register_advice(app: typer.Typer) -> None:
    """Idle time per stream and the ranked advice."""

    @app.command()
    def idle(
        run_id: int,
        consecutive_kernel_delay_ns: Annotated[
            int, typer.Option(help="Gaps shorter than this (and not a host wait) are kernel waits; HTA's default")
        ] = 30_000,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Why each stream sat idle: host wait, kernel wait, other (HTA's idle-time breakdown)."""
        from tracehouse.analyses.idle import idle_time_breakdown

        show_frame(
            db, fmt, f"run {run_id} idle time", lambda s: idle_time_breakdown(s, run_id, consecutive_kernel_delay_ns)
        )

    @app.command()
    def advise(
        run_id: int,
        rule: Annotated[list[str] | None, typer.Option(help="Only this rule id (repeatable)")] = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """What to fix: findings ranked by estimated time saved, with evidence and the query that shows it."""
        from tracehouse.analyses.advise import advise as run_advice

        show_frame(
            db,
            fmt,
            f"run {run_id} advice",
            lambda s: run_advice(s, run_id, tuple(rule) if rule else None),
            ("rank", "rule", "saved_ns", "saved_share", "finding", "query"),
        )

    @app.command("critical-path")
    def critical_path(
        run_id: int,
        step: Annotated[int | None, typer.Option(help="Only this step's kernels")] = None,
        segments: Annotated[
            bool, typer.Option("--segments", help="The path itself, not the per-operator shares")
        ] = False,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Lightweight critical path (launch calls, host time, kernels) and each operator's share of it."""
        from tracehouse.analyses import critical_path as cp

        fn = cp.critical_path_segments if segments else cp.critical_path
        show_frame(db, fmt, f"run {run_id} critical path", lambda s: fn(s, run_id, step))

    @app.command()
    def jobs(
        straggler_factor: Annotated[float, typer.Option(help="Straggler at this × the job's median step")] = 1.05,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Runs that are ranks of one job: per-rank step time, exposed communication, stragglers."""
        from tracehouse.analyses.rank_jobs import job_ranks

        show_frame(db, fmt, "multi-rank jobs", lambda s: job_ranks(s, straggler_factor))

    @app.command("advise-rules")
    def advise_rules(fmt: FormatOption = "table") -> None:
        """The advice rule table: one row per rule, what it detects and how it estimates."""
        from tracehouse.analyses.advise import rule_table

        print_frame(fmt, "advice rules", rule_table())
