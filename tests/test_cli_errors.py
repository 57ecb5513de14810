"""What a user meets when something is wrong: one line (or click's usage lines), the documented
exit code (2 bad input, 3 not found, 4 schema, 5 database or service), never a traceback; and a
CLI that starts without importing what the command does not use.

Exit codes only exist in ``main()``, which typer's CliRunner does not go through, so these run
``main()`` in this process (``run_cli``); the installed ``tracehouse`` entry point runs in a
subprocess where only it can tell (``--help``'s imports, a profiler run of ``collect``).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import DATA, Database
from tests.fixtures import AppServer, CliResult, Server, run_cli
from tracehouse.api import cli

TRACEHOUSE = Path(sys.executable).with_name("tracehouse")
SD = DATA / "sd_tiny_cpu_baseline.json.gz"


def _entry_point(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed ``tracehouse`` in a process of its own."""
    command = [str(TRACEHOUSE)] if TRACEHOUSE.exists() else [sys.executable, "-m", "tracehouse.api.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=180, env=env)


def _run(*args: str, env: dict | None = None) -> CliResult:
    return run_cli(*args, env=env)


def _one_error_line(out: CliResult | subprocess.CompletedProcess) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- item 3: usage errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["breakdown", "abc"], "Invalid value for 'run_id'"),
        (["breakdown"], "Missing argument"),
        (["breakdown", "1", "--nosuch"], "No such option: --nosuch"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["collect", "--model", "nosuch", "--device", "cpu"], "unknown model 'nosuch'"),
        (["collect", "--model", "sd", "--device", "cpu", "--sweep", "image-size=abc"], "values must be integers"),
        (["collect", "--model", "sd", "--device", "cpu", "--sweep", "colour=red"], "--sweep expects KNOB="),
    ],
)
def test_usage_errors_print_clicks_usage_and_exit_2(args: list[str], message: str) -> None:
    out = _run(*args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) <= 4 and lines[0].startswith("Usage: "), out.stderr  # Usage, Try --help, Error
    assert lines[-1].startswith("Error: ") and message in lines[-1], out.stderr


def _main_exit_code(monkeypatch: pytest.MonkeyPatch, name: str, command: Callable[[], None]) -> object:
    """The exit code of ``tracehouse NAME`` through ``main()``, with ``command`` registered as NAME
    for this test only."""
    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    cli.app.command(name)(command)
    monkeypatch.setattr(sys, "argv", ["tracehouse", name])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code


def test_main_also_recognises_real_clicks_exceptions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A library (or an older typer) raising real click's UsageError gets the same treatment."""
    import click

    def raises_click() -> None:
        raise click.UsageError("real click says no")

    assert _main_exit_code(monkeypatch, "raises-click", raises_click) == 2
    assert capsys.readouterr().err.strip().endswith("Error: real click says no")


def test_usage_error_in_process_through_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["tracehouse", "breakdown", "abc"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "Invalid value for 'run_id'" in capsys.readouterr().err


# -- items 4 and 9 against a live server -----------------------------------------------------


def _write_token(srv: AppServer) -> str:
    return srv.token("write")["Authorization"].split()[1]


@pytest.mark.parametrize("as_json", [False, True])
def test_upload_exits_2_when_the_servers_ingest_fails(live_server: Server, tmp_path: Path, as_json: bool) -> None:
    server = live_server  # the upload client reaches it over TCP
    bad = tmp_path / "bad.json"  # passes the client's and the upload's checks; the ingest job fails
    bad.write_bytes(b'{"traceEvents": [{"ph": "X", "cat": "kernel"')
    out = _run(
        "upload",
        str(bad),
        "--server",
        server.url,
        "--token",
        _write_token(server),
        *(["--json"] if as_json else []),
        env=server.env,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    if as_json:
        [job] = orjson.loads(out.stdout)
        assert job["status"] == "failed" and "not valid JSON" in job["error"]
    else:
        assert "failed" in out.stdout and "not valid JSON" in out.stdout


def test_upload_that_succeeds_still_exits_0(live_server: Server, tmp_path: Path) -> None:
    server = live_server
    trace = tmp_path / "sd.json.gz"  # new bytes for this server, same trace
    trace.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b"  "))
    out = _run("upload", str(trace), "--server", server.url, "--token", _write_token(server), env=server.env)
    assert out.returncode == 0, out.stderr
    assert ": job " in out.stdout and " run " in out.stdout


