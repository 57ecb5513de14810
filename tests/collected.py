"""Tiny collector traces made once per test session, shared by the xdist workers.

Profiling the tiny suite costs 15-30 s of CPU, and with ``-n 2`` each worker that runs one of
its tests would profile it again (the two copies then fight for the same two cores).  Each
trace is made under a file lock in the folder every worker's base temp dir shares; a worker
first takes the traces no one is making, then waits for the rest, so two workers split the
suite between them instead of both making all of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

Key = tuple[str, str]  # (model, attention backend)


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder this test session's workers share (xdist gives each its own basetemp below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _made(root: Path, key: Key, wait: bool) -> Path | None:
    """The trace for ``key``, made here if no one has; None when another worker holds it and
    ``wait`` is False."""
    folder = root / f"tiny-{key[0]}-{key[1]}"
    done = folder / "trace-path"
    try:
        with FileLock(f"{folder}.lock", timeout=-1 if wait else 0):
            if not done.exists():
                from tracehouse.collectors.profile import collect_one

                trace = collect_one(key[0], "tiny", key[1], out=folder).trace
                done.with_suffix(".part").write_text(str(trace))
                done.with_suffix(".part").replace(done)  # a crash mid-write leaves no half answer
    except Timeout:
        return None
    return Path(done.read_text())


def tiny_traces(tmp_path_factory: pytest.TempPathFactory, keys: Iterable[Key]) -> dict[Key, Path]:
    """The tiny-scale trace of each (model, attention), profiled once per test session."""
    root = shared_root(tmp_path_factory)
    traces: dict[Key, Path] = {}
    pending = list(keys)
    for key in pending:  # first the ones no other worker is making
        found = _made(root, key, wait=False)
        if found is not None:
            traces[key] = found
    for key in pending:  # then wait for the others' work
        if key not in traces:
            made = _made(root, key, wait=True)
            assert made is not None
            traces[key] = made
    return traces
