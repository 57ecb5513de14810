"""``tracehouse advise``: every rule fires on a real trace that shows the problem and stays
quiet on one that does not; the numbers of each finding are recomputed here from the stored
kernel rows with plain Python (no analysis code); CLI, REST and Python give the same table.

The traces, and why each is a rule's case:
- sd_tiny_cpu_baseline / _flash (tests/data): a stored baseline/flash pair of one model;
  attention on the math path in the first, convolution the largest operator in the second.
- a100_nccl_training: 55% of its kernels shorter than their launch call; a stream the host
  starves; fast tensor-core GEMMs only.
- a100_rank3_of8_training: rank 3 of 8, communication mostly exposed; its last step 6% over
  the median.
- a100_alexnet_small: pageable host-to-device copies; ``ampere_sgemm`` / ``scudnn`` FP32 kernels.
- v100_ns_resolution: a busy GPU, no communication, steady steps.
- old_format_inference ingested without kernel-name rules (a lab whose rules miss its
  kernels): all of its time in ``other``.
- make-a-video, tiny, profiled here (``tests/collected.py``; needs torch): temporal attention
  about half the attention time at a tenth of spatial attention's FLOP/s.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from sqlalchemy import text

from tests.collected import tiny_traces
from tests.conftest import BACKENDS, DATA, KINETO_DIR, Database, require_shared
from tracehouse.analyses.advise import RULES, advise, rule_table
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope

TRACES = {
    "baseline": DATA / "sd_tiny_cpu_baseline.json.gz",
    "flash": DATA / "sd_tiny_cpu_flash.json.gz",
    "nccl": KINETO_DIR / "a100_nccl_training.json.gz",
    "rank3": KINETO_DIR / "a100_rank3_of8_training.json.gz",
    "alexnet": KINETO_DIR / "a100_alexnet_small.json.gz",
    "v100": KINETO_DIR / "v100_ns_resolution.json.gz",
    "old_no_rules": KINETO_DIR / "old_format_inference.json.gz",
    "shapes16": KINETO_DIR / "a100_record_shapes.json.gz",
    "mi250": KINETO_DIR / "mi250_rocm.json.gz",
    "cpu_only": KINETO_DIR / "cpu_only.json.gz",
    "triton": KINETO_DIR / "triton_example.json.gz",
}

# rule id -> (a run it must fire on, a run it must not fire on)
CASES = {
    "attention.materialised": ("baseline", "flash"),
    "launch.bound": ("nccl", "rank3"),
    "idle.host_wait": ("nccl", "v100"),
    "memcpy.pageable": ("alexnet", "nccl"),
    "gemm.fp32_simt": ("alexnet", "nccl"),
    "conv.after_fused_attention": ("flash", "baseline"),
    "comm.exposed": ("rank3", "v100"),
    "other.high": ("old_no_rules", "v100"),
    "steps.unstable": ("rank3", "v100"),
    "attention.temporal_slow": ("mav", "baseline"),
}
HAS_TORCH = importlib.util.find_spec("torch") is not None  # the tiny make-a-video run is profiled here


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory) -> Iterator[tuple[Database, dict[str, int]]]:  # type: ignore[no-untyped-def]
    require_shared()
    tmp = tmp_path_factory.mktemp(f"advise-{request.param}")
    db = Database(request.param, tmp).migrate()
    runs = {}
    for key, path in TRACES.items():
        rules = {"name_rules": ()} if key == "old_no_rules" else {}
        runs[key] = ingest_file(db.engine, path.resolve(), raw_dir=tmp / "raw", **rules).run_id
    if HAS_TORCH:
        mav = tiny_traces(tmp_path_factory, [("make-a-video", "baseline")])[("make-a-video", "baseline")]
        runs["mav"] = ingest_file(db.engine, mav, raw_dir=tmp / "raw").run_id
    yield db, runs
    db.drop()


def _findings(db: Database, run_id: int) -> dict[str, dict]:
    with session_scope(db.engine) as s:
        return {row["rule"]: row for row in advise(s, run_id).to_dicts()}


def test_rule_table_has_one_row_per_rule_and_each_rule_a_case() -> None:
    table = rule_table()
    assert table["rule"].to_list() == [r.id for r in RULES] and table["rule"].is_unique().all()
    assert set(CASES) == set(table["rule"])
    assert table.select("detects", "estimate_basis", "query", "rest").null_count().sum_horizontal().item() == 0


@pytest.mark.parametrize("rule", list(CASES))
def test_each_rule_fires_on_its_trace_and_not_on_the_other(store: tuple[Database, dict[str, int]], rule: str) -> None:
    db, runs = store
    fires, quiet = CASES[rule]
    if fires not in runs:
        pytest.skip(f"{fires}: profiled by the test, which needs torch")
    found = _findings(db, runs[fires])
    assert rule in found, (rule, fires, list(found))
    assert rule not in _findings(db, runs[quiet]), (rule, quiet)
    row = found[rule]
    assert json.loads(row["evidence"]) and row["basis"] and row["query"].startswith("tracehouse ")
    assert str(runs[fires]) in row["query"] or "--model" in row["query"]


def _attention_types(temporal: dict | None, spatial: dict | None) -> SimpleNamespace:
    """What ``temporal_attention_slow`` reads of a run: ``temporal_vs_spatial``'s rows."""
    rows = [{"attention_type": t, **row} for t, row in (("temporal", temporal), ("spatial", spatial)) if row]
    columns = {"attention_type": pl.String, "total_ns": pl.Int64, "flops": pl.Float64}
    schema = {**columns, "time_share": pl.Float64, "achieved_flops_s": pl.Float64}
    return SimpleNamespace(attention_types=pl.DataFrame(rows, schema=schema))


