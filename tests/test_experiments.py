"""Experiments and regressions on real traces: repeats of the committed Stable Diffusion trace
with per-op timing noise, and copies with attention made slower by a known factor
(tests/trace_warp.py).  ``check`` must flag attention with the factor inside its interval and
leave unchanged repeats alone; CLI, REST and Python must give the same tables."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import BACKENDS, DATA, KINETO_DIR, Database, require_shared
from tests.fixtures import AppServer, run_cli
from tests.trace_warp import op_jitter, warp_trace
from tracehouse.analyses.check import check, list_baselines
from tracehouse.analyses.diff import TOTAL_KEY, diff
from tracehouse.analyses.history import history, matrix
from tracehouse.analyses.runs import list_runs
from tracehouse.analyses.steps import run_steps, steps_summary
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import RunMeta, manifest_path_for
from tracehouse.ingest.baselines import delete_baseline, set_baseline
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope

SOURCE = DATA / "sd_tiny_cpu_baseline.json.gz"
SLOW_FACTOR = 2.0
NOISE = 0.10  # log-normal sigma of each op's time: the repeats' noise


def _repeats(db: Database, tmp: Path, seeds: range, slow: float = 1.0, experiment: str = "exp") -> list[int]:
    ids = []
    for seed in seeds:
        copy = warp_trace(
            SOURCE, tmp / f"sd_{seed}_{slow}.json.gz", op_jitter(seed, NOISE, "attention", slow), f"{seed}-{slow}"
        )
        shutil.copy(manifest_path_for(SOURCE), manifest_path_for(copy))  # the knobs (steps, image size)
        meta = RunMeta(
            model="stable-diffusion", attention_backend="baseline", experiment=experiment, git_commit=f"c{seed:03d}"
        )
        ids.append(ingest_file(db.engine, copy, meta, raw_dir=tmp / "raw").run_id)
    return ids


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory) -> Iterator[tuple[Database, list[int], list[int], list[int]]]:  # type: ignore[no-untyped-def]
    """One store per backend for the module (ingesting seven traces is the slow part): three
    baseline repeats (baseline ``main``), two with attention ×2, two more unchanged."""
    tmp = tmp_path_factory.mktemp(f"exp-{request.param}")
    db = Database(request.param, tmp).migrate()
    base = _repeats(db, tmp, range(1, 4))
    slowed = _repeats(db, tmp, range(4, 6), SLOW_FACTOR, "slowed")
    same = _repeats(db, tmp, range(6, 8))
    with session_scope(db.engine) as s:
        set_baseline(s, "main", base, "three repeats")
    yield db, base, slowed, same
    db.drop()


def test_slowed_attention_is_flagged_with_the_factor_inside_its_interval(store) -> None:  # type: ignore[no-untyped-def]
    db, _, slowed, _ = store
    with session_scope(db.engine) as s:
        frame = check(s, slowed, "main")
    flagged = frame.filter(pl.col("regressed"))
    assert set(flagged["key"]) <= {"attention", TOTAL_KEY} and "attention" in set(flagged["key"])
    row = frame.filter(pl.col("key") == "attention").row(0, named=True)
    assert row["ratio_low"] <= SLOW_FACTOR <= row["ratio_high"], row
    assert row["samples"] == "runs" and (row["a_samples"], row["b_samples"]) == (3, 2)
    assert row["status"] == "slower"


def test_unchanged_repeats_raise_no_alarm(store) -> None:  # type: ignore[no-untyped-def]
    db, base, _, same = store
    with session_scope(db.engine) as s:
        frame = check(s, same, "main")
        assert not frame["regressed"].any(), frame.filter(pl.col("regressed"))
        statuses = diff(s, base, same)["status"].to_list()
    assert "slower" not in statuses and "added" not in statuses and "removed" not in statuses


def test_history_finds_the_change_at_the_known_commit(store) -> None:  # type: ignore[no-untyped-def]
    db, base, slowed, same = store
    with session_scope(db.engine) as s:
        series = history(s, "stable-diffusion", "attention", "time", order="commit")
        flat = history(s, "stable-diffusion", "linear", "time", order="commit")
    assert series["run_id"].to_list() == [*base, *slowed, *same]
    changes = series.filter(pl.col("change_point"))
    # Attention got slower at commit c004 and back at c006; linear never changed.
    assert changes["git_commit"].to_list() == ["c004", "c006"]
    up = changes.row(0, named=True)
    assert up["change_low"] <= SLOW_FACTOR <= up["change_high"]
    assert not flat["change_point"].any()


def test_matrix_is_every_run_by_every_operator(store) -> None:  # type: ignore[no-untyped-def]
    db, base, slowed, same = store
    with session_scope(db.engine) as s:
        cells = matrix(s, "share", experiment="slowed")
        times = matrix(s, "time", model="stable-diffusion")
    assert sorted(set(cells["run_id"])) == slowed
    per_run = cells.group_by("run_id").agg(pl.col("value").sum())
    assert all(abs(v - 1.0) < 1e-9 for v in per_run["value"])  # shares of every operator add up
    assert times.height == len([*base, *slowed, *same]) * times["key"].n_unique()


def test_runs_carry_experiment_and_commit(store) -> None:  # type: ignore[no-untyped-def]
    db, _base, slowed, _ = store
    with session_scope(db.engine) as s:
        runs = list_runs(s, experiment="slowed")
    assert runs["run_id"].to_list() == slowed
    assert runs["git_commit"].to_list() == ["c004", "c005"]


def test_baselines_set_list_replace_delete(store) -> None:  # type: ignore[no-untyped-def]
    db, base, slowed, _ = store
    with session_scope(db.engine) as s:
        set_baseline(s, "scratch", base)
        set_baseline(s, "scratch", slowed[:1])  # replaces
        listed = {b["baseline"]: b["run_ids"] for b in list_baselines(s).to_dicts()}
        assert listed["scratch"] == slowed[:1] and listed["main"] == base
        with pytest.raises(NotFound):
            set_baseline(s, "other", [999_999])
        with pytest.raises(BadInput):
            set_baseline(s, " ", base)
        delete_baseline(s, "scratch")
        assert "scratch" not in set(list_baselines(s)["baseline"])
        with pytest.raises(NotFound):
            check(s, slowed, "scratch")


def test_steps_of_a_diffusion_run(store) -> None:  # type: ignore[no-untyped-def]
    db, base, _, _ = store
    run_id = base[0]
    with session_scope(db.engine) as s:
        steps = run_steps(s, run_id)
        summary = steps_summary(s, run_id)
    unet = steps.filter(pl.col("phase") == "unet")
    assert unet["step"].to_list() == [0, 1]  # the manifest's denoising_steps
    assert set(steps.filter(pl.col("kind") == "stage")["phase"]) == {"text_encoder", "decoder"}
    per_image = summary.filter(pl.col("throughput_unit") == "s/image")["throughput"][0]
    assert per_image > 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command in its own process: collecting runs torch."""
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.api.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_rest_and_python_agree(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, base, slowed, same = store
    with session_scope(db.engine) as s:
        expected_diff = diff(s, base, slowed, "operator").to_dicts()
        expected_check = check(s, slowed, "main").to_dicts()
        expected_steps = run_steps(s, base[0]).to_dicts()
    ids = ",".join(map(str, base)), ",".join(map(str, slowed))
    shown = run_cli("diff", *ids, "--format", "json", "--db", db.url)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(json.dumps(expected_diff))
    gate = run_cli("check", *map(str, slowed), "--baseline", "main", "--format", "json", "--db", db.url)
    assert gate.returncode == 1, gate.stderr  # attention regressed
    assert json.loads(gate.stdout) == json.loads(json.dumps(expected_check))
    assert run_cli("check", *map(str, same), "--baseline", "main", "--db", db.url).returncode == 0
    srv = AppServer(db, tmp_path / "data").start()
    try:
        read = srv.token("read")
        rest = srv.http.get("/v1/diff", params={"a": base, "b": slowed}, headers=read)
        assert rest.status_code == 200, rest.text
        assert rest.json() == json.loads(json.dumps(expected_diff))
        gated = srv.http.get("/v1/check", params={"run": slowed, "baseline": "main"}, headers=read)
        assert gated.json() == json.loads(json.dumps(expected_check))
        steps = srv.http.get(f"/v1/runs/{base[0]}/steps", headers=read)
        assert steps.json() == json.loads(json.dumps(expected_steps))
        put = srv.http.put("/v1/baselines/next", json={"run_ids": same}, headers=srv.token("write"))
        assert put.status_code == 200, put.text
        listed = srv.http.get("/v1/baselines", headers=read).json()
        assert {b["baseline"]: b["run_ids"] for b in listed} == {"main": base, "next": same}
        gone = srv.http.delete("/v1/baselines/next", headers=srv.token("write"))
        assert gone.status_code == 204
    finally:
        srv.stop()


@pytest.mark.slow
def test_collect_repeats_carry_experiment_and_split_into_prefill_and_decode(tmp_path: Path) -> None:
    """A real tiny LLaMA, collected twice as one experiment and ingested: both runs carry the
    experiment, the commit and version given, their repeat number; each splits into one
    prefill stage and as many decode steps as tokens were generated."""
    pytest.importorskip("torch")
    url = f"sqlite:///{tmp_path / 'th.sqlite3'}"
    done = _cli(
        "collect",
        "--model",
        "llama",
        "--device",
        "cpu",
        "--decode-tokens",
        "5",
        "--repeat",
        "2",
        "--experiment",
        "llama-r2",
        "--commit",
        "abc1234",
        "--code-version",
        "v0.1-test",
        "--out",
        str(tmp_path / "traces"),
        "--ingest",
        "--db",
        url,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "traces").glob("*.json.gz")) == [
        "llama_tiny_cpu_baseline_dec5_r1.json.gz",
        "llama_tiny_cpu_baseline_dec5_r2.json.gz",
    ]
    from tracehouse.analyses.runs import run_tags
    from tracehouse.schema.db import make_engine

    engine = make_engine(url)
    with session_scope(engine) as s:
        runs = list_runs(s, experiment="llama-r2")
        assert runs.height == 2
        assert set(runs["git_commit"]) == {"abc1234"} and set(runs["version"]) == {"v0.1-test"}
        assert [run_tags(s, r)["repeat"] for r in runs["run_id"]] == ["1", "2"]
        for run_id in runs["run_id"]:
            steps = run_steps(s, run_id)
            assert steps.filter(pl.col("phase") == "prefill")["kind"].to_list() == ["stage"]
            decode = steps.filter(pl.col("phase") == "decode")
            assert decode["step"].to_list() == list(range(5))  # one step per generated token
            summary = steps_summary(s, run_id).filter(pl.col("phase") == "decode").row(0, named=True)
            assert summary["throughput_unit"] == "tokens/s" and summary["throughput"] > 0


def test_profiler_steps_of_a_training_trace(db: Database, raw_dir: Path) -> None:
    """A real A100 training trace: one step per ``ProfilerStep#N`` range the trace holds."""
    require_shared()
    trace = KINETO_DIR / "a100_rank3_of8_training.json.gz"
    numbers = sorted({int(m) for m in re.findall(rb'"ProfilerStep#(\d+)"', gzip.decompress(trace.read_bytes()))})
    run_id = ingest_file(db.engine, trace, None, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        steps = run_steps(s, run_id)
        summary = steps_summary(s, run_id)
    assert steps["step"].to_list() == numbers and set(steps["phase"]) == {"step"}
    assert summary["steps"].to_list() == [len(numbers)] and summary["throughput_unit"][0] == "steps/s"
