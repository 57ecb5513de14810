"""CLI commands that manage stored data: ``runs edit``, ``delete``, ``token list|revoke``.

They work on the database directly (``--db``), as ``ingest`` does: whoever holds the database
holds every right, so no token is asked for.  Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tracehouse.api.cli_analyses import DbOption
from tracehouse.api.cli_common import command_group

if TYPE_CHECKING:  # core.frames loads polars, which a CLI start does not pay for
    from tracehouse.core.frames import FrameSchema

RunArgument = Annotated[int, typer.Argument(help="Run id (see `tracehouse runs`)")]


def register(app: typer.Typer, token_app: typer.Typer) -> None:
    _make_runs_a_group(app)
    app.command("delete")(delete)
    token_app.command("list")(token_list)
    token_app.command("revoke")(token_revoke)


def _make_runs_a_group(app: typer.Typer) -> None:
    """``tracehouse runs`` keeps listing runs (every option as before) and gains ``runs edit``:
    the listing command becomes the callback of a ``runs`` group."""
    info = next(c for c in app.registered_commands if (c.name or getattr(c.callback, "__name__", "")) == "runs")
    listing = info.callback
    if listing is None:
        raise RuntimeError("`runs` was registered without its function")
    app.registered_commands.remove(info)
    group = command_group(help=inspect.getdoc(listing), no_args_is_help=False)
    group.callback(invoke_without_command=True)(_listing_unless_subcommand(listing))
    group.command("edit")(edit)
    app.add_typer(group, name="runs")


def _listing_unless_subcommand(listing: Callable[..., Any]) -> Callable[..., Any]:
    """``listing`` with a ``ctx`` parameter added: a group's callback also runs before its
    subcommands, and the list must print only when no subcommand was named."""

    @functools.wraps(listing)
    def callback(ctx: typer.Context, **options: Any) -> None:
        if ctx.invoked_subcommand is None:
            listing(**options)

    signature = inspect.signature(listing, eval_str=True)
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    callback.__signature__ = signature.replace(parameters=[context, *signature.parameters.values()])  # type: ignore[attr-defined]
    callback.__annotations__ = {**listing.__annotations__, "ctx": typer.Context}
    return callback


def edit(
    run_id: RunArgument,
    model: Annotated[str | None, typer.Option(help="Model name")] = None,
    hardware: Annotated[str | None, typer.Option(help="Device name")] = None,
    backend: Annotated[str | None, typer.Option(help="Attention backend: baseline, flash, ...")] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE: a run field (image_size, batch, ...) or else a tag; KEY= clears it (repeatable)"),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE tag to set, even for a field's name (repeatable)")
    ] = None,
    untag: Annotated[list[str] | None, typer.Option(help="Tag KEY to remove (repeatable)")] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON")] = False,
) -> None:
    """Correct a run's metadata and tags (re-ingesting the same trace never changes them)."""
    import orjson

    from tracehouse.analyses.runs import run_row, run_tags
    from tracehouse.api.cli_common import open_engine
    from tracehouse.core.errors import BadInput
    from tracehouse.core.meta import parse_key_values
    from tracehouse.ingest.run_edit import edit_run, split_fields_and_tags
    from tracehouse.schema.db import session_scope

    fields, tags = split_fields_and_tags(parse_key_values(meta or [], "--meta"))
    fields.update(
        {k: v for k, v in (("model", model), ("hardware", hardware), ("attention_backend", backend)) if v is not None}
    )
    tags.update(parse_key_values(tag or [], "--tag"))
    tags.update(dict.fromkeys(untag or []))
    if not fields and not tags:
        raise BadInput("nothing to change: give --model, --hardware, --backend, --meta, --tag or --untag")
    with session_scope(open_engine(db)) as session:
        edit_run(session, run_id, fields, tags)
        row = {**run_row(session, run_id), "tags": run_tags(session, run_id)}
    if as_json:
        typer.echo(orjson.dumps(row, option=orjson.OPT_NAIVE_UTC).decode())
        return
    changes = [f"{k}={'(cleared)' if v is None else v}" for k, v in fields.items()]
    changes += [f"tag {k}={v}" if v is not None else f"tag {k} removed" for k, v in tags.items()]
    typer.echo(f"run {run_id} updated: {', '.join(changes)}")


def delete(
    run_ids: Annotated[list[int], typer.Argument(help="Runs to delete (see `tracehouse runs`)")],
    db: DbOption = None,
) -> None:
    """Delete runs with their kernels, rollups, tags and counters (raw files stay in the store)."""
    from tracehouse.analyses.common import get_run
    from tracehouse.api.cli_common import open_engine
    from tracehouse.ingest.load import delete_run
    from tracehouse.schema.db import session_scope

    with session_scope(open_engine(db)) as session:  # all or none: a missing id deletes nothing
        for run_id in run_ids:
            get_run(session, run_id)
            delete_run(session, run_id)
    for run_id in run_ids:
        typer.echo(f"deleted run {run_id}")


def token_list(
    db: DbOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
) -> None:
    """List API tokens: id, holder, scope, created, revoked (the tokens themselves are not kept)."""
    import polars as pl

    from tracehouse.api.auth import list_tokens
    from tracehouse.api.cli_analyses import show_frame

    schema: FrameSchema = {
        "token_id": pl.Int64,
        "name": pl.String,
        "scope": pl.String,
        "created_at": pl.Datetime(time_zone="UTC"),
        "revoked": pl.Boolean,
    }
    show_frame(db, fmt, "tokens", lambda s: pl.DataFrame(list_tokens(s), schema=schema, orient="row"))


def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see `tracehouse token list`)")],
    db: DbOption = None,
) -> None:
    """Revoke a token: from now on it answers 401."""
    from tracehouse.api.auth import revoke_token
    from tracehouse.api.cli_common import open_engine
    from tracehouse.schema.db import session_scope

    with session_scope(open_engine(db)) as session:
        revoke_token(session, token_id)
    typer.echo(f"revoked token {token_id}")