def test_rest_errors_name_the_rest_parameter_not_a_cli_flag(server: AppServer) -> None:
    read = server.token("read")
    tagged = server.http.get(f"{server.url}/v1/runs", params={"tag": "novalue"}, headers=read)
    assert tagged.status_code == 400
    assert "query parameter 'tag'" in tagged.json()["error"] and "--" not in tagged.json()["error"]
    filtered = server.http.get(
        f"{server.url}/v1/sweep",
        headers=read,
        params={"model": "stable-diffusion", "knob": "image-size", "filter": "novalue"},
    )
    assert filtered.status_code == 400
    assert "query parameter 'filter'" in filtered.json()["error"] and "--" not in filtered.json()["error"]
    with SD.open("rb") as fh:
        form = server.http.post(
            f"{server.url}/v1/traces",
            files={"file": (SD.name, fh)},
            data={"meta": "novalue"},
            headers=server.token("write"),
        )
    assert form.status_code == 400
    assert "form field 'meta'" in form.json()["error"] and "--" not in form.json()["error"]


def test_rest_sweep_takes_either_spelling_of_a_knob(server: AppServer, tmp_path: Path) -> None:
    write, read = server.token("write"), server.token("read")
    for size, spelling in ((64, "image_size"), (128, "image-size")):
        copy = tmp_path / f"sd{size}.json.gz"
        copy.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b"\n" * (size // 16)))  # new bytes
        with copy.open("rb") as fh:
            reply = server.http.post(
                f"{server.url}/v1/traces",
                params={"wait": 60},
                files={"file": (copy.name, fh)},
                data={"meta": f"{spelling}={size}", "model": "stable-diffusion", "attention_backend": "spelling-test"},
                headers=write,
            )
        assert reply.status_code in (200, 202) and reply.json()["status"] == "done", reply.text
    answers = [
        server.http.get(
            f"{server.url}/v1/sweep",
            headers=read,
            params={"model": "stable-diffusion", "knob": knob, "operator": "total", "filter": f"{name}=spelling-test"},
        )
        for knob, name in (("image_size", "attention_backend"), ("image-size", "attention-backend"))
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert answers[0].json() == answers[1].json()
    assert sorted(row["image_size"] for row in answers[0].json()) == [64, 128]


# -- item 5: one line, the documented code ---------------------------------------------------


def test_unreachable_server_is_one_line_exit_5() -> None:
    out = _run("upload", str(SD), "--server", "http://127.0.0.1:9", "--token", "t")
    assert out.returncode == 5
    assert "cannot reach the tracehouse service at http://127.0.0.1:9" in _one_error_line(out)


def test_server_url_without_scheme_is_bad_input() -> None:
    out = _run("upload", str(SD), "--server", "127.0.0.1:9", "--token", "t")
    assert out.returncode == 2
    assert "--server" in _one_error_line(out)


@pytest.mark.parametrize("url", ["mysql://user:secret@x/db", "nosuch://x", "notaurl"])
def test_unknown_database_driver_is_one_line(url: str) -> None:
    out = _run("runs", "--db", url)
    # Bad input (2) here; a database error (5) is the other documented reading of it.
    assert out.returncode in (2, 5), out.stderr
    line = _one_error_line(out)
    assert "secret" not in line


def test_collect_on_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = _entry_point("collect", "--model", "sd", "--device", "cuda", "--out", str(tmp_path))
    assert out.returncode == 2
    assert "--device cuda" in _one_error_line(out)
    assert not list(tmp_path.iterdir())


def test_collect_retry_for_without_upload_is_refused_before_profiling(tmp_path: Path) -> None:
    out = _entry_point("collect", "--model", "sd", "--device", "cpu", "--out", str(tmp_path), "--retry-for", "5")
    assert out.returncode == 2 and "--retry-for" in out.stderr and "--upload" in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())  # nothing was profiled


def test_collect_upload_to_an_unreachable_server_is_one_line_exit_5(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = _entry_point(
        "collect",
        "--model",
        "sd",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--out",
        str(tmp_path),
        "--upload",
        "http://127.0.0.1:9",
        "--token",
        "t",
    )
    assert out.returncode == 5, out.stderr
    assert "cannot reach the tracehouse service" in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert list(tmp_path.glob("*.json.gz"))  # the trace was written before the upload failed


def test_collect_upload_needs_a_token_before_it_profiles(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    result = CliRunner().invoke(
        cli.app,
        ["collect", "--model", "sd", "--device", "cpu", "--out", str(tmp_path), "--upload", "http://127.0.0.1:9"],
        env={"TRACEHOUSE_TOKEN": ""},
    )
    assert result.exit_code == 2 and "--upload needs --token" in result.output
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


# -- item 9: one spelling per knob -----------------------------------------------------------


def test_sweep_knobs_take_hyphen_or_underscore() -> None:
    from tracehouse.api.cli_collect import parse_sweep

    hyphens = parse_sweep(["image-size=64", "decode-tokens=4", "text-length=8", "denoising-steps=2"])
    underscores = parse_sweep(["image_size=64", "decode_tokens=4", "text_length=8", "denoising_steps=2"])
    assert hyphens == underscores == {"image_size": [64], "decode_tokens": [4], "text_length": [8], "steps": [2]}
    assert parse_sweep(["Attention-Backend=flash"]) == {"attention": ["flash"]}


def test_meta_and_filters_take_either_spelling() -> None:
    from tracehouse.analyses.params import typed_filters
    from tracehouse.core.meta import meta_from_mapping, parse_key_values

    meta = meta_from_mapping(parse_key_values(["image-size=512", "decode_tokens=3", "steps=20", "lab-name=a"]))
    assert (meta.image_size, meta.decode_tokens, meta.denoising_steps) == (512, 3, 20)
    assert meta.tags == {"lab-name": "a"}  # a lab's own tag keeps its spelling
    assert meta_from_mapping(parse_key_values(["tags=x"])).tags == {"tags": "x"}  # was a TypeError
    assert (
        typed_filters(["image-size=512", "attention-backend=flash"])
        == typed_filters(["image_size=512", "attention_backend=flash"])
        == {"image_size": 512, "attention_backend": "flash"}
    )


def test_cli_sweep_and_ingest_take_either_spelling(db: Database, tmp_path: Path) -> None:
    for size, spelling in ((64, "image_size"), (128, "image-size")):
        copy = tmp_path / f"sd{size}.json.gz"
        copy.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b" " * (size // 32)))
        out = _run("ingest", str(copy), "--db", db.url, "--model", "stable-diffusion", "--meta", f"{spelling}={size}")
        assert out.returncode == 0, out.stderr
    shown = [
        _run("sweep", "stable-diffusion", knob, "--operator", "total", "--format", "json", "--db", db.url)
        for knob in ("image_size", "image-size")
    ]
    assert [s.returncode for s in shown] == [0, 0], shown[1].stderr
    assert shown[0].stdout == shown[1].stdout
    assert sorted(row["image_size"] for row in orjson.loads(shown[0].stdout)) == [64, 128]
    bad = _run("runs", "--db", db.url, "--tag", "novalue")
    assert bad.returncode == 2 and "--tag expects KEY=VALUE" in _one_error_line(bad)


# -- start fast ------------------------------------------------------------------------------

HEAVY = {
    "polars",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "torch",
    "httpx",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic_settings",
    "psycopg",
    "msgspec",
    "isal",
    "rich",  # help is click's plain text: rich is for progress bars
}  # pydantic: typer 0.29 coerces with it

_MODULES_AFTER_MAIN = """
import contextlib, io, sys
from tracehouse.api.cli import main
sys.argv = ["tracehouse", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
print(" ".join(sorted(sys.modules)))
"""


def _modules_after(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER_MAIN, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("args", [["--help"], ["collect", "--help"], ["ingest", "--help"], ["fleet", "--help"]])
def test_help_imports_none_of_the_heavy_libraries(args: list[str]) -> None:
    tops = {name.split(".")[0] for name in _modules_after(*args)}
    assert not tops & HEAVY, sorted(tops & HEAVY)
    entry = _entry_point(*args)
    assert entry.returncode == 0 and "Usage" in entry.stdout


def test_ingest_imports_no_service_collector_or_progress_bar(tmp_path: Path) -> None:
    loaded = _modules_after("ingest", str(SD), "--db", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    tops = {name.split(".")[0] for name in loaded}
    assert not tops & {"fastapi", "starlette", "uvicorn", "torch", "httpx", "pandas", "transformers"}, tops
    assert "rich.progress" not in loaded  # one file: no progress bar to draw


def test_ingest_into_a_migrated_database_skips_alembic_settings_and_ncu(tmp_path: Path) -> None:
    """What a small trace's ingest would spend more time importing than parsing."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert _run("db", "upgrade", "--db", url).returncode == 0
    loaded = _modules_after("ingest", str(SD), "--db", url)
    assert not {"alembic", "pydantic_settings", "tracehouse.ingest.ncu_load"} & loaded


def test_typer_exit_code_is_kept_outside_standalone_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    def exits_3() -> None:
        raise typer.Exit(3)

    assert _main_exit_code(monkeypatch, "exits-3", exits_3) == 3