def test_temporal_rule_holds_back_below_each_threshold() -> None:
    """The rule's limits, each just missed and just met, and the rows it cannot rate."""
    from tracehouse.analyses.advise_rules import MIN_TEMPORAL_SHARE, MIN_TEMPORAL_SLOWDOWN, temporal_attention_slow

    spatial = {"total_ns": 1_000, "flops": 4e6, "time_share": 0.5, "achieved_flops_s": 4e9}

    def temporal(share: float, slowdown: float, rate: float | None = 1.0) -> dict:
        achieved = None if rate is None else 4e9 / slowdown * rate
        return {"total_ns": 2_000, "flops": 2e5, "time_share": share, "achieved_flops_s": achieved}

    def fires(t: dict | None, s: dict | None = spatial) -> bool:
        return temporal_attention_slow(_attention_types(t, s)) is not None  # type: ignore[arg-type]

    assert fires(temporal(MIN_TEMPORAL_SHARE, MIN_TEMPORAL_SLOWDOWN))
    assert not fires(temporal(MIN_TEMPORAL_SHARE - 0.01, MIN_TEMPORAL_SLOWDOWN))
    assert not fires(temporal(MIN_TEMPORAL_SHARE, MIN_TEMPORAL_SLOWDOWN * 0.99))
    assert not fires(temporal(0.9, 10, rate=None)) and not fires(temporal(0.9, 10, rate=0.0))
    assert not fires(temporal(0.9, 10), None) and not fires(None)
    assert not fires(temporal(0.9, 10), {**spatial, "achieved_flops_s": None})
    found = temporal_attention_slow(_attention_types(temporal(0.5, 4), spatial))  # type: ignore[arg-type]
    assert found is not None and found.saved_ns == round(2e5 / 1e9 * 1e9 - 2e5 / 4e9 * 1e9)


def test_one_rule_only_and_an_unknown_rule_refused(store: tuple[Database, dict[str, int]]) -> None:
    from tracehouse.core.errors import BadInput

    db, runs = store
    with session_scope(db.engine) as s:
        only = advise(s, runs["rank3"], ("comm.exposed",))
        with pytest.raises(BadInput, match="unknown rule"):
            advise(s, runs["rank3"], ("comm.hidden",))
    assert only["rule"].to_list() == ["comm.exposed"]


def test_findings_are_ranked_by_time_saved(store: tuple[Database, dict[str, int]]) -> None:
    db, runs = store
    with session_scope(db.engine) as s:
        frame = advise(s, runs["rank3"])
    saved = [v for v in frame["saved_ns"].to_list() if v is not None]
    assert frame["rank"].to_list() == list(range(1, frame.height + 1))
    assert saved == sorted(saved, reverse=True) and len(saved) >= 3


# ---- independent recomputation from the stored kernel rows ---------------------------------


def _kernels(db: Database, run_id: int) -> list[dict]:
    sql = text(
        "SELECT k.kind, k.device, k.stream, k.start_ns, k.dur_ns, k.launch_ns, k.launch_dur_ns, k.graph,"
        " k.operator, k.step, k.seq, s.text AS name FROM kernel k JOIN symbol s ON s.id = k.name_id"
        " WHERE k.run_id = :r"
    )
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sql, {"r": run_id})]


def _union(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total, end = total + (b - a), b
        elif b > end:
            total, end = total + (b - end), b
    return total


def _run(db: Database, run_id: int) -> dict:
    with db.engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT total_ns, span_ns, other_ns FROM run WHERE id = :r"), {"r": run_id})
            .one()
            ._mapping
        )


