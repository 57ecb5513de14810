"""``tracehouse ingest``: the command's body, and the plain invocations run without typer.

A whole ``tracehouse ingest FILE`` process used to spend more time in typer's argument
parsing (its pydantic adapters, ~0.1 s) and SQLAlchemy's import than in the ingest.  So
``main()`` (``api/cli.py``) hands ``ingest`` argument lists made only of paths and the
command's own ``--flag value`` options to :func:`parse_argv` and calls :func:`run_ingest`
itself; anything else (``--help``, an unknown or malformed option, ``--run``, shell
completion) goes to typer, which gives its usual usage errors.  Into a SQLite file already at
the schema head, traces are written with ``sqlite3`` (``ingest/load_sqlite.py``), otherwise
through SQLAlchemy as before.  tests/test_cli_ingest.py checks both ways give the same output,
exit codes and rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from tracehouse.api.cli_base import PathSettings, echo, open_engine, progress

if TYPE_CHECKING:
    import sqlite3

    from tracehouse.core.meta import RunMeta
    from tracehouse.core.rules import NameRule
    from tracehouse.ingest.digests import Early
    from tracehouse.ingest.pipeline import IngestResult
    from tracehouse.ingest.units import IngestUnit

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
    run_meta = meta_from_mapping(values)
    settings = PathSettings()  # pydantic-settings' import would cost more than a small trace's parse
    url = settings.resolved_database_url(db)
    early = _early_digests(paths) if run is None and url.startswith("sqlite:///") else None
    conn = _sqlite_at_head(url) if run is None else None
    try:
        landed, count = _plan(conn, paths, db, run, run_meta, settings, early)
    except BaseException:
        if conn is not None:
            conn.close()
        raise
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
    conn: sqlite3.Connection | None,
    paths: list[Path],
    db: str | None,
    run: int | None,
    run_meta: RunMeta,
    settings: PathSettings,
    early: Early | None,
) -> tuple[Iterator[tuple[IngestUnit, IngestResult]], int]:
    """The results as each unit lands, and how many units: errors in the paths, the database
    or the rules file come before anything is ingested, in the order they always came."""
    from tracehouse.ingest.units import ingest_all, plan_units
    from tracehouse.ingest.user_rules import name_rules_for

    engine = open_engine(db) if conn is None else None
    units = plan_units(paths)
    if conn is not None and any(u.format == "ncu" for u in units):  # the ncu loader is SQLAlchemy's
        conn.close()
        conn, engine = None, open_engine(db)
    name_rules = name_rules_for(settings.rules_file())  # checked before anything is ingested
    raw_dir = settings.raw_dir()
    if conn is not None:
        return _ingest_sqlite(conn, units, run_meta, raw_dir, name_rules, early), len(units)
    assert engine is not None  # opened above whenever the SQLite connection is not
    return ingest_all(engine, units, run_meta, raw_dir=raw_dir, run_id=run, name_rules=name_rules), len(units)


def _early_digests(paths: list[Path]) -> Early:
    """The trace files' digests, started on another thread before the heavy imports."""
    from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, default_inflated_limit
    from tracehouse.ingest.digests import Early

    cap = default_inflated_limit(DEFAULT_MAX_TRACE_BYTES)  # pipeline.ingest_file's, as the CLI calls it
    return Early([p for p in paths if p.is_file()], DEFAULT_MAX_TRACE_BYTES, cap)


def _sqlite_at_head(url: str) -> sqlite3.Connection | None:
    from tracehouse.ingest.load_sqlite import open_at_head

    return open_at_head(url)


def _ingest_sqlite(
    conn: sqlite3.Connection,
    units: list[IngestUnit],
    meta: RunMeta,
    raw_dir: Path,
    name_rules: Sequence[NameRule],
    early: Early | None,
) -> Iterator[tuple[IngestUnit, IngestResult]]:
    from tracehouse.ingest.load_sqlite import ingest_file

    try:
        for unit in units:
            yield unit, ingest_file(conn, unit.paths[0], meta, raw_dir=raw_dir, name_rules=name_rules, early=early)
    finally:
        conn.close()


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
