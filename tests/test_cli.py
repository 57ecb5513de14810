"""The command line is a thin layer: its JSON equals the analysis function's frame."""

from __future__ import annotations

import io
import json

import polars as pl

from tests.conftest import DATA, Database
from tests.fixtures import CliResult, run_cli
from tracehouse.analyses.breakdown import breakdown
from tracehouse.schema.db import session_scope

TRACE = DATA / "sd_tiny_cpu_flash.json.gz"


def _cli(*args: str, env: dict | None = None) -> CliResult:
    return run_cli(*args, env=env)


def test_ingest_runs_breakdown_round_trip(db: Database) -> None:
    out = _cli("ingest", str(TRACE), "--db", db.url, "--meta", "lab=a", "--backend", "flash", "--json")
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["created"] and result["kernels"] > 0
    again = json.loads(_cli("ingest", str(TRACE), "--db", db.url, "--json").stdout)
    assert again[0]["run_id"] == result["run_id"] and not again[0]["created"]

    runs = json.loads(_cli("runs", "--db", db.url, "--json").stdout)
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    assert runs[0]["model"] == "stable-diffusion" and runs[0]["attention_backend"] == "flash"

    for by in ("operator", "attention_type", "seq_len", "component", "kernel"):
        shown = _cli("breakdown", str(result["run_id"]), "--by", by, "--format", "json", "--db", db.url)
        assert shown.returncode == 0, shown.stderr
        with session_scope(db.engine) as s:
            expected = breakdown(s, result["run_id"], by)
        assert json.loads(shown.stdout) == json.loads(json.dumps(expected.to_dicts()))
    csv = _cli("breakdown", str(result["run_id"]), "--format", "csv", "--db", db.url)
    with session_scope(db.engine) as s:
        by_operator = breakdown(s, result["run_id"], "operator")
    shown_csv = pl.read_csv(io.StringIO(csv.stdout))
    assert shown_csv["operator"].to_list() == by_operator["operator"].to_list()
    assert shown_csv["total_ns"].to_list() == by_operator["total_ns"].to_list()


def test_unknown_run_and_bad_option_exit_nonzero(db: Database) -> None:
    missing = _cli("breakdown", "999", "--db", db.url)
    assert missing.returncode == 3 and missing.stderr.strip() == "error: run 999 does not exist"
    bad = _cli("breakdown", "1", "--by", "colour", "--db", db.url)
    assert bad.returncode == 2 and "unknown breakdown" in bad.stderr


def test_analysis_commands_print_the_functions_frames(db: Database) -> None:
    from tracehouse.analyses import compare, sequence
    from tracehouse.ingest.pipeline import ingest_file

    base = ingest_file(db.engine, DATA / "sd_tiny_cpu_baseline.json.gz", raw_dir=db.raw_dir).run_id
    flash = ingest_file(db.engine, TRACE, raw_dir=db.raw_dir).run_id
    for args, fn in (
        (["compare", str(base), str(flash), "--summary"], lambda s: compare.compare_summary(s, base, flash)),
        (
            ["sequence", str(base), "--view", "histogram", "--weight", "time"],
            lambda s: sequence.seq_len_histogram(s, base, "time"),
        ),
    ):
        shown = _cli(*args, "--format", "json", "--db", db.url)
        assert shown.returncode == 0, shown.stderr
        with session_scope(db.engine) as s:
            assert json.loads(shown.stdout) == json.loads(json.dumps(fn(s).to_dicts()))
    bad = _cli("sequence", str(base), "--view", "sideways", "--db", db.url)
    assert bad.returncode == 2 and "unknown view" in bad.stderr


def test_help_lists_every_command_once_under_its_heading() -> None:
    """``tracehouse --help`` groups the commands (``api/cli_help.SECTIONS``): every command is
    under one heading, the headings come in their order, none falls to "Other commands"."""
    import typer.main

    from tracehouse.api.cli_app import app
    from tracehouse.api.cli_help import SECTIONS, SectionedHelp

    group = typer.main.get_command(app)
    assert isinstance(group, SectionedHelp)
    commands = [name for name, command in group.commands.items() if not command.hidden]
    placed = [name for names in SECTIONS.values() for name in names]
    assert sorted(placed) == sorted(commands)  # each once, and nothing left over
    out = run_cli("--help")
    assert out.returncode == 0 and "Other commands" not in out.stdout
    at = [out.stdout.index(f"\n{title}:\n") for title in SECTIONS]
    assert at == sorted(at)
    for (title, names), start, end in zip(SECTIONS.items(), at, [*at[1:], len(out.stdout)], strict=True):
        listed = [line.split()[0] for line in out.stdout[start:end].splitlines()[2:] if line.startswith("  ")]
        assert listed == list(names), title
