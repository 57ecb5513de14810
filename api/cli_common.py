"""What every CLI module shares: settings read at the edge, the engine for ``--db``, and the
upload report; the command modules import these rather than each other's private names.

Like ``api/cli.py``, this module imports only typer, orjson and the standard library at the top:
every command start pays for its imports."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from tracehouse.core.data_paths import DataPaths, default_data_dir
from tracehouse.core.errors import BadInput, ServerUnreachable

if TYPE_CHECKING:  # both load on first use: the CLI starts without them
    from sqlalchemy import Engine

    from tracehouse.core.settings import Settings

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $TRACEHOUSE_DATABASE_URL, else a SQLite file in the data dir)"),
]


def load_settings(**overrides: Any) -> Settings:
    """core.settings' load_settings; pydantic-settings takes ~0.1 s to import, so only the
    commands that read settings pay for it."""
    from tracehouse.core.settings import load_settings as load

    return load(**overrides)


class PathSettings(DataPaths):
    """The settings a command needs to find its database, raw store and rules file,
    read from the environment as ``core.settings.Settings`` reads them (prefix
    ``TRACEHOUSE_``, names in any case, the value as given) without importing pydantic:
    ``tracehouse ingest`` of a small trace takes less time than pydantic-settings' import.
    tests/test_cli_settings.py checks each method against ``Settings``' own."""

    def __init__(self) -> None:
        # pydantic-settings matches names case-insensitively by lower-casing them all.
        env = {name.lower(): value for name, value in os.environ.items()}
        self.database_url = env.get("tracehouse_database_url")
        data_dir = env.get("tracehouse_data_dir")
        rules_path = env.get("tracehouse_rules_path")
        self.rules_path = None if rules_path is None else Path(rules_path)
        store_root = env.get("tracehouse_store_root")
        self.store_root = None if store_root is None else Path(store_root)
        self.data_dir = default_data_dir() if data_dir is None else Path(data_dir)


def open_engine(db: str | None, *, migrate_empty: bool = True) -> Engine:
    from tracehouse.schema.migrate import ensure_schema

    url = PathSettings().resolved_database_url(db)
    engine = engine_for_url(url)
    ensure_schema(engine, url, create_if_empty=migrate_empty)
    return engine


def engine_for_url(url: str) -> Engine:
    """The engine for ``--db``; a URL naming no database tracehouse can drive is a bad flag."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from tracehouse.schema.db import make_engine

    try:
        return make_engine(url)
    except (ArgumentError, ImportError) as exc:
        try:
            shown = make_url(url).render_as_string(hide_password=True)  # never echo a password
        except ArgumentError:
            shown = url
        raise BadInput(
            f"--db {shown!r}: not a database tracehouse can open ({exc}); use sqlite:///PATH or postgresql://..."
        ) from None


def upload_and_report(
    paths: list[Path],
    server: str,
    token: str,
    meta: list[str],
    *,
    run_id: int | None = None,
    wait: bool = True,
    as_json: bool = False,
) -> None:
    """Upload, print one line per job (or a JSON list), and exit 2 when the server's ingest of any
    of them failed; ``upload`` and ``collect --upload`` both end here."""
    bars = not as_json and sys.stdout.isatty()  # a pipe or a log gets the result lines only
    results = upload_files_reporting(paths, server, token, meta, run_id=run_id, wait=wait, progress=bars)
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
