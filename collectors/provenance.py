"""Which code made a run: the git commit and a version string of the checkout the collector
ran in (``git rev-parse HEAD``, ``git describe --always --dirty``), unless the user said."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git, or a hung filesystem: just unknown
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def provenance(
    cwd: Path | None = None, *, commit: str | None = None, version: str | None = None, experiment: str | None = None
) -> dict[str, str]:
    """Manifest keys ``experiment``, ``git_commit``, ``version``: what was given, else what the
    git checkout at ``cwd`` says (nothing outside a checkout)."""
    where = cwd or Path.cwd()
    found = {
        "experiment": experiment,
        "git_commit": commit or _git(["rev-parse", "HEAD"], where),
        "version": version or _git(["describe", "--always", "--dirty"], where),
    }
    return {k: v[:64] if k != "experiment" else v for k, v in found.items() if v}
