"""``tracehouse worker``: an ingest worker process beside API-only replicas (``serve --no-worker``).

Any number of them, on any hosts that mount the same store root (``TRACEHOUSE_STORE_ROOT``),
share the PostgreSQL job queue; see ``api/jobs.py`` for claims and leases.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tracehouse.api.cli_analyses import DbOption


def require_shared_queue(url: str, what: str) -> None:
    """Ingest outside the API process needs a queue several processes share safely: PostgreSQL.
    SQLite keeps the service's own in-process worker."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from tracehouse.core.errors import BadInput

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return  # the engine factory reports a URL it cannot parse, in its own words
    if backend == "sqlite":
        raise BadInput(
            f"{what} needs a PostgreSQL database (--db postgresql://...); on SQLite "
            "`tracehouse serve` ingests in its own worker thread"
        )


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    db: DbOption = None,
    poll: Annotated[
        float | None,
        typer.Option(help="Seconds between looks at an empty queue (default TRACEHOUSE_WORKER_POLL_SECONDS, 1)"),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(
            help="Seconds a claim lasts unless renewed; every worker of a queue should use the same "
            "(default TRACEHOUSE_WORKER_LEASE_SECONDS, 60)"
        ),
    ] = None,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Exit once the queue has nothing to claim (batch use)")
    ] = False,
) -> None:
    """Ingest queued uploads (PostgreSQL): claim a job, ingest it, repeat; SIGTERM finishes the
    job in hand and exits."""
    import signal

    from tracehouse.api.cli_common import load_settings, log_to_stderr, open_engine
    from tracehouse.api.job_worker import Worker

    settings = load_settings(database_url=db, worker_poll_seconds=poll, worker_lease_seconds=lease)
    url = settings.resolved_database_url()
    require_shared_queue(url, "tracehouse worker")
    engine = open_engine(url)
    log_to_stderr()
    ingest = Worker(engine, settings, poll_seconds=settings.worker_poll_seconds, exit_when_idle=exit_when_idle)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: ingest.stop())
    typer.echo(f"ingest worker {ingest.worker_id}: claiming queued jobs", err=True)
    try:
        ingest.run()
    finally:
        engine.dispose()
