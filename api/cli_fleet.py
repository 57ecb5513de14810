"""``tracehouse models ...`` and ``tracehouse fleet ...``: the model registry and the fleet view
(paper Fig 1), each a thin call to ``ingest.fleet`` / ``analyses.fleet``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from tracehouse.api.cli_analyses import DbOption, FormatOption, show_frame
from tracehouse.api.cli_common import command_group

PhaseOption = Annotated[str | None, typer.Option(help="training | inference")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _models_app() -> typer.Typer:
    models = command_group(help="The model registry (name, family, parameter count).", no_args_is_help=True)

    @models.command("add")
    def add(
        name: str,
        family: Annotated[str, typer.Option(help="llm | tti | ttv")],
        params: Annotated[int, typer.Option("--params", help="Parameter count")],
        architecture: Annotated[str | None, typer.Option(help="e.g. unet, transformer")] = None,
        db: DbOption = None,
    ) -> None:
        """Add a model (or correct one); fleet jobs already imported under NAME attach to it."""
        from tracehouse.api.cli_common import open_engine
        from tracehouse.ingest.fleet_import import register_model
        from tracehouse.schema.db import session_scope

        with session_scope(open_engine(db)) as session:
            model = register_model(session, name, family, params, architecture)
            typer.echo(f"model {model.name} ({model.family}, {model.param_count:,} parameters)")

    @models.command("list")
    def list_(as_json: JsonOption = False, db: DbOption = None) -> None:
        """Registered models with their fleet job counts."""
        show_frame(db, "json" if as_json else "table", "models", lambda s: _fleet().models_list(s))

    return models


def _fleet() -> ModuleType:
    from tracehouse.analyses import fleet_usage as fleet

    return fleet


def _print_report(report: dict) -> None:
    typer.echo(
        f"{report['source']}: {report['format']}, import {report['import_id']}: "
        f"{report['rows_imported']} rows imported, {report['rows_rejected']} rejected"
    )
    for r in report["rejected"]:
        typer.echo(f"  line {r['line']}: {r['reason']}")
    if report["rows_rejected"] > len(report["rejected"]):
        typer.echo(f"  ... and {report['rows_rejected'] - len(report['rejected'])} more")
    if report.get("unknown_models"):
        typer.echo(
            f"  unknown models (imported without parameters; add with `tracehouse models add`): "
            f"{', '.join(report['unknown_models'])}"
        )
    if report.get("jobs_replaced"):
        typer.echo(
            f"  {report['jobs_replaced']} jobs were already stored from an earlier import; "
            "this file's copies replace them"
        )
    if "jobs_updated" in report:
        typer.echo(
            f"  {report['jobs_updated']} jobs got memory utilisation; "
            f"{report['samples_without_job']} samples matched no job"
        )


def _fleet_app() -> typer.Typer:
    fleet = command_group(
        help="Fleet job records: GPUs per parameter and memory utilisation (Fig 1).",
        no_args_is_help=True,
    )

    @fleet.command("import")
    def import_(
        files: list[Path],
        fmt: Annotated[str, typer.Option("--format", help="auto|csv|json|sacct|nvidia-smi")] = "auto",
        cluster: Annotated[str | None, typer.Option(help="Cluster for rows that name none")] = None,
        host: Annotated[str | None, typer.Option(help="Host of an nvidia-smi log (matches jobs on it)")] = None,
        model_pattern: Annotated[str | None, typer.Option(help="sacct: regex with one group for the model")] = None,
        as_json: JsonOption = False,
        db: DbOption = None,
    ) -> None:
        """Import job records; every file is parsed first, so a bad one (exit 2) imports nothing."""
        import orjson

        from tracehouse.api.cli_common import open_engine
        from tracehouse.ingest import fleet_import as f
        from tracehouse.ingest import fleet_parse
        from tracehouse.schema.db import session_scope

        pattern = model_pattern or fleet_parse.DEFAULT_MODEL_PATTERN
        parsed = [
            (p, fleet_parse.parse(fleet_parse.read_source(p), fmt, name=str(p), cluster=cluster, model_pattern=pattern))
            for p in files
        ]
        engine, reports = open_engine(db), []
        for path, one in parsed:
            with session_scope(engine) as session:  # one file = one import = one transaction
                reports.append(f.import_fleet(session, one, str(path), host=host))
        if as_json:
            typer.echo(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode())
            return
        for report in reports:
            _print_report(report)

    @fleet.command("summary")
    def summary(
        by: Annotated[str, typer.Option(help="family|cluster|gpu|phase|month|model, comma-separated")] = "family",
        phase: PhaseOption = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Per group: jobs, GPU-hours, GPUs per billion parameters, memory utilisation, ratio to llm."""
        show_frame(db, fmt, f"fleet by {by}", lambda s: _fleet().fleet_summary(s, by, phase))

    @fleet.command("top")
    def top(n: int = 20, phase: PhaseOption = None, fmt: FormatOption = "table", db: DbOption = None) -> None:
        """Jobs with the most GPU-hours per billion parameters."""
        show_frame(db, fmt, "top jobs", lambda s: _fleet().top_jobs(s, n, phase))

    @fleet.command("spread")
    def spread(
        family: Annotated[str, typer.Option(help="tti | ttv")] = "tti",
        phase: PhaseOption = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """The family-to-LLM ratios month by month: min, median, max."""
        show_frame(db, fmt, f"{family} / llm spread", lambda s: _fleet().ratio_spread(s, family, phase))

    return fleet


def register(app: typer.Typer) -> None:
    app.add_typer(_models_app(), name="models")
    app.add_typer(_fleet_app(), name="fleet")
