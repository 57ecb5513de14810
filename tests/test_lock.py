"""The environment the suite runs in is the one requirements.lock describes, and the lock keeps
within pyproject.toml's ranges: a new dependency, or a lock edited by hand, fails here."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _locked() -> dict[str, str]:
    pins = {}
    for text in LOCK.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not NAME==VERSION"
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    locked = _locked()
    for req in _declared():
        name = req.name.lower().replace("_", "-").replace(".", "-")
        assert name in locked, f"{req.name} is declared in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside pyproject's {req}"
        )


@pytest.mark.skipif(
    os.environ.get("TRACEHOUSE_LOCK") == "none",
    reason="this run installs the newest allowed versions on purpose (scripts/test-latest.sh)",
)
def test_the_environment_is_exactly_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lockfile.py"), "diff", str(LOCK)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"installed packages differ from requirements.lock:\n{result.stdout}"
