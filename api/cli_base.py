"""What the CLI's commands share that needs neither typer nor anything heavy: the database and
paths from the environment, the engine for ``--db``, click's way of printing, the progress bar.
``tracehouse ingest FILE`` runs on this module alone (``api/cli_ingest.py``), so it starts
without typer's argument parsing; ``cli_common`` re-exports these for the other commands."""

from __future__ import annotations

import os
import re
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tracehouse.core.data_paths import DataPaths, default_data_dir
from tracehouse.core.errors import BadInput

if TYPE_CHECKING:  # both load on first use: the CLI starts without them
    from sqlalchemy import Engine

    from tracehouse.core.settings import Settings


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
    from tracehouse.schema.sqlite_head import create_at_head, sqlite_path

    url = PathSettings().resolved_database_url(db)
    path = sqlite_path(url)
    if migrate_empty and path is not None:
        # A new SQLite file at head from the migrations' snapshot, without running them
        # (ensure_schema then finds it at head); Alembic makes it where the snapshot cannot.
        create_at_head(path)
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


_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")  # click's strip_ansi pattern


def echo(message: str, *, err: bool = False) -> None:
    """``typer.echo`` of one line of text, without importing typer: click removes colour codes
    from output that is not a terminal and flushes every line.  A stream whose encoding is
    not UTF-8 goes to click itself, which repairs a misconfigured one."""
    stream = sys.stderr if err else sys.stdout
    encoding = getattr(stream, "encoding", None)  # None: a text buffer (StringIO), written as is
    if encoding is not None and encoding.lower().replace("-", "") != "utf8":
        import typer

        typer.echo(message, err=err)
        return
    text = message + "\n"
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    stream.write(text if terminal else _ANSI.sub("", text))
    stream.flush()


def progress(*, disable: bool) -> AbstractContextManager[Bar]:
    """rich's progress bar, imported only when it will be drawn (several files, no --json)."""
    if disable:
        from contextlib import nullcontext

        return nullcontext(_NoProgress())
    from rich.progress import Progress

    return Progress(transient=True)


class Bar(Protocol):
    """What the commands use of rich's Progress, which _NoProgress stands in for."""

    def add_task(self, description: str, /, *, total: float | None) -> Any: ...

    def advance(self, task_id: Any, /) -> None: ...


class _NoProgress:
    def add_task(self, *_: object, **__: object) -> None:
        return None

    def advance(self, *_: object) -> None:
        return None
