"""Fleet view (paper Fig 1): generated CSV fleets, hand-written sacct and nvidia-smi samples, and
the ratios checked against a plain-Python computation over the same records."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import Database
from tracehouse.analyses.fleet_usage import fleet_summary, models_list, ratio_spread, top_jobs
from tracehouse.core.errors import BadInput
from tracehouse.ingest.fleet_import import import_fleet, register_model
from tracehouse.ingest.fleet_parse import parse, read_source
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import FleetImport, FleetJob, FleetRollup

MODELS = {  # name: (family, params); TTI ~10x smaller yet trained on similar GPU counts
    "llama-2-7b": ("llm", 6_738_415_616),
    "llama-2-70b": ("llm", 68_976_648_192),
    "sd-1.5": ("tti", 859_520_964),
    "imagen": ("tti", 2_000_000_000),
    "make-a-video": ("ttv", 9_700_000_000),
}
GPUS = {"llm": (64, 128, 256, 512), "tti": (32, 64, 128), "ttv": (64, 128, 256)}
MEM = {"llm": 0.5, "tti": 0.675, "ttv": 0.6}
HEADER = [
    "job_id",
    "cluster",
    "model",
    "phase",
    "gpu_count",
    "gpu_type",
    "start",
    "end",
    "mean_mem_util",
    "peak_mem_util",
    "sm_util",
]


def generate_jobs(n: int, seed: int = 42) -> list[dict]:
    """Job records with family-dependent GPU counts and memory utilisation; 1% unknown models."""
    rng = random.Random(seed)
    names = list(MODELS)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    jobs = []
    for i in range(n):
        name = rng.choice(names) if rng.random() > 0.01 else "mystery-model"
        family = MODELS.get(name, ("llm", 0))[0]
        start = t0 + timedelta(seconds=rng.randrange(0, 365 * 86400))
        mem = min(1.0, max(0.0, rng.gauss(MEM[family], 0.1)))
        jobs.append(
            {
                "job_id": str(1000 + i),
                "cluster": rng.choice(("east", "west")),
                "model": name,
                "phase": "training" if rng.random() < 0.7 else "inference",
                "gpu_count": rng.choice(GPUS[family]),
                "gpu_type": rng.choice(("a100", "h100")),
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=rng.randrange(10, 5000))).isoformat(),
                "mean_mem_util": round(mem, 4),
                "peak_mem_util": round(min(1.0, mem + 0.2), 4),
                "sm_util": round(rng.random(), 4),
            }
        )
    return jobs


def write_csv(path: Path, jobs: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, HEADER)
        writer.writeheader()
        writer.writerows(jobs)
    return path


def expected(jobs: list[dict], phase: str | None = None) -> dict[str, dict[str, float]]:
    """The definitions in analyses/fleet_usage.py, computed directly on the records."""
    acc: dict[str, dict[str, float]] = {}
    for j in jobs:
        if j["model"] not in MODELS or (phase and j["phase"] != phase):
            continue
        family, params = MODELS[j["model"]]
        hours = (
            j["gpu_count"]
            * (datetime.fromisoformat(j["end"]) - datetime.fromisoformat(j["start"])).total_seconds()
            / 3600
        )
        x = j["gpu_count"] / params * 1e9
        a = acc.setdefault(family, dict.fromkeys(("n", "x", "h", "xh", "mh"), 0.0))
        a["n"] += 1
        a["x"] += x
        a["h"] += hours
        a["xh"] += x * hours
        a["mh"] += hours * j["mean_mem_util"]
    return {f: {"gpb": a["x"] / a["n"], "gpb_h": a["xh"] / a["h"], "mem": a["mh"] / a["h"]} for f, a in acc.items()}


def _register_all(db: Database) -> None:
    with session_scope(db.engine) as s:
        for name, (family, params) in MODELS.items():
            register_model(s, name, family, params)


def _import(db: Database, path: Path, fmt: str = "auto", **kw) -> dict:  # type: ignore[no-untyped-def]
    parsed = parse(read_source(path), fmt, name=str(path), **{k: v for k, v in kw.items() if k != "host"})
    with session_scope(db.engine) as s:
        return import_fleet(s, parsed, str(path), host=kw.get("host"))


def _counts(db: Database) -> tuple[int, int, int]:
    with session_scope(db.engine) as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (FleetJob, FleetImport, FleetRollup))  # type: ignore[return-value]


def test_generated_fleet_ratios_match_independent_computation(db: Database, tmp_path: Path) -> None:
    jobs = generate_jobs(20_000)
    _register_all(db)
    report = _import(db, write_csv(tmp_path / "fleet.csv", jobs))
    assert report["rows_imported"] == 20_000 and report["rows_rejected"] == 0
    assert report["unknown_models"] == ["mystery-model"]
    for phase in (None, "training"):
        want = expected(jobs, phase)
        with session_scope(db.engine) as s:
            got = {r["family"]: r for r in fleet_summary(s, "family", phase).to_dicts()}
        for fam, w in want.items():
            assert got[fam]["gpus_per_bparam"] == pytest.approx(w["gpb"], rel=1e-9)
            assert got[fam]["gpus_per_bparam_gpuh"] == pytest.approx(w["gpb_h"], rel=1e-9)
            assert got[fam]["mean_mem_util"] == pytest.approx(w["mem"], rel=1e-4)  # CSV rounding of hours
        tti = got["tti"]
        assert tti["gpus_per_bparam_gpuh_vs_llm"] == pytest.approx(
            want["tti"]["gpb_h"] / want["llm"]["gpb_h"], rel=1e-9
        )
        assert tti["mean_mem_util_vs_llm"] == pytest.approx(want["tti"]["mem"] / want["llm"]["mem"], rel=1e-4)
        assert got["llm"]["gpus_per_bparam_vs_llm"] == pytest.approx(1.0)
    assert got[None]["jobs"] == sum(j["model"] == "mystery-model" and j["phase"] == "training" for j in jobs)


def test_slices_and_top_jobs(db: Database, tmp_path: Path) -> None:
    jobs = generate_jobs(2_000, seed=7)
    _register_all(db)
    _import(db, write_csv(tmp_path / "f.csv", jobs))
    with session_scope(db.engine) as s:
        by_month = fleet_summary(s, "month")
        by_cluster_family = fleet_summary(s, "cluster,family")
        spread = ratio_spread(s, "tti").to_dicts()[0]
        top = top_jobs(s, 5)
        models = {r["name"]: r for r in models_list(s).to_dicts()}
    assert by_month.height == 12 and by_month["jobs"].sum() == 2_000
    assert set(by_cluster_family["cluster"].to_list()) == {"east", "west"}
    assert spread["months"] == 12
    assert spread["gpus_per_bparam_gpuh_vs_llm_min"] <= spread["gpus_per_bparam_gpuh_vs_llm_max"]
    assert top["gpu_hours_per_bparam"].is_sorted(descending=True) and top.height == 5
    assert sum(m["fleet_jobs"] for m in models.values()) == sum(j["model"] in MODELS for j in jobs)


def test_unknown_model_attaches_when_registered_later(db: Database, tmp_path: Path) -> None:
    _import(db, write_csv(tmp_path / "f.csv", generate_jobs(500)))
    with session_scope(db.engine) as s:
        assert fleet_summary(s)["family"].to_list() == [None]
        register_model(s, "sd-1.5", "tti", 859_520_964)
    with session_scope(db.engine) as s:
        assert "tti" in fleet_summary(s)["family"].to_list()
        assert top_jobs(s, 3)["model_name"].to_list() == ["sd-1.5"] * 3


SACCT = """JobID|JobName|Cluster|NodeList|Start|End|AllocTRES|Comment
4001|train-sd|gpu-east|node01|2024-03-01T10:00:00|2024-03-01T12:00:00|billing=64,cpu=64,gres/gpu:a100=8,mem=512G,node=1|model=sd-1.5 phase=training
4001.batch|batch|gpu-east|node01|2024-03-01T10:00:00|2024-03-01T12:00:00|cpu=64,gres/gpu:a100=8,mem=512G,node=1|
4001.extern|extern|gpu-east|node01|2024-03-01T10:00:00|2024-03-01T12:00:00|billing=64,cpu=64,gres/gpu:a100=8,node=1|
4002|pretrain.model=llama-2-7b|gpu-east|node[02-05]|2024-03-01T09:00:00|2024-03-02T09:00:00|billing=256,cpu=256,gres/gpu=32,mem=2T,node=4|
4003|infer-llama|gpu-east|node06|2024-03-01T09:00:00|Unknown|cpu=8,gres/gpu=1,node=1|model=llama-2-7b
4004|preprocess|gpu-east|node07|2024-03-01T09:00:00|2024-03-01T10:00:00|cpu=8,mem=32G,node=1|model=sd-1.5 phase=training
4005|serve-new|gpu-east|node08|2024-03-01T09:00:00|2024-03-01T11:00:00|cpu=8,gres/gpu:h100=2,node=1|model=brand-new phase=inference
"""

NVSMI = """timestamp, index, memory.used [MiB], memory.total [MiB], utilization.gpu [%]
2024/03/01 10:30:00.000, 0, 40960 MiB, 81920 MiB, 90 %
2024/03/01 10:30:00.000, 1, 61440 MiB, 81920 MiB, 70 %
2024/03/01 11:00:00.000, 0, 20480 MiB, 81920 MiB, 50 %
2024/03/01 11:00:00.000, 1, garbage, 81920 MiB, 50 %
2024/03/01 13:00:00.000, 0, 81920 MiB, 81920 MiB, 100 %
"""


def test_sacct_and_nvidia_smi_samples(db: Database, tmp_path: Path) -> None:
    _register_all(db)
    (tmp_path / "sacct.txt").write_text(SACCT)
    (tmp_path / "node01.csv").write_text(NVSMI)
    report = _import(db, tmp_path / "sacct.txt")
    assert report["format"] == "sacct" and report["rows_imported"] == 3
    assert [(r["line"], r["reason"].split(" ")[0]) for r in report["rejected"]] == [(6, "end"), (7, "no")]
    assert report["unknown_models"] == ["brand-new"]
    smi = _import(db, tmp_path / "node01.csv", host="node01")
    assert smi["format"] == "nvidia-smi" and smi["rows_rejected"] == 1
    assert smi["rejected"][0]["line"] == 5 and smi["jobs_updated"] == 1 and smi["samples_without_job"] == 1
    with session_scope(db.engine) as s:
        job = s.scalars(select(FleetJob).where(FleetJob.job_id == "4001")).one()
        llama = s.scalars(select(FleetJob).where(FleetJob.job_id == "4002")).one()
        summary = {r["family"]: r for r in fleet_summary(s).to_dicts()}
    assert (job.gpu_count, job.gpu_type, job.cluster, job.phase, job.gpu_hours) == (
        8,
        "a100",
        "gpu-east",
        "training",
        16.0,
    )
    assert job.mean_mem_util == pytest.approx((0.5 + 0.75 + 0.25) / 3) and job.peak_mem_util == pytest.approx(0.75)
    assert job.sm_util == pytest.approx(0.7)
    assert (llama.gpu_count, llama.gpu_type, llama.phase, llama.gpu_hours) == (32, None, "training", 768.0)
    assert summary["tti"]["mean_mem_util"] == pytest.approx(0.5)
    assert summary["tti"]["gpus_per_bparam_vs_llm"] == pytest.approx((8 / 0.859520964) / (32 / 6.738415616))


def test_overlapping_sacct_dumps_replace_earlier_copies(db: Database, tmp_path: Path) -> None:
    """Monday's dump saw 4003 running (no end: rejected) and 4001 half done; Tuesday's window
    overlaps it: 4001 finished later, 4003 ended, 4006 is new.  Each job counts once, as of
    Tuesday, and the utilisation Monday's nvidia-smi log gave 4001 stays."""
    _register_all(db)
    monday = SACCT.replace("2024-03-01T12:00:00|billing=64", "2024-03-01T11:00:00|billing=64")
    tuesday = (
        "\n".join(
            [
                *SACCT.splitlines()[:2],
                SACCT.splitlines()[4],
                "4003|infer-llama|gpu-east|node06|2024-03-01T09:00:00|2024-03-01T21:00:00|cpu=8,gres/gpu=1,node=1|model=llama-2-7b",
                "4006|train-sd|gpu-east|node09|2024-03-02T00:00:00|2024-03-02T04:00:00|cpu=8,gres/gpu:a100=4,node=1|model=sd-1.5 phase=training",
            ]
        )
        + "\n"
    )
    (tmp_path / "mon.txt").write_text(monday)
    (tmp_path / "tue.txt").write_text(tuesday)
    (tmp_path / "node01.csv").write_text(NVSMI)
    assert _import(db, tmp_path / "mon.txt")["jobs_replaced"] == 0
    _import(db, tmp_path / "node01.csv", host="node01")
    report = _import(db, tmp_path / "tue.txt")
    assert report["rows_imported"] == 4 and report["jobs_replaced"] == 2  # 4001 and 4002
    with session_scope(db.engine) as s:
        jobs = {j.job_id: j for j in s.scalars(select(FleetJob))}
        summary = {r["family"]: r for r in fleet_summary(s).to_dicts()}
    assert sorted(jobs) == ["4001", "4002", "4003", "4005", "4006"]  # 4005 only on Monday
    assert jobs["4001"].gpu_hours == 16.0 and jobs["4001"].mean_mem_util is not None
    # The summary (read from the rollup) equals plain sums over the stored, deduplicated jobs.
    hours = {"tti": 16.0 + 16.0, "llm": 768.0 + 12.0}
    assert {f: summary[f]["gpu_hours"] for f in hours} == pytest.approx(hours)
    assert summary["tti"]["jobs"] == 2 and summary["llm"]["jobs"] == 2