def _host_wait_by_stream(rows: list[dict]) -> dict[tuple, int]:
    streams: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] != "cpu":
            streams[(r["device"], r["stream"])].append(r)
    waits = {}
    for key, acts in streams.items():
        acts.sort(key=lambda r: (r["start_ns"], r["seq"]))
        waits[key] = sum(
            b["start_ns"] - (a["start_ns"] + a["dur_ns"])
            for a, b in itertools.pairwise(acts)
            if b["launch_ns"] is not None and b["launch_ns"] > a["start_ns"] + a["dur_ns"]
        )
    return waits


def _check_attention(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    ev = json.loads(f["evidence"])
    attention = sum(r["dur_ns"] for r in _kernels(db, run) if r["operator"] == "attention")
    assert ev["attention_ns"] == attention
    if "pair_run_id" in ev:
        other = sum(r["dur_ns"] for r in _kernels(db, ev["pair_run_id"]) if r["operator"] == "attention")
        assert ev["attention_speedup"] == pytest.approx(attention / other)
        assert f["saved_ns"] == round(attention * (1 - 1 / (attention / other)))


def _check_launch(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    rows = _kernels(db, run)
    launched = [r for r in rows if r["launch_dur_ns"] is not None and not r["graph"] and r["kind"] != "cpu"]
    bound = [r for r in launched if r["dur_ns"] < r["launch_dur_ns"]]
    ev = json.loads(f["evidence"])
    assert (ev["kernels"], ev["launch_bound_kernels"]) == (len(launched), len(bound))
    assert ev["launch_excess_ns"] == sum(r["launch_dur_ns"] - r["dur_ns"] for r in bound)
    assert ev["device_idle_ns"] == sum(_device_idle(rows).values())
    assert f["saved_ns"] == min(ev["launch_excess_ns"], ev["device_idle_ns"])


def _device_idle(rows: list[dict]) -> dict:
    per: dict = defaultdict(list)
    for r in rows:
        per[r["device"]].append((r["start_ns"], r["start_ns"] + r["dur_ns"]))
    return {d: max(b for _, b in v) - min(a for a, _ in v) - _union(v) for d, v in per.items()}


def _check_host_wait(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    rows = _kernels(db, run)
    ev = json.loads(f["evidence"])
    waits = _host_wait_by_stream(rows)
    assert ev["host_wait_ns"] == max(waits.values()) == waits[(ev["device"], ev["stream"])]
    assert ev["device_idle_ns"] == _device_idle(rows)[ev["device"]]
    assert f["saved_ns"] == min(ev["host_wait_ns"], ev["device_idle_ns"])


def _check_comm(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    ev = json.loads(f["evidence"])
    mine = [r for r in _kernels(db, run) if r["device"] == ev["device"]]
    spans = [(r["start_ns"], r["start_ns"] + r["dur_ns"]) for r in mine]
    comm = [s for s, r in zip(spans, mine, strict=False) if r["operator"] == "communication"]
    compute = [
        s
        for s, r in zip(spans, mine, strict=False)
        if r["operator"] != "communication" and r["kind"] not in ("memcpy", "memset")
    ]
    overlap = _union(comm) + _union(compute) - _union(comm + compute)
    assert (
        (ev["communication_ns"], ev["exposed_ns"])
        == (_union(comm), _union(comm) - overlap)
        == (ev["communication_ns"], f["saved_ns"])
    )


def _check_pageable(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    copies = sum(
        r["dur_ns"]
        for r in _kernels(db, run)
        if r["kind"] == "memcpy" and "Pageable" in r["name"] and "HtoD" in r["name"]
    )
    assert json.loads(f["evidence"])["pageable_htod_ns"] == copies and f["saved_ns"] == round(copies / 2)


def _check_fp32(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    simt = sum(
        r["dur_ns"]
        for r in _kernels(db, run)
        if r["kind"] == "kernel"
        and re.search("sgemm|scudnn|gcgemm", r["name"], re.IGNORECASE)
        and not re.search("tensorop|xmma|tf32", r["name"])
    )
    ev = json.loads(f["evidence"])
    assert ev["fp32_simt_ns"] == simt
    assert f["saved_ns"] == round(simt * (1 - ev["peak_fp32_flops"] / ev["peak_target_flops"]))


def _check_conv(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    rows = _kernels(db, run)
    per: dict[str, int] = defaultdict(int)
    for r in rows:
        per[r["operator"]] += r["dur_ns"]
    ev = json.loads(f["evidence"])
    assert ev["conv_ns"] == per["conv"] == max(per.values()) and f["saved_ns"] is None
    assert ev["conv_share"] == pytest.approx(per["conv"] / _run(db, run)["total_ns"])


def _check_other(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    other = sum(r["dur_ns"] for r in _kernels(db, run) if r["operator"] == "other")
    assert json.loads(f["evidence"])["other_ns"] == other > 0.2 * _run(db, run)["total_ns"]


def _check_steps(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    steps: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in _kernels(db, run):
        if r["step"] is not None:
            steps[r["step"]].append((r["start_ns"], r["start_ns"] + r["dur_ns"]))
    times = [max(b for _, b in v) - min(a for a, _ in v) for v in steps.values()]
    assert json.loads(f["evidence"])["max_step_ns"] == max(times) >= 1.05 * statistics.median(times)
    assert f["saved_ns"] == round(sum(max(0, t - statistics.median(times)) for t in times))


def _check_temporal(db: Database, run: int, f: dict, runs: dict[str, int]) -> None:
    """Attention calls rebuilt from the kernel rows (consecutive kernels of one annotation and
    shape), 4·B·H·Lq·Lkv·D FLOPs each, and each type's FLOPs over its shaped calls' time."""
    keys = ("annotation_id", "attention_type", "seq_q", "seq_kv", "batch", "heads", "head_dim", "component", "step")
    sql = text(
        f"SELECT seq, dur_ns, {', '.join(keys)} FROM kernel WHERE run_id = :r AND operator = 'attention' ORDER BY seq"
    )
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sql, {"r": run})]
    calls: list[dict] = []
    for row in rows:
        last = calls[-1] if calls else None
        if last is None or row["seq"] != last["seq"] + 1 or any(row[k] != last[k] for k in keys):
            calls.append({**row, "calls_ns": 0})
        calls[-1]["calls_ns"] += row["dur_ns"]
        calls[-1]["seq"] = row["seq"]
    total: dict[str, int] = defaultdict(int)
    flops: dict[str, float] = defaultdict(float)
    shaped: dict[str, int] = defaultdict(int)
    for call in calls:
        total[call["attention_type"]] += call["calls_ns"]
        dims = [call[k] for k in ("batch", "heads", "seq_q", "seq_kv", "head_dim")]
        if None not in dims:
            flops[call["attention_type"]] += 4.0 * math.prod(dims)
            shaped[call["attention_type"]] += call["calls_ns"]
    ev = json.loads(f["evidence"])
    rate = {t: flops[t] / (shaped[t] * 1e-9) for t in ("temporal", "spatial")}
    assert (ev["temporal_ns"], ev["spatial_ns"]) == (total["temporal"], total["spatial"])
    assert ev["temporal_flops"] == pytest.approx(flops["temporal"]) and ev["slowdown"] >= 2
    share = total["temporal"] / sum(total.values())
    assert ev["temporal_time_share"] == pytest.approx(share) and share >= 0.25
    assert ev["slowdown"] == pytest.approx(rate["spatial"] / rate["temporal"])
    assert f["saved_ns"] == pytest.approx(shaped["temporal"] - flops["temporal"] / rate["spatial"] * 1e9, abs=1)


CHECKS = {
    "attention.materialised": _check_attention,
    "launch.bound": _check_launch,
    "idle.host_wait": _check_host_wait,
    "comm.exposed": _check_comm,
    "memcpy.pageable": _check_pageable,
    "gemm.fp32_simt": _check_fp32,
    "conv.after_fused_attention": _check_conv,
    "other.high": _check_other,
    "steps.unstable": _check_steps,
    "attention.temporal_slow": _check_temporal,
}


def test_every_finding_on_every_trace_is_recomputed(store: tuple[Database, dict[str, int]]) -> None:
    """The tiny suite's pair and every shared Kineto trace: each finding's numbers, again, from
    the kernel rows with plain Python; and saved_share is saved_ns over the run's span."""
    db, runs = store
    assert set(CHECKS) == {r.id for r in RULES}
    checked = set()
    for run in runs.values():
        for rule, finding in _findings(db, run).items():
            CHECKS[rule](db, run, finding, runs)
            if finding["saved_ns"] is not None:
                assert finding["saved_share"] == pytest.approx(finding["saved_ns"] / _run(db, run)["span_ns"])
            checked.add(rule)
    assert checked == set(CHECKS) - (set() if "mav" in runs else {"attention.temporal_slow"})


def test_cli_rest_and_python_agree(store: tuple[Database, dict[str, int]], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tracehouse.api.app import create_app
    from tracehouse.api.auth import create_token
    from tracehouse.core.settings import load_settings

    db, runs = store
    run_id = runs["rank3"]
    with session_scope(db.engine) as s:
        python = json.loads(json.dumps(advise(s, run_id).to_dicts()))
        token = create_token(s, "advise-test", "read")
    shown = subprocess.run(
        [sys.executable, "-m", "tracehouse.api.cli", "advise", str(run_id), "--format", "json", "--db", db.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    settings = load_settings(database_url=db.url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        reply = client.get(
            f"/v1/runs/{run_id}/advice", params={"format": "json"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert reply.status_code == 200, reply.text
    assert json.loads(shown.stdout) == python == reply.json() and python
