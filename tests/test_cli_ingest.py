"""``tracehouse ingest FILE...`` without typer: the plain invocations are parsed as typer parses
them, everything else still meets typer's usage errors, and a whole ingest into a SQLite
database at head imports neither typer's argument parsing nor SQLAlchemy."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, Database
from tests.fixtures import run_cli
from tests.test_cli_errors import _modules_after
from tracehouse.api import cli_ingest

SD = DATA / "sd_tiny_cpu_baseline.json.gz"

PLAIN = [
    ["ingest", "a.json.gz"],
    ["ingest", "a.json.gz", "b.json", "--db", "sqlite:///x.sqlite3"],
    ["ingest", "--db=sqlite:///x.sqlite3", "a.json.gz", "--json"],
    ["ingest", "a", "--model", "sd", "--hardware", "H100", "--backend", "flash", "--experiment", "e1"],
    ["ingest", "a", "--meta", "k=v", "--meta=scale=xl", "b", "--meta", "x=1=2"],
    ["ingest", "dir/", "--model", "name with spaces", "--db", "postgresql://u@h/db"],
]
TYPERS = [
    ["ingest"],
    ["ingest", "--help"],
    ["ingest", "a", "--db"],
    ["ingest", "a", "--db", "--json"],
    ["ingest", "a", "--nosuch"],
    ["ingest", "a", "-x"],
    ["ingest", "a", "--json=1"],
    ["ingest", "a", "--model", "m", "--model", "n"],
    ["ingest", "a", "--run", "3"],
    ["ingest", "a", "--", "b"],
    ["ingest", "-"],
    ["ingest", ""],
    ["runs", "a"],
]


def _typer_kwargs(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What typer's ``ingest`` command hands ``run_ingest`` for ``argv``."""
    from tracehouse.api.cli_app import app

    seen: dict[str, Any] = {}

    def record(paths: list[Path], **kwargs: Any) -> None:
        seen.update(paths=paths, **kwargs)

    monkeypatch.setattr(cli_ingest, "run_ingest", record)
    app(argv, standalone_mode=False)
    return seen


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_arguments_parse_as_typer_parses_them(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ours = cli_ingest.parse_argv(argv)
    assert ours is not None
    assert {"db": None, "model": None, "hardware": None, "backend": None, "experiment": None, "run": None, **ours} == (
        _typer_kwargs(argv, monkeypatch)
    )


@pytest.mark.parametrize("argv", TYPERS)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert cli_ingest.parse_argv(argv) is None


def test_shell_completion_is_left_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TRACEHOUSE_COMPLETE", "bash_complete")
    assert cli_ingest.parse_argv(["ingest", "a"]) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest"], "Missing argument"),
        (["ingest", "x", "--db"], "requires an argument"),
        (["ingest", "x", "--no"], "No such option"),
    ],
)
def test_malformed_ingest_arguments_still_get_typers_usage_error(args: list[str], message: str) -> None:
    out = run_cli(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and lines[-1].startswith("Error: ") and message in lines[-1], out.stderr


def test_plain_ingest_and_typers_print_the_same(db: Database, tmp_path: Path) -> None:
    """The same trace through main()'s plain path and through typer (``--run`` goes typer's way,
    so an ncu-free run without it is compared by re-ingesting: the duplicate line)."""
    first = run_cli("ingest", str(SD), "--db", db.url)
    assert first.returncode == 0 and first.stdout == f"{SD}: run 1\n", first.stderr
    from typer.testing import CliRunner

    from tracehouse.api.cli_app import app

    again = CliRunner().invoke(app, ["ingest", str(SD), "--db", db.url, "--json"])
    plain = run_cli("ingest", str(SD), "--db", db.url, "--json")
    assert again.exit_code == 0 and again.stdout == plain.stdout and '"created":false' in plain.stdout


def test_errors_from_the_plain_path_are_one_line_with_the_exit_code(tmp_path: Path) -> None:
    out = run_cli("ingest", str(tmp_path / "missing.json"), "--db", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1
    out = run_cli("ingest", str(SD), "--meta", "novalue")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "--meta" in out.stderr


def test_plain_ingest_imports_neither_typer_nor_sqlalchemy(tmp_path: Path) -> None:
    """Into a SQLite file at head the plain-sqlite3 writer writes (``ingest/writer_sqlite.py``):
    no SQLAlchemy, no models, no Alembic; a new file is made at head from the migrations'
    snapshot (``schema/sqlite_head.py``), with neither, and the rows land either way."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert run_cli("db", "upgrade", "--db", url).returncode == 0
    loaded = _modules_after("ingest", str(SD), "--db", url)
    tops = {name.split(".")[0] for name in loaded}
    heavy = {"typer", "click", "pydantic", "alembic", "rich", "sqlalchemy", "numpy"}
    assert not tops & heavy, sorted(tops & heavy)
    assert not {"tracehouse.schema.models", "tracehouse.schema.db", "tracehouse.ingest.load"} & loaded
    assert "tracehouse.ingest.writer_sqlite" in loaded
    fresh = _modules_after("ingest", str(SD), "--db", f"sqlite:///{tmp_path / 'new' / 'new.sqlite3'}")
    assert not {name.split(".")[0] for name in fresh} & heavy
    assert "tracehouse.schema.sqlite_head" in fresh and "tracehouse.ingest.writer_sqlalchemy" not in fresh
    for name in ("db.sqlite3", "new/new.sqlite3"):
        with sqlite3.connect(tmp_path / name) as conn:
            assert conn.execute("SELECT count(*) FROM run").fetchone() == (1,)


def test_the_command_itself_exits_with_everything_written(tmp_path: Path) -> None:
    """The installed ``tracehouse`` ends a plain ingest without the interpreter's teardown: its
    piped output is whole, the run committed, the SQLite file checkpointed (no WAL left)."""
    import json
    import os
    import sqlite3
    import subprocess
    import sys

    from tests.test_cli_errors import _entry_point

    db = tmp_path / "db.sqlite3"
    assert _entry_point("db", "upgrade", "--db", f"sqlite:///{db}").returncode == 0  # no connection kept here
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a pipe is
    for command in (None, [sys.executable, "-m", "tracehouse.api.cli"]):
        args = ["ingest", str(SD), str(DATA / "sd_tiny_cpu_flash.json.gz"), "--db", f"sqlite:///{db}", "--json"]
        if command is None:
            out = _entry_point(*args, env=env)
        else:
            out = subprocess.run([*command, *args], capture_output=True, text=True, timeout=180, env=env)
        assert out.returncode == 0, out.stderr
        assert [r["run_id"] for r in json.loads(out.stdout)] == [1, 2]
    assert not db.with_name(db.name + "-wal").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM run").fetchone() == (2,)
