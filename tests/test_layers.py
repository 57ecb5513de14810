"""The layers of README "Architecture", checked by import-linter (contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_run_one_way_down() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_timeline_format_has_one_parser() -> None:
    from tracehouse.core.frames import TIMELINE_FORMATS
    from tracehouse.ingest.pipeline import PARSERS

    assert tuple(PARSERS) == TIMELINE_FORMATS
