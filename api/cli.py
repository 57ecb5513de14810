"""The ``tracehouse`` entry point: one place turns errors into a one-line message and an exit
code.  The commands are typer's (``api/cli_app.py``, loaded on first use); a plain
``tracehouse ingest FILE...`` runs without typer (``api/cli_ingest.py``), because typer's
argument parsing costs a whole-process ingest of a large trace a fifth of its time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tracehouse.api.cli_base import echo
from tracehouse.core.errors import TracehouseError


def __getattr__(name: str) -> Any:
    """``cli.app`` and the other names the commands module holds, loaded when first asked for."""
    if name.startswith("__"):
        raise AttributeError(name)
    from tracehouse.api import cli_app

    return getattr(cli_app, name)


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """The ClickException class(es) usage errors arrive as.  typer 0.29 raises those of its own
    vendored click (``typer._click``), older typer those of real click; ``typer.BadParameter``'s
    ancestry names whichever this typer uses, and real click's is added when something loaded it."""
    import typer

    classes = {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
    if (click := sys.modules.get("click")) is not None:
        classes.add(click.ClickException)
    return tuple(classes)


def _aborts() -> tuple[type[BaseException], ...]:
    import typer

    classes: set[type[BaseException]] = {typer.Abort}
    if (click := sys.modules.get("click")) is not None:
        classes.add(click.exceptions.Abort)
    return tuple(classes)


def _run(argv: list[str]) -> Any:
    from tracehouse.api.cli_ingest import parse_argv

    plain_ingest = parse_argv(argv)
    if plain_ingest is not None:
        from tracehouse.api.cli_ingest import run_ingest

        run_ingest(**plain_ingest)
        _exit_without_teardown()
        return None
    from tracehouse.api.cli_app import app

    return app(standalone_mode=False)


def _exit_without_teardown() -> None:
    """End a finished plain ingest now: the interpreter's teardown of polars' and numpy's
    modules takes 70-100 ms, a sixth of a whole ``tracehouse ingest`` of a large trace, and has
    nothing left to do here (each trace committed, the engine disposed, the raw file
    written and closed; ``run_ingest`` returns only then).  Only in the ``tracehouse`` process
    itself, never when a program or a test calls ``main()``; output that cannot be flushed
    takes the ordinary way out."""
    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    entry = (spec is not None and spec.name == "tracehouse.api.cli") or (
        spec is None and Path(getattr(top, "__file__", "") or "").name in ("tracehouse", "tracehouse.exe")
    )
    if not entry:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(0)


def main() -> None:
    """Entry point: one place turns errors into a one-line message and an exit code."""
    try:
        returned = _run(sys.argv[1:])
    except TracehouseError as exc:
        echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, _click_exceptions()):  # usage errors: click's usage line, exit 2
            usage: Any = exc  # a ClickException of whichever click this typer uses
            usage.show()
            sys.exit(usage.exit_code)
        if isinstance(exc, _aborts()):
            sys.exit(130)
        raise
    # Outside standalone mode click returns a typer.Exit's code instead of exiting with it.
    if type(returned) is int:
        sys.exit(returned)


if __name__ == "__main__":
    main()
