"""What a user sees from the scripts and the install: the demo's runs are the ones a plain
`tracehouse` command lists, a failing step says why, and no tool noise on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

TRACEHOUSE = Path(sys.executable).with_name("tracehouse")


def _user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no tracehouse settings, the platform data dir under ``tmp_path``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TRACEHOUSE_", "KINETO_")) and k != "PYTHONWARNINGS"
    }
    # The scripts use the environment this suite runs in (.venv, or .venv-latest for the
    # newest-versions run).
    return {**env, "XDG_DATA_HOME": str(tmp_path / "xdg"), "VENV": sys.prefix, **extra}


def _needs_torch() -> None:
    pytest.importorskip("torch", reason="the collectors need torch (the collect extra)")


def test_packaging_has_no_setuptools_warnings(tmp_path: Path) -> None:
    # The ext-modules table in pyproject.toml is experimental, and migrations/versions was
    # "a package that would be ignored": both printed warnings on every `pip install -e .`.
    out = subprocess.run(
        [sys.executable, "-W", "always", "setup.py", "-q", "build_py", "-d", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr
    assert (tmp_path / "tracehouse" / "migrations" / "versions" / "0001_initial_trace_store.py").is_file()


def test_collect_prints_no_profiler_usdt_lines(tmp_path: Path) -> None:
    _needs_torch()
    out = subprocess.run(
        [
            str(TRACEHOUSE),
            "collect",
            "--model",
            "phenaki",
            "--scale",
            "tiny",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "traces"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_user_env(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "traces").glob("*.json.gz"))
    assert "USDT" not in out.stderr and "profiler_start" not in out.stderr, out.stderr


def test_demo_shows_why_collect_failed(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    data_dir = blocked / "data"
    out = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_user_env(
            tmp_path, TRACEHOUSE_DATA_DIR=str(data_dir), TRACEHOUSE_DEMO_SETUP="0", TRACEHOUSE_DEMO_SERVE="0"
        ),
    )
    assert out.returncode != 0
    assert str(blocked) in out.stderr  # the error, not silence


@pytest.mark.slow
def test_demo_runs_are_what_a_plain_command_lists(tmp_path: Path) -> None:
    _needs_torch()
    env = _user_env(tmp_path, TRACEHOUSE_DEMO_SETUP="0", TRACEHOUSE_DEMO_SERVE="0")
    demo = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "USDT" not in demo.stderr
    database = tmp_path / "xdg" / "tracehouse" / "tracehouse.sqlite3"
    assert f"database: sqlite:///{database}" in demo.stdout.splitlines()
    listed = subprocess.run(
        [str(TRACEHOUSE), "runs", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_user_env(tmp_path),
    )
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert len(runs) == 16  # the tiny suite, baseline and flash
    assert {r["attention_backend"] for r in runs} == {"baseline", "flash"}
    assert "stable-diffusion" in {r["model"] for r in runs}
