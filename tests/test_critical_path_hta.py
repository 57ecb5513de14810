"""The lightweight critical path against HTA's ``critical_path_analysis`` on one step.

Not equal by construction: HTA builds a graph of CPU ops, launches, kernels and the runtime's
sync and event records over the ProfilerStep annotation's CPU window; we keep only each
kernel's launch call (see ``analyses/critical_path.py``) and cut the path from the step's
first launch.  What should agree is what bounds the step: on a GPU-bound step the kernel
share of the path, on a host-bound one the host share (HTA's ``cpu_bound``), to within 5
points.  Where they part (a100_rank3_of8_training: HTA charges 73% of step 1010 to gaps
between kernels held by cross-stream events, which the store does not keep) is not tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_hta_crosscheck import _hta, _ingested
from tracehouse.analyses.critical_path import critical_path_segments
from tracehouse.schema.db import session_scope

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("name", "step", "hta_bound", "ours"),
    [
        ("v100_ns_resolution.json.gz", 102, ("gpu_compute_bound", "gpu_communication_bound"), ("kernel",)),
        ("a100_nccl_training.json.gz", 5, ("cpu_bound",), ("host", "launch")),
    ],
)
def test_what_bounds_the_step_agrees_with_hta(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    step: int,
    hta_bound: tuple[str, ...],
    ours: tuple[str, ...],
) -> None:
    db, path, run_id = _ingested(tmp_path, name, monkeypatch)
    with session_scope(db.engine) as s:
        segments = critical_path_segments(s, run_id, step=step)
    mine = segments.filter(segments["resource"].is_in(list(ours)))["dur_ns"].sum() / segments["dur_ns"].sum()
    graph, ok = _hta(path).critical_path_analysis(rank=0, annotation=f"ProfilerStep#{step}", instance_id=0)
    assert ok
    breakdown = graph.get_critical_path_breakdown()
    shares = breakdown.groupby("bound_by").duration.sum() / breakdown.duration.sum()
    theirs = sum(shares.get(b, 0.0) for b in hta_bound)
    assert theirs > 0.9 and mine == pytest.approx(theirs, abs=0.05), (mine, dict(shares))