def test_job_ids_reused_by_another_source_are_not_replacements(db: Database, tmp_path: Path) -> None:
    """Two labs' exports without a cluster column both number their jobs from 1: same id, other
    jobs (other start).  Both stay."""
    header = "job_id,model,phase,gpu_count,gpu_type,start,end\n"
    (tmp_path / "a.csv").write_text(header + "1,sd-1.5,training,8,a100,2024-01-05T00:00:00Z,2024-01-05T02:00:00Z\n")
    (tmp_path / "b.csv").write_text(header + "1,sd-1.5,inference,1,h100,2024-06-01T00:00:00Z,2024-06-01T01:00:00Z\n")
    _import(db, tmp_path / "a.csv")
    assert _import(db, tmp_path / "b.csv")["jobs_replaced"] == 0
    with session_scope(db.engine) as s:
        assert sorted(j.gpu_type for j in s.scalars(select(FleetJob))) == ["a100", "h100"]


def test_malformed_rows_counted_with_line_numbers(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "job_id,model,phase,gpu_count,gpu_type,start,end,mean_mem_util\n"
        "1,sd-1.5,training,8,a100,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,55%\n"
        "2,sd-1.5,training,eight,a100,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,50%\n"
        "3,sd-1.5,testing,8,a100,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,50%\n"
        "4,sd-1.5,training,8,a100,2024-01-01T02:00:00Z,2024-01-01T01:00:00Z,50%\n"
        "5,,inference,1,a100,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,50%\n"
        "6,sd-1.5,inference,1,a100,yesterday,2024-01-01T01:00:00Z,50%\n"
        "7,sd-1.5,inference,1,a100,2024-01-01 00:00,2024-01-01 00:30,150%\n"
    )
    report = _import(db, path)
    assert report["rows_imported"] == 1 and report["rows_rejected"] == 6
    assert [r["line"] for r in report["rejected"]] == [3, 4, 5, 6, 7, 8]
    reasons = [r["reason"] for r in report["rejected"]]
    assert "GPU count" in reasons[0] and "phase" in reasons[1] and reasons[2] == "end before start"
    assert reasons[3] == "no model name" and "start" in reasons[4] and "mean_mem_util" in reasons[5]
    with session_scope(db.engine) as s:
        assert s.scalar(select(FleetJob.mean_mem_util)) == pytest.approx(0.55)


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        ("not a fleet file at all\n", "auto"),
        ("job_id,model\n1,sd\n", "csv"),
        ('[{"job_id": 1, "model": "sd", "phase": "train", "gpu_count": 1, "start": "x", "end": "y"}]', "auto"),
        ("JobID|JobName|Start|End|AllocTRES\n1.batch|x|2024-01-01T00:00:00|2024-01-01T01:00:00|gres/gpu=1\n", "auto"),
        ("timestamp, index, memory.used [MiB], memory.total [MiB], utilization.gpu [%]\nbad, row\n", "auto"),
    ],
)
def test_bad_file_changes_nothing(db: Database, tmp_path: Path, content: str, fmt: str) -> None:
    _import(db, write_csv(tmp_path / "ok.csv", generate_jobs(50)))
    before = _counts(db)
    (tmp_path / "bad.txt").write_text(content)
    with pytest.raises(BadInput):
        _import(db, tmp_path / "bad.txt", fmt)
    assert _counts(db) == before


def test_json_and_json_lines(db: Database, tmp_path: Path) -> None:
    import orjson

    jobs = generate_jobs(30)
    (tmp_path / "a.json").write_bytes(orjson.dumps({"jobs": jobs}))
    (tmp_path / "b.jsonl").write_text("\n".join(orjson.dumps(j).decode() for j in jobs[:10]) + "\n{broken\n")
    assert _import(db, tmp_path / "a.json")["rows_imported"] == 30
    with pytest.raises(BadInput, match="not valid JSON"):
        _import(db, tmp_path / "b.jsonl")
