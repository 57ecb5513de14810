"""``tracehouse --help`` lists its forty-odd commands under headings, in the order a user meets
them: getting traces in, one run, across runs, what to fix, the paper's formulas, experiments
and CI, the service.  Plain click text, as every help here is (rich's import costs more than
the rest of ``--help``)."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

SECTIONS: dict[str, tuple[str, ...]] = {
    "Traces in and out": ("collect", "ingest", "upload", "runs", "reingest", "delete"),
    "One run": (
        "breakdown",
        "steps",
        "sequence",
        "temporal-spatial",
        "utilization",
        "launches",
        "memory-peak",
        "memory-timeline",
        "memory-model",
        "roofline",
        "counters",
    ),
    "What to fix": ("advise", "advise-rules", "explain", "idle", "critical-path", "jobs"),
    "Across runs and hardware": (
        "compare",
        "speedups",
        "sweep",
        "hardware",
        "matrix",
        "model-points",
        "ceilings",
        "compute-comm",
        "fleet",
    ),
    "The paper's formulas": ("attention-flops", "memory-formula"),
    "Experiments and CI gates": ("diff", "check", "history", "baseline"),
    "Service and database": ("serve", "worker", "token", "db", "models"),
}


class SectionedHelp(TyperGroup):
    """The top-level group: commands listed under ``SECTIONS``' headings (a command in none of
    them under "Other commands", which tests/test_cli.py does not let happen)."""

    # Untyped: typer 0.29 passes its vendored click's Context and HelpFormatter, older typer
    # real click's (pyproject allows both).
    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = {
            name: command
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        }
        if not commands:
            return
        width = max(len(name) for name in commands)  # one column for every section
        limit = formatter.width - 6 - width  # as click's own list
        placed = {name for names in SECTIONS.values() for name in names}
        sections = [*SECTIONS.items(), ("Other commands", tuple(n for n in commands if n not in placed))]
        for title, names in sections:
            rows = [(n.ljust(width), commands[n].get_short_help_str(limit)) for n in names if n in commands]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
