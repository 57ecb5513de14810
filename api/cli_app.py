"""The ``tracehouse`` commands (typer): a thin layer over ingest and the analysis functions.

Startup is paid by every command, so this module and the ones it registers import only typer
and the standard library: polars, SQLAlchemy, pydantic settings, rich's progress bars, httpx,
FastAPI and torch are imported inside the commands that use them
(tests/test_cli_errors.py checks ``tracehouse --help``'s modules).  The entry point and its
error handling are ``api/cli.py``, which runs a plain ``tracehouse ingest FILE...`` without
this module (``api/cli_ingest.py``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tracehouse.api.cli_analyses import register as register_analyses
from tracehouse.api.cli_base import progress
from tracehouse.api.cli_collect import collect
from tracehouse.api.cli_common import (
    DbOption,
    RetryForOption,
    command_group,
    engine_for_url,
    load_settings,
    log_to_stderr,
    open_engine,
    upload_and_report,
)
from tracehouse.api.cli_diagnose import register as register_diagnose
from tracehouse.api.cli_experiments import register as register_experiments
from tracehouse.api.cli_fleet import register as register_fleet
from tracehouse.api.cli_help import SectionedHelp
from tracehouse.api.cli_runs import register as register_runs
from tracehouse.api.cli_worker import register as register_worker
from tracehouse.core.errors import BadInput
from tracehouse.core.limits import UPLOAD_RETRY_FOR_S

app = command_group(
    cls=SectionedHelp,
    help="tracehouse: where GPU time goes in generative-AI workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = command_group(help="Database schema management.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command("collect")(collect)
register_analyses(app)
register_diagnose(app)
register_experiments(app)
register_fleet(app)
register_worker(app)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Migrate the database to the current schema (creates it when empty)."""
    from tracehouse.schema.migrate import current_revision, upgrade

    engine = engine_for_url(load_settings().resolved_database_url(db))
    upgrade(engine)
    typer.echo(f"database at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(db: DbOption = None) -> None:
    """Print the database's schema revision and the one this tracehouse expects."""
    from tracehouse.schema.migrate import current_revision, head_revision

    engine = engine_for_url(load_settings().resolved_database_url(db))
    typer.echo(f"current {current_revision(engine) or '(empty)'}; head {head_revision()}")


@db_app.command("gc")
def db_gc(
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing")] = False,
    grace: Annotated[
        float | None, typer.Option(help="Seconds: younger orphans are kept (default TRACEHOUSE_GC_GRACE_SECONDS, 3600)")
    ] = None,
) -> None:
    """Remove raw files no trace row names and spool folders no live job uses (crash leftovers)."""
    from tracehouse.ingest.reclaim import reclaim_orphans

    # Never migrate here: an empty database names no trace, so every raw file would look orphaned.
    report = reclaim_orphans(
        open_engine(db, migrate_empty=False), load_settings(), dry_run=dry_run, grace_seconds=grace
    )
    for path in [*report.raw_files, *report.spool_folders]:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {path}")
    typer.echo(report.summary())


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Trace files or directories: Kineto .json/.json.gz, nsys .sqlite, Nsight Compute CSVs "
            "(all the CSVs given make one run); the format is told from the content"
        ),
    ],
    db: DbOption = None,
    model: Annotated[str | None, typer.Option(help="Model name, e.g. stable-diffusion")] = None,
    hardware: Annotated[str | None, typer.Option(help="Device name; overrides the trace's")] = None,
    backend: Annotated[str | None, typer.Option(help="Attention backend: baseline, flash, ...")] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment the runs belong to (repeats share one)")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="KEY=VALUE run metadata or tag (repeatable)")] = None,
    run: Annotated[
        int | None,
        typer.Option(
            "--run",
            help="Attach the Nsight Compute CSVs to this existing run, linking them to its "
            "kernels (default: the one timeline trace given with them, if any)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of results")] = False,
) -> None:
    """Ingest trace files; prints the run id of each (one transaction per run)."""
    from tracehouse.api.cli_ingest import run_ingest

    run_ingest(
        paths,
        db=db,
        model=model,
        hardware=hardware,
        backend=backend,
        experiment=experiment,
        meta=meta,
        run=run,
        as_json=as_json,
    )


@app.command()
def reingest(
    run_ids: Annotated[list[int] | None, typer.Argument(help="Runs to classify again")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every run that has a timeline trace")] = False,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of results")] = False,
) -> None:
    """Re-classify runs from their kept raw traces with this version's rules (ids and tags kept)."""
    from dataclasses import asdict

    from tracehouse.ingest.reingest import reingest_candidates, reingest_run
    from tracehouse.ingest.user_rules import name_rules_for

    engine = open_engine(db)
    name_rules = name_rules_for(load_settings().rules_file())
    targets = reingest_candidates(engine) if all_runs else list(run_ids or [])
    if not targets:
        raise BadInput("name the runs to re-ingest, or pass --all")
    results: list[dict[str, Any]] = []
    with progress(disable=len(targets) < 2 or as_json) as bar:
        task = bar.add_task("re-ingesting", total=len(targets))
        for run_id in targets:
            results.append(asdict(reingest_run(engine, run_id, name_rules)))
            bar.advance(task)
    if as_json:
        typer.echo(orjson.dumps(results).decode())
        return
    for r in results:
        typer.echo(
            f"run {r['run_id']}: {r['kernel_count']} kernels, {r['reclassified']} reclassified; "
            f"'other' {r['other_ns_before']} -> {r['other_ns_after']} ns"
        )
        for c in r["changes"]:  # which kernels changed class, largest first
            typer.echo(
                f"  {c['kernels']:>7} x {c['operator_before']} -> {c['operator_after']} "
                f"({c['total_ns']} ns): {c['kernel'][:100]}"
            )


