"""Fig 5 (model points), Fig 6 (compute vs communication by GPU count) and the CLI's closed
forms (Fig 14, §V): numbers recomputed from the stored rows, CLI == REST == Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import DATA, KINETO_DIR, Database, require_shared
from tests.fixtures import run_cli
from tests.test_advise import _kernels, _union
from tracehouse.analyses.attention import attention_flops_by_frames, temporal_vs_spatial
from tracehouse.analyses.memory_model import similarity_matrix_memory
from tracehouse.analyses.suite import compute_vs_communication, device_ceilings, model_points
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope


def _cli(db: Database | None, *args: str) -> object:
    extra = ["--db", db.url] if db else []
    shown = run_cli(*args, "--format", "json", *extra)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _rest(db: Database, tmp_path: Path, path: str, params: dict) -> object:
    from fastapi.testclient import TestClient

    from tracehouse.api.app import create_app
    from tracehouse.api.auth import create_token
    from tracehouse.core.settings import load_settings

    with session_scope(db.engine) as s:
        token = create_token(s, "suite-test", "read")
    with TestClient(create_app(load_settings(database_url=db.url, data_dir=tmp_path / "data"))) as client:
        reply = client.get(path, params={**params, "format": "json"}, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_model_point_is_flops_per_capacity_byte(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    flash = ingest_file(db.engine, DATA / "sd_tiny_cpu_flash.json.gz", raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        [point] = model_points(s).to_dicts()
        attention = temporal_vs_spatial(s, flash)["flops"].sum()
        python = json.loads(json.dumps(model_points(s, "tti").to_dicts()))
    with db.engine.connect() as conn:
        gemm_conv = conn.execute(text("SELECT SUM(op_flops) FROM kernel WHERE run_id = :r"), {"r": flash}).scalar()
        gemm_conv = float(gemm_conv)
        params, total = conn.execute(text("SELECT param_count, total_ns FROM run WHERE id = :r"), {"r": flash}).one()
    assert point["run_id"] == flash and point["model"] == "stable-diffusion" and point["dtype"] == "fp32"
    assert point["flops"] == pytest.approx(gemm_conv + attention) and gemm_conv > 0 and attention > 0
    assert point["capacity_intensity"] == pytest.approx(point["flops"] / (params * 4))
    assert point["achieved_flops_s"] == pytest.approx(point["flops"] / (total * 1e-9))
    assert point["bound"] is None  # a CPU: the catalogue has no ceilings for it
    assert (
        python
        == _cli(db, "model-points", "--family", "tti")
        == _rest(db, tmp_path, "/v1/suite/model-points", {"family": "tti"})
    )


def test_ceilings_are_the_catalogue_peaks_of_stored_devices(db: Database, raw_dir: Path) -> None:
    require_shared()
    ingest_file(db.engine, (KINETO_DIR / "v100_ns_resolution.json.gz").resolve(), raw_dir=raw_dir)
    with session_scope(db.engine) as s:
        rows = {r["dtype"]: r for r in device_ceilings(s).to_dicts()}
    with db.engine.connect() as conn:
        fp32, fp16, bandwidth = conn.execute(
            text(
                "SELECT peak_fp32_flops, peak_fp16_flops, peak_bandwidth_bytes_s FROM hardware"
                " WHERE name LIKE 'Tesla V100%'"
            )
        ).one()
    assert "tf32" not in rows  # Volta has no TF32
    assert (rows["fp32"]["peak_flops_s"], rows["fp16"]["peak_flops_s"]) == (fp32, fp16)
    assert rows["fp16"]["ridge_point"] == pytest.approx(fp16 / bandwidth)


def test_compute_vs_communication_by_world_size(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    require_shared()
    runs = {
        name: ingest_file(db.engine, (KINETO_DIR / name).resolve(), raw_dir=raw_dir).run_id
        for name in ("a100_nccl_training.json.gz", "a100_rank3_of8_training.json.gz", "a100_alexnet_small.json.gz")
    }
    with session_scope(db.engine) as s:
        rows = {r["run_id"]: r for r in compute_vs_communication(s).to_dicts()}
        grouped = compute_vs_communication(s, by_world_size=True)
        python = json.loads(json.dumps(grouped.to_dicts()))
    assert [rows[runs[n]]["world_size"] for n in runs] == [2, 8, 1]
    for run_id in runs.values():
        kernels = _kernels(db, run_id)
        spans = [(r["start_ns"], r["start_ns"] + r["dur_ns"]) for r in kernels]
        span = max(b for _, b in spans) - min(a for a, _ in spans)
        comm = [s for s, r in zip(spans, kernels, strict=False) if r["operator"] == "communication"]
        compute = [
            s
            for s, r in zip(spans, kernels, strict=False)
            if r["operator"] != "communication" and r["kind"] not in ("memcpy", "memset")
        ]
        row = rows[run_id]
        assert row["span_ns"] == span
        assert row["communication_share"] == pytest.approx(_union(comm) / span)
        assert row["compute_share"] == pytest.approx(_union(compute) / span)
        assert row["idle_share"] == pytest.approx(1 - _union(spans) / span)
    assert grouped["world_size"].to_list() == [1, 2, 8] and grouped["runs"].to_list() == [1, 1, 1]
    assert (
        python
        == _cli(db, "compute-comm", "--by-world-size")
        == _rest(db, tmp_path, "/v1/suite/compute-comm", {"by_world_size": True})
    )


def test_closed_forms_from_the_cli_equal_rest_and_python(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path).migrate()  # the closed forms read no rows: one backend is enough
    frames = attention_flops_by_frames([8, 16, 64], 8, 8, heads=2)
    # Temporal attention is quadratic in frames, spatial linear: they cross at frames == tokens.
    assert frames.filter(frames["frames"] == 64)["temporal_over_spatial"].item() == 1.0
    cli = _cli(
        None,
        "attention-flops",
        "--frames",
        "8",
        "--frames",
        "16",
        "--frames",
        "64",
        "--height",
        "8",
        "--width",
        "8",
        "--heads",
        "2",
    )
    rest = _rest(db, tmp_path, "/v1/attention-flops", {"frames": [8, 16, 64], "height": 8, "width": 8, "heads": 2})
    assert cli == rest == json.loads(json.dumps(frames.to_dicts()))
    memory = similarity_matrix_memory(512, 8, 77, 3, 2)
    cli = _cli(
        None,
        "memory-formula",
        "--image-size",
        "512",
        "--latent-factor",
        "8",
        "--text-length",
        "77",
        "--unet-depth",
        "3",
    )
    rest = _rest(
        db, tmp_path, "/v1/memory-model", {"image_size": 512, "latent_factor": 8, "text_length": 77, "unet_depth": 3}
    )
    assert cli == rest == json.loads(json.dumps(memory.to_dicts()))
    # The paper's first stage: a 64×64 latent (512 / 8) is 4096 tokens; its self-attention matrix 4096² × 2 bytes.
    assert memory["self_bytes_per_call"][0] == 4096**2 * 2
