"""What every CLI module shares: settings read at the edge, the engine for ``--db``, and the
upload report; the command modules import these rather than each other's private names.

Like ``api/cli_app.py``, this module imports only typer, orjson and the standard library at the
top: every command start pays for its imports.  The parts that need no typer live in
``cli_base`` (the ingest fast path runs on them) and are re-exported here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tracehouse.api.cli_base import PathSettings, engine_for_url, load_settings, open_engine
from tracehouse.core.errors import BadInput, ServerUnreachable
from tracehouse.core.limits import UPLOAD_RETRY_FOR_S

__all__ = [
    "DbOption",
    "PathSettings",
    "RetryForOption",
    "command_group",
    "engine_for_url",
    "load_settings",
    "log_to_stderr",
    "open_engine",
    "upload_and_report",
]


def command_group(**options: Any) -> typer.Typer:
    """A typer app or sub-command group whose help is click's plain text: typer renders help
    with rich otherwise, whose import is 0.12 s of the 0.3 s a ``tracehouse --help`` may take."""
    return typer.Typer(rich_markup_mode=None, **options)


DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $TRACEHOUSE_DATABASE_URL, else a SQLite file in the data dir)"),
]

# ``upload`` and ``collect --upload`` take the same patience, spelled the same way.
RetryForOption = Annotated[
    float,
    typer.Option(
        "--retry-for",
        min=0,
        help="Seconds to keep sending a request the server answers 503 with Retry-After "
        "(its database restarting), and a job poll that cannot reach the server (it "
        "restarts); 0: fail at once",
    ),
]


def upload_and_report(
    paths: list[Path],
    server: str,
    token: str,
    meta: list[str],
    *,
    run_id: int | None = None,
    wait: bool = True,
    as_json: bool = False,
    retry_for_s: float = UPLOAD_RETRY_FOR_S,
) -> None:
    """Upload, print one line per job (or a JSON list), and exit 2 when the server's ingest of any
    of them failed; ``upload`` and ``collect --upload`` both end here."""
    bars = not as_json and sys.stdout.isatty()  # a pipe or a log gets the result lines only
    results = upload_files_reporting(
        paths, server, token, meta, run_id=run_id, wait=wait, progress=bars, retry_for_s=retry_for_s
    )
    if as_json:
        typer.echo(orjson.dumps(results).decode())
    else:
        for r in results:
            state = f"run {r['run_id']}" if r["status"] == "done" else f"{r['status']} {r.get('error') or ''}"
            if r.get("duplicate_of") is not None:
                state += f" (duplicate of run {r['duplicate_of']}: its metadata was kept)"
            typer.echo(f"{r['path']}: job {r['job_id']} {state}".rstrip())
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(2)


def upload_files_reporting(paths: list[Path], server: str, token: str, meta: list[str], **options: Any) -> list[dict]:
    """The upload client, with a server that cannot be reached (or a URL that cannot be one)
    reported in one line."""
    import httpx

    from tracehouse.client import upload_files

    try:
        return upload_files(paths, server, token, meta, **options)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BadInput(f"--server {server!r} is not a service URL like http://127.0.0.1:8000 ({exc})") from None
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"cannot reach the tracehouse service at {server}: {str(exc) or type(exc).__name__}"
        ) from None


def log_to_stderr() -> None:
    """What the service and workers keep out of their answers (paths, database text) goes to stderr."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    logger = logging.getLogger("tracehouse")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
