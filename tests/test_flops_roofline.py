"""FLOPs, bytes, roofline, temporal vs spatial attention and the memory model (issue 4,
queries 6-8) against the paper's formulas written out by hand and the device peaks."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import polars as pl
import pytest

from tests.analysis_readings import (
    ATTN,
    BASELINE,
    FLASH,
    flops,
    gpu_trace,
    ingest_run,
    kernel_ns,
    manifest_of,
    raw_attention_calls,
)
from tests.collected import tiny_traces
from tests.conftest import KINETO_DIR, Database, require_shared
from tracehouse.analyses.attention import attention_flops_by_frames, temporal_vs_spatial
from tracehouse.analyses.memory_model import memory_model_vs_run, similarity_matrix_memory
from tracehouse.analyses.roofline import roofline
from tracehouse.analyses.sequence import fundamental_period
from tracehouse.core.device_specs import lookup
from tracehouse.core.errors import BadInput
from tracehouse.core.meta import RunMeta
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Run

# ------------------------------------------------------------------ FLOPs and roofline (query 6, 7)


def test_flops_and_bytes_from_stored_shapes(db: Database, raw_dir: Path) -> None:
    raw = raw_attention_calls(BASELINE)
    elem = {"fp32": 4, "fp16": 2}[manifest_of(BASELINE)["dtype"]]
    base, flash = ingest_run(db, raw_dir, BASELINE), ingest_run(db, raw_dir, FLASH)
    with session_scope(db.engine) as s:
        types = temporal_vs_spatial(s, base)
        roof = {r: roofline(s, r).filter(pl.col("operator") == "attention") for r in (base, flash)}
        conv = roofline(s, base).filter(pl.col("operator") == "conv").row(0, named=True)
    for t in {c["type"] for c in raw}:
        mine = [c for c in raw if c["type"] == t]
        row = types.filter(pl.col("attention_type") == t).row(0, named=True)
        assert (row["call_count"], row["flops"]) == (len(mine), sum(flops(c) for c in mine))
        qkvo = sum(elem * c["b"] * c["h"] * c["d"] * (2 * c["sq"] + 2 * c["skv"]) for c in mine)
        scores = sum(elem * c["b"] * c["h"] * 4 * c["sq"] * c["skv"] for c in mine)
        b_row = roof[base].filter(pl.col("attention_type") == t).row(0, named=True)
        f_row = roof[flash].filter(pl.col("attention_type") == t).row(0, named=True)
        assert (b_row["flops"], b_row["bytes"], f_row["bytes"]) == (sum(flops(c) for c in mine), qkvo + scores, qkvo)
        assert b_row["arithmetic_intensity"] == pytest.approx(b_row["flops"] / (qkvo + scores))
        assert b_row["achieved_flops_s"] == pytest.approx(b_row["flops"] / (b_row["time_ns"] * 1e-9))
        assert b_row["bound"] is None  # CPU: no peaks in the catalogue
    assert types["time_share"].sum() == pytest.approx(1.0)
    # conv FLOPs against the textbook formula: test_collector_traces; here, time adds up
    assert conv["flops"] > 0 and conv["time_ns"] == kernel_ns(db, base, "conv")


def test_roofline_against_the_device_peaks(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    big = dict(t="self", sq=4096, skv=4096, b=2, h=8, d=128)
    decode = dict(t="causal-decode", sq=1, skv=4096, b=2, h=8, d=128)
    calls = [(ATTN.format(**big), [400.0, 600.0]), ("th|op=conv", [50.0]), (ATTN.format(**decode), [20.0])]
    path = gpu_trace(tmp_path / "h100.json.gz", "NVIDIA H100 80GB HBM3", calls)
    run_id = ingest_run(db, raw_dir, path, RunMeta(model="synthetic", dtype="fp16", attention_backend="flash"))
    spec = lookup("NVIDIA H100 80GB HBM3", 80 * 2**30)
    ridge = spec.fp16 / spec.bandwidth
    with session_scope(db.engine) as s:
        roof = roofline(s, run_id)
    for shape, ns in ((big, 1_000_000), (decode, 20_000)):
        row = roof.filter(pl.col("attention_type") == shape["t"]).row(0, named=True)
        fl = 4 * shape["b"] * shape["h"] * shape["sq"] * shape["skv"] * shape["d"]
        by = 2 * shape["b"] * shape["h"] * shape["d"] * (2 * shape["sq"] + 2 * shape["skv"])
        assert (row["flops"], row["bytes"], row["time_ns"]) == (fl, by, ns)
        assert row["achieved_flops_s"] == pytest.approx(fl / (ns * 1e-9))
        assert row["ridge_point"] == pytest.approx(ridge)
        assert row["bound"] == ("memory" if fl / by < ridge else "compute")
        assert row["attainable_flops_s"] == pytest.approx(min(spec.fp16, fl / by * spec.bandwidth))
    assert set(roof.filter(pl.col("operator") == "attention")["bound"]) == {"memory", "compute"}


def test_attention_flops_by_frames_is_fig_14() -> None:
    frames = [1, 2, 4, 8, 16, 64, 128]
    h = w = 8
    curve = attention_flops_by_frames(frames, h, w, batch=2, heads=4, head_dim=40)
    for row in curve.iter_rows(named=True):
        f = row["frames"]
        assert row["spatial_flops"] == 4 * (2 * f) * 4 * (h * w) ** 2 * 40  # [B·F, H·W]
        assert row["temporal_flops"] == 4 * (2 * h * w) * 4 * f**2 * 40  # [B·H·W, F]
        assert row["temporal_over_spatial"] == pytest.approx(f / (h * w))
    assert curve.filter(pl.col("frames") == h * w)["temporal_over_spatial"][0] == 1.0  # cross-over
    with pytest.raises(BadInput):
        attention_flops_by_frames([0], 8, 8)


@pytest.fixture(scope="session")
def video_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny make-a-video trace, shared with the collector tests' tiny suite."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed: the make-a-video collector trace cannot be generated")
    return tiny_traces(tmp_path_factory, [("make-a-video", "baseline")])[("make-a-video", "baseline")]


def test_temporal_vs_spatial_on_make_a_video(db: Database, raw_dir: Path, video_trace: Path) -> None:
    raw = raw_attention_calls(video_trace)
    manifest = manifest_of(video_trace)
    run_id = ingest_run(db, raw_dir, video_trace)
    with session_scope(db.engine) as s:
        types = temporal_vs_spatial(s, run_id)
    spatial = [c for c in raw if c["type"] == "spatial"]
    temporal = [c for c in raw if c["type"] == "temporal"]
    assert spatial and temporal and all(c["sq"] == c["skv"] == manifest["frames"] for c in temporal)
    rows = {r["attention_type"]: r for r in types.iter_rows(named=True)}
    assert rows["spatial"]["flops"] == sum(flops(c) for c in spatial)
    assert rows["temporal"]["flops"] == sum(flops(c) for c in temporal)
    assert rows["temporal"]["flops_vs_spatial"] == pytest.approx(
        sum(flops(c) for c in temporal) / sum(flops(c) for c in spatial)
    )
    assert rows["spatial"]["time_vs_spatial"] == pytest.approx(1.0)
    # A full-resolution spatial call is one point of the analytic Fig 14 curve.
    top = next(c for c in spatial if c["sq"] == manifest["image_size"] ** 2)
    curve = attention_flops_by_frames(
        [manifest["frames"]],
        manifest["image_size"],
        manifest["image_size"],
        batch=top["b"] // manifest["frames"],
        heads=top["h"],
        head_dim=top["d"],
    )
    assert curve["spatial_flops"][0] == flops(top)


# ------------------------------------------------------------------ memory model (query 8)


def test_similarity_matrix_formula_by_hand() -> None:
    # Stable Diffusion at 512²: latent 64×64, 77 text tokens, 3 down-sampling stages, FP16.
    frame = similarity_matrix_memory(512, 8, 77, 3, 2)
    t = [4096, 1024, 256, 64]
    assert frame["tokens"].to_list() == t
    assert frame["bytes_per_visit"][0] == 2 * 64 * 64 * (64 * 64 + 77)  # 2·H_L·W_L[H_L·W_L + T]
    by_hand = 2 * (2 * (4096 * (4096 + 77) + 1024 * (1024 + 77) + 256 * (256 + 77)) + 64 * (64 + 77))
    assert frame["cumulative_bytes"][-1] == by_hand == 73_239_168
    four_heads = similarity_matrix_memory(512, 8, 77, 3, 2, bytes_per_element=4, heads=4, batch=2)
    assert four_heads["cumulative_bytes"][-1] == by_hand * 2 * 4 * 2
    for bad in (dict(image_size=500), dict(unet_depth=7), dict(downsample_factor=0), dict(text_length=-1)):
        with pytest.raises(BadInput):
            similarity_matrix_memory(
                **{
                    "image_size": 512,
                    "latent_factor": 8,
                    "text_length": 77,
                    "unet_depth": 3,
                    "downsample_factor": 2,
                    **bad,
                }
            )


def test_memory_model_next_to_the_run(db: Database, raw_dir: Path) -> None:
    manifest = manifest_of(BASELINE)
    latent, text = int(manifest["tags"]["latent_size"]), manifest["text_length"]
    elem = {"fp32": 4, "fp16": 2}[manifest["dtype"]]
    unet = [c for c in raw_attention_calls(BASELINE) if c["comp"] == "unet"]
    depth = round(math.log(max(c["sq"] for c in unet) / min(c["sq"] for c in unet), 4))
    run_id = ingest_run(db, raw_dir, BASELINE)
    with session_scope(db.engine) as s:
        frame = memory_model_vs_run(s, run_id)
        with pytest.raises(BadInput):
            memory_model_vs_run(s, run_id, component="nowhere")
    assert frame["tokens"].to_list() == [latent * latent // 4**n for n in range(depth + 1)]
    assert frame["matches"].all()
    for row in frame.iter_rows(named=True):
        here = [c for c in unet if c["sq"] == row["tokens"]]
        assert row["self_calls"] == sum(c["type"] == "self" for c in here)
        assert row["cross_calls"] == sum(c["type"] == "cross" for c in here)
        assert row["observed_self_bytes_per_call"] == elem * row["tokens"] ** 2
        assert row["observed_cross_bytes_per_call"] == elem * row["tokens"] * text
        assert row["observed_bytes"] == sum(elem * c["sq"] * c["skv"] for c in here)


def test_real_gpu_traces_roofline_covers_the_run(db: Database, raw_dir: Path) -> None:
    require_shared()
    path = KINETO_DIR / "v100_ns_resolution.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    run_id = ingest_run(db, raw_dir, path)
    with session_scope(db.engine) as s:
        roof = roofline(s, run_id)
        period = fundamental_period(s, run_id)
        run = s.get(Run, run_id)
    spec = lookup("Tesla V100-SXM2-32GB", 32 * 2**30)
    assert roof["time_ns"].sum() == run.total_ns == kernel_ns(db, run_id)
    assert roof["ridge_point"][0] == pytest.approx(spec.fp16 / spec.bandwidth)  # no dtype: fp16 on GPU
    assert roof["flops"].null_count() == roof.height  # a CNN: no attention shapes, no FLOPs
    assert period.is_empty()
