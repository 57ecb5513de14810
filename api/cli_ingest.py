"""``tracehouse ingest``: the command's body, and the plain invocations run without typer.

A whole ``tracehouse ingest FILE`` process used to spend more time in typer's argument
parsing (its pydantic adapters, ~0.1 s) than in parsing a small trace.  So ``main()``
(``api/cli.py``) hands ``ingest`` argument lists made only of paths and the command's own
``--flag value`` options to :func:`parse_argv` and calls :func:`run_ingest` itself; anything
else (``--help``, an unknown or malformed option, ``--run``, shell completion) goes to typer,
which gives its usual usage errors.  Both ways ingest through ``ingest.units.ingest_all``;
tests/test_cli_ingest.py checks they give the same output, exit codes and rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from tracehouse.api.cli_base import PathSettings, echo, open_engine, progress

if TYPE_CHECKING:
    from tracehouse.core.meta import RunMeta
    from tracehouse.ingest.pipeline import IngestResult
    from tracehouse.ingest.units import IngestUnit
    from tracehouse.ingest.writer import Writer

T = TypeVar("T")

# The ingest command's options taking one value (``--meta`` may repeat), and its one flag.
_VALUED = {
    "--db": "db",
    "--model": "model",
    "--hardware": "hardware",
    "--backend": "backend",
    "--experiment": "experiment",
}
_REPEATED = {"--meta": "meta"}
_FLAGS = {"--json": "as_json"}


def parse_argv(argv: list[str]) -> dict[str, Any] | None:
    """``run_ingest``'s arguments from ``ingest ...`` as typer would parse them, or None when the
    list holds anything typer alone should judge (then it gives its own help or usage error)."""
    if argv[:1] != ["ingest"] or any(key.startswith("_") and key.endswith("_COMPLETE") for key in os.environ):
        return None  # shell completion is typer's
    args: dict[str, Any] = {"paths": [], "meta": None, "as_json": False}
    rest = iter(argv[1:])
    for token in rest:
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if not token or token == "-":
            return None
        if not token.startswith("-"):
            args["paths"].append(Path(token))
        elif name in _FLAGS and not eq:
            args[_FLAGS[name]] = True
        elif name in _VALUED or name in _REPEATED:
            value = inline if eq else next(rest, None)
            # A missing value, or one click might read as an option: typer's to judge.
            if value is None or (not eq and value.startswith("-")):
                return None
            if name in _REPEATED:
                args["meta"] = [*(args["meta"] or []), value]
            elif _VALUED[name] in args:  # given twice: click keeps the last, typer's to say
                return None
            else:
                args[_VALUED[name]] = value
        else:
            return None
    return args if args["paths"] else None


def run_ingest(
    paths: list[Path],
    *,
    db: str | None = None,
    model: str | None = None,
    hardware: str | None = None,
    backend: str | None = None,
    experiment: str | None = None,
    meta: list[str] | None = None,
    run: int | None = None,
    as_json: bool = False,
) -> None:
    """Ingest trace files; prints the run id of each (one transaction per run)."""
    from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, default_inflated_limit
    from tracehouse.ingest import scan_ahead

    # The first file is gunzipped and scanned on a thread while the rest is imported; the
    # limit is the one ``ingest_file`` applies when given none, as here.
    with scan_ahead.started(paths[0] if paths else None, default_inflated_limit(DEFAULT_MAX_TRACE_BYTES)):
        _ingest_paths(paths, db, run, as_json, _run_meta(model, hardware, backend, experiment, meta))


def _run_meta(
    model: str | None, hardware: str | None, backend: str | None, experiment: str | None, meta: list[str] | None
) -> RunMeta:
    from tracehouse.core.meta import meta_from_mapping, parse_key_values

    values: dict[str, object] = dict(parse_key_values(meta or [], "--meta"))
    values.update(
        {
            k: v
            for k, v in (
                ("model", model),
                ("hardware", hardware),
                ("attention_backend", backend),
                ("experiment", experiment),
            )
            if v is not None
        }
    )
    return meta_from_mapping(values)


def _ingest_paths(paths: list[Path], db: str | None, run: int | None, as_json: bool, run_meta: RunMeta) -> None:
    settings = PathSettings()  # pydantic-settings' import would cost more than a small trace's parse
    writer = open_writer(db)
    try:
        landed, count = _plan(writer, paths, run, run_meta, settings)
        _ingest_and_report(_dropping_the_early_scan(landed), count, as_json=as_json)
    finally:
        # Closes the connections: SQLite checkpoints its WAL on the last close, before the
        # entry point ends the process without the interpreter's teardown.
        writer.close()


def _dropping_the_early_scan(landed: Iterator[T]) -> Iterator[T]:
    """``landed``, the first file's early scan let go once the first unit has landed: a first
    file the pipeline never parsed (a duplicate) does not hold its tables while the rest ingest."""
    from tracehouse.ingest import scan_ahead

    for item in landed:
        scan_ahead.discard()
        yield item


def open_writer(db: str | None) -> Writer:
    """The plain-``sqlite3`` writer for a SQLite file at the schema head (no SQLAlchemy is
    imported), else SQLAlchemy's on ``open_engine`` (which migrates a new database or names
    what is wrong with the one given)."""
    from tracehouse.ingest.writer_sqlite import open_at_head

    writer = open_at_head(PathSettings().resolved_database_url(db), create=True)
    if writer is not None:
        return writer
    from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter

    return SqlAlchemyWriter(open_engine(db))


def _ingest_and_report(landed: Iterator[tuple[IngestUnit, IngestResult]], count: int, *, as_json: bool) -> None:
    results: list[dict[str, Any]] = []
    with progress(disable=count < 2 or as_json) as bar:
        task = bar.add_task("ingesting", total=count)
        for unit, res in landed:
            results.append(
                {
                    "path": unit.label,
                    "format": unit.format,
                    "run_id": res.run_id,
                    "created": res.created,
                    "duplicate_of": res.duplicate_of,
                    "kernels": res.kernel_count,
                    "warnings": res.warnings,
                }
            )
            bar.advance(task)
    _report(results, as_json=as_json)


def _plan(
    writer: Writer, paths: list[Path], run: int | None, run_meta: RunMeta, settings: PathSettings
) -> tuple[Iterator[tuple[IngestUnit, IngestResult]], int]:
    """The results as each unit lands, and how many units: errors in the paths, the database
    or the rules file come before anything is ingested, in the order they always came."""
    from tracehouse.ingest.units import ingest_all, plan_units
    from tracehouse.ingest.user_rules import name_rules_for

    units = plan_units(paths)
    name_rules = name_rules_for(settings.rules_file())  # checked before anything is ingested
    raw_dir = settings.raw_dir()
    return ingest_all(writer, units, run_meta, raw_dir=raw_dir, run_id=run, name_rules=name_rules), len(units)


def _report(results: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        echo(orjson.dumps(results).decode())
        return
    for r in results:
        note = (
            ""
            if r["created"]
            else (
                f" (duplicate of run {r['run_id']}: its metadata was kept; "
                f"change it with `tracehouse runs edit {r['run_id']}`)"
            )
        )
        warn = "".join(f"; {k}={v}" for k, v in r["warnings"].items())
        echo(f"{r['path']}: run {r['run_id']}{note}{warn}")
