"""ruff (lint and format) and mypy over the repository, as configured in pyproject.toml.

Each runs the environment's own binary (like tests/test_layers.py runs lint-imports), so the
suite checks with exactly the pinned versions and nothing is downloaded.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def _failure(what: str, done: subprocess.CompletedProcess[str], fix: str) -> str:
    return f"{what} failed (exit {done.returncode}); {fix}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"


def test_ruff_check_finds_nothing() -> None:
    done = _run(str(BIN / "ruff"), "check", "--no-cache", ".", timeout=300)
    assert done.returncode == 0, _failure("ruff check", done, "see `ruff check .` (`--fix` for the safe fixes)")


def test_code_is_ruff_formatted() -> None:
    done = _run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".", timeout=300)
    assert done.returncode == 0, _failure("ruff format --check", done, "run `ruff format .`")


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    # Strict on core, schema and analyses; the packages and flags are in [tool.mypy].
    done = _run(str(BIN / "mypy"), timeout=1200)
    assert done.returncode == 0, _failure("mypy", done, "see `mypy` (packages and flags in pyproject.toml)")


def test_mypy_sees_every_package() -> None:
    """mypy reaches the packages through .typecheck/tracehouse/ symlinks (it cannot follow the
    editable install's import hook): one per package-dir entry, each pointing at its folder,
    and every package in [tool.mypy] packages."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_dir = config["tool"]["setuptools"]["package-dir"]
    links = {f"tracehouse.{p.name}": p for p in (REPO / ".typecheck" / "tracehouse").iterdir()}
    assert set(links) == set(package_dir), "add or remove the symlink in .typecheck/tracehouse/"
    for name, link in links.items():
        assert link.is_symlink() and link.resolve() == (REPO / package_dir[name]).resolve(), name
    assert set(config["tool"]["mypy"]["packages"]) == set(package_dir), "[tool.mypy] packages"