TABLE_PAGE = 100  # runs in one `tracehouse runs` table


@app.command()
def runs(
    db: DbOption = None,
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    family: Annotated[str | None, typer.Option(help="llm | tti | ttv")] = None,
    hardware: Annotated[str | None, typer.Option(help="Substring of the device name")] = None,
    backend: Annotated[str | None, typer.Option(help="Attention backend")] = None,
    experiment: Annotated[str | None, typer.Option(help="Only runs of this experiment")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    since: Annotated[datetime | None, typer.Option(help="Ingested at or after (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(help="Ingested before (UTC)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Runs shown, oldest first (default: 100 in a table, all with --json)")
    ] = None,
    offset: Annotated[int, typer.Option(min=0, help="Runs skipped: --offset 100 is the second page")] = 0,
) -> None:
    """List the runs in the database, filtered: a page of --limit runs (100 in a table; --json
    gives every match, for pipes), and on stderr how many match in all when there are more."""
    from tracehouse.analyses.runs import RunFilters, count_runs, list_runs
    from tracehouse.api.output import database_caption, render
    from tracehouse.core.meta import parse_key_values
    from tracehouse.schema.db import session_scope

    with session_scope(open_engine(db), read_only=True) as session:
        filters = RunFilters(
            model=model,
            family=family,
            hardware=hardware,
            attention_backend=backend,
            tags=parse_key_values(tag or [], "--tag"),
            since=since,
            until=until,
            experiment=experiment,
        )
        # A person reads a page; a pipe (--json into `baseline set`) gets every match unless it asks.
        page = limit if limit is not None else (None if as_json else TABLE_PAGE)
        frame = list_runs(session, **filters, offset=offset, limit=page)
        total = count_runs(session, **filters) if frame.height == page or offset else frame.height
    if offset + frame.height < total:  # stderr: --json output stays one JSON document
        more = offset + frame.height
        typer.echo(f"runs {offset + 1}-{more} of {total}; --offset {more} for more", err=True)
    if not as_json:  # the terminal gets the columns that tell runs apart
        frame = frame.select(
            "run_id",
            "model",
            "hardware",
            "attention_backend",
            "scale",
            "image_size",
            "frames",
            "device_kind",
            "activity_count",
            "kernel_count",
            "memcpy_count",
            "memset_count",
            "total_ns",
            "other_share",
            "experiment",
            "source",
        )
    source = None if db else database_caption(load_settings().resolved_database_url())
    typer.echo(render(frame, "json" if as_json else "table", title="runs", source=source), nl=False)


@app.command()
def breakdown(
    run_id: Annotated[int, typer.Argument(help="Run id (see `tracehouse runs`)")],
    by: Annotated[str, typer.Option(help="operator | attention_type | seq_len | component | kernel")] = "operator",
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
    db: DbOption = None,
) -> None:
    """Where one run's GPU time went: count, total ns and share per group."""
    from tracehouse.analyses.breakdown import breakdown as run_breakdown
    from tracehouse.api.cli_analyses import show_frame

    show_frame(db, fmt, f"run {run_id} by {by}", lambda s: run_breakdown(s, run_id, by))


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    public_read: Annotated[bool, typer.Option("--public-read", help="Reads need no token")] = False,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help="API only: run no ingest worker in this process; `tracehouse worker` "
            "processes ingest the uploads (PostgreSQL only)",
        ),
    ] = False,
) -> None:
    """Run the REST service (FastAPI + uvicorn)."""
    import uvicorn

    from tracehouse.api.app import create_app
    from tracehouse.api.cli_worker import require_shared_queue

    settings = load_settings(database_url=db, host=host, port=port, public_read=public_read or None)
    if no_worker:
        require_shared_queue(settings.resolved_database_url(), "serve --no-worker")
    # Refuse an unreachable or out-of-date database before binding the port: one line, exit 5 / 4.
    open_engine(settings.resolved_database_url()).dispose()
    log_to_stderr()  # what the service keeps out of its answers (paths, database text) goes here
    uvicorn.run(
        create_app(settings, in_process_worker=not no_worker), host=settings.host, port=settings.port, log_level="info"
    )


token_app = command_group(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
register_runs(app, token_app)  # runs edit, delete, token list|revoke


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who holds it, e.g. lab-a")],
    scope: Annotated[str, typer.Option(help="read | write | admin")] = "read",
    db: DbOption = None,
) -> None:
    """Create a token; it is printed once and stored hashed."""
    from tracehouse.api.auth import create_token
    from tracehouse.schema.db import session_scope

    with session_scope(open_engine(db)) as session:
        typer.echo(create_token(session, name, scope))


@app.command()
def upload(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or directories (as for ingest)")],
    server: Annotated[str, typer.Option(help="Service URL, e.g. http://127.0.0.1:8000")],
    token: Annotated[str, typer.Option(envvar="TRACEHOUSE_TOKEN", help="Write token")],
    meta: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment the runs belong to")] = None,
    run: Annotated[int | None, typer.Option("--run", help="Attach the Nsight Compute CSVs to this run")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the ingest jobs to finish")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    retry_for: RetryForOption = UPLOAD_RETRY_FOR_S,
) -> None:
    """Upload traces to a tracehouse service (manifests beside them go along)."""
    pairs = [*(meta or []), *([f"experiment={experiment}"] if experiment else [])]
    upload_and_report(paths, server, token, pairs, run_id=run, wait=wait, as_json=as_json, retry_for_s=retry_for)
