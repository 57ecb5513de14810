"""The paper's analyses (issue 4, queries 3-9) against numbers known independently: the raw
trace's own annotation ranges read with the standard library, the manifest's knobs, the
paper's formulas written out by hand, and synthetic traces whose kernel durations are chosen
so the expected speedups and growth exponents are exact."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import func, select

from tests.conftest import DATA, KINETO_DIR, Database, require_shared
from tracehouse.analyses.attention import attention_flops_by_frames, temporal_vs_spatial
from tracehouse.analyses.compare import backend_speedups, breakdown_normalized, compare_runs, compare_summary
from tracehouse.analyses.hardware_compare import compare_hardware
from tracehouse.analyses.memory_model import memory_model_vs_run, similarity_matrix_memory
from tracehouse.analyses.roofline import roofline
from tracehouse.analyses.sequence import attention_calls, find_period, fundamental_period, seq_len_histogram
from tracehouse.analyses.sweep import sweep
from tracehouse.core.device_specs import lookup
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import RunMeta
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel, Run

BASELINE = DATA / "sd_tiny_cpu_baseline.json.gz"
FLASH = DATA / "sd_tiny_cpu_flash.json.gz"


# ------------------------------------------------------------------ independent readings


def _manifest(trace: Path) -> dict:
    return json.loads(trace.with_name(trace.name.replace(".json.gz", ".manifest.json")).read_text())


def _keys(name: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in name.split("|")[1:] if "=" in part)


def raw_attention_calls(trace: Path) -> list[dict]:
    """Every ``th|op=attention`` range in time order, with the component and step of the
    innermost enclosing range that names them (plain scan, no ingest code)."""
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    ranges = sorted(
        (e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("th|")),
        key=lambda e: float(e["ts"]),
    )
    out = []
    for e in ranges:
        k = _keys(e["name"])
        if k.get("op") != "attention":
            continue
        call = {
            "type": k["attn"],
            "sq": int(k["sq"]),
            "skv": int(k["skv"]),
            "b": int(k["b"]),
            "h": int(k["h"]),
            "d": int(k["d"]),
            "comp": None,
            "step": None,
        }
        t = float(e["ts"])
        enclosing = [r for r in ranges if float(r["ts"]) <= t <= float(r["ts"]) + float(r["dur"])]
        for r in sorted(enclosing, key=lambda r: float(r["ts"])):  # later start = more inner
            rk = _keys(r["name"])
            call["comp"] = rk.get("comp", call["comp"])
            call["step"] = int(rk["step"]) if "step" in rk else call["step"]
        out.append(call)
    return out


def flops(c: dict) -> int:
    return 4 * c["b"] * c["h"] * c["sq"] * c["skv"] * c["d"]


def _ingest(db: Database, raw_dir: Path, path: Path, meta: RunMeta | None = None) -> int:
    return ingest_file(db.engine, path, meta, raw_dir=raw_dir).run_id


def _kernel_ns(db: Database, run_id: int, operator: str | None = None) -> int:
    with session_scope(db.engine) as s:
        stmt = select(func.sum(Kernel.dur_ns)).where(Kernel.run_id == run_id)
        if operator:
            stmt = stmt.where(Kernel.operator == operator)
        return int(s.scalar(stmt) or 0)


def gpu_trace(path: Path, device: str, calls: list[tuple[str, list[float]]], mem_gib: int = 80) -> Path:
    """A minimal Kineto GPU trace: each call is an annotation range enclosing one launch per
    kernel duration (µs), kernels back to back on one stream."""
    events, cpu_t, gpu_t, corr = [], 0.0, 1000.0, 0
    for name, durations in calls:
        start = cpu_t
        for dur in durations:
            corr += 1
            events.append(
                {
                    "ph": "X",
                    "cat": "cuda_runtime",
                    "name": "cudaLaunchKernel",
                    "pid": 1,
                    "tid": 1,
                    "ts": cpu_t + 0.1,
                    "dur": 0.5,
                    "args": {"correlation": corr},
                }
            )
            events.append(
                {
                    "ph": "X",
                    "cat": "kernel",
                    "name": f"kernel_{corr % 3}",
                    "pid": 0,
                    "tid": 7,
                    "ts": gpu_t,
                    "dur": dur,
                    "args": {"correlation": corr, "device": 0, "stream": 7},
                }
            )
            gpu_t += dur + 1
            cpu_t += 1
        # "aten::..." names an unannotated op (dims in brackets after it), else an annotation.
        op, _, dims = name.partition("@")
        events.append(
            {
                "ph": "X",
                "cat": "cpu_op" if op.startswith("aten::") else "user_annotation",
                "name": op,
                "pid": 1,
                "tid": 1,
                "ts": start,
                "dur": cpu_t - start + 0.05,
                "args": {"Input Dims": json.loads(dims)} if dims else {},
            }
        )
        cpu_t += 1
    trace = {
        "schemaVersion": 1,
        "traceEvents": events,
        "deviceProperties": [{"id": 0, "name": device, "totalGlobalMem": mem_gib * 2**30}],
    }
    path.write_bytes(gzip.compress(json.dumps(trace).encode()))
    return path


ATTN = "th|op=attention|attn={t}|sq={sq}|skv={skv}|b={b}|h={h}|d={d}"


# ------------------------------------------------------------------ sequence profile (query 4)


def test_attention_calls_follow_the_raw_annotations(db: Database, raw_dir: Path) -> None:
    raw = raw_attention_calls(BASELINE)
    manifest = _manifest(BASELINE)
    run_id = _ingest(db, raw_dir, BASELINE)
    with session_scope(db.engine) as s:
        calls = attention_calls(s, run_id)
        by_count = seq_len_histogram(s, run_id, "count")
        by_time = seq_len_histogram(s, run_id, "time", key="seq_kv")
    got = calls.select("attention_type", "seq_q", "seq_kv", "batch", "heads", "head_dim", "component", "step").rows()
    assert got == [(c["type"], c["sq"], c["skv"], c["b"], c["h"], c["d"], c["comp"], c["step"]) for c in raw]
    assert calls["dur_ns"].sum() == _kernel_ns(db, run_id, "attention")
    # UNet lengths are the latent grid per level: H_L·W_L / 4^n, cross attends to the text.
    latent = int(manifest["tags"]["latent_size"])
    unet = calls.filter(pl.col("component") == "unet")
    assert set(unet["seq_q"]) <= {latent * latent // 4**n for n in range(4)}
    assert max(unet["seq_q"]) == latent * latent
    assert set(unet.filter(pl.col("attention_type") == "cross")["seq_kv"]) == {manifest["text_length"]}
    assert (unet["batch"] == 2 * manifest["batch"]).all()  # classifier-free guidance
    counts: dict[int, int] = {}
    for c in raw:
        counts[c["sq"]] = counts.get(c["sq"], 0) + 1
    assert dict(by_count.select("seq_len", "call_count").rows()) == counts
    assert by_count["fraction"].sum() == pytest.approx(1.0)
    assert by_time["total_ns"].sum() == calls["dur_ns"].sum()
    assert (by_time["weight"] == by_time["total_ns"]).all()


def test_fundamental_period_is_one_unet_pass(db: Database, raw_dir: Path) -> None:
    raw = raw_attention_calls(BASELINE)
    step0 = [(c["type"], c["sq"], c["skv"]) for c in raw if c["comp"] == "unet" and c["step"] == 0]
    first = next(i for i, c in enumerate(raw) if c["comp"] == "unet")
    run_id = _ingest(db, raw_dir, BASELINE)
    with session_scope(db.engine) as s:
        period = fundamental_period(s, run_id)
    assert period["period"][0] == len(step0) == period.height
    assert period.select("attention_type", "seq_q", "seq_kv").rows() == step0
    assert period["offset"][0] == first
    assert period["repeats"][0] == _manifest(BASELINE)["denoising_steps"]
    assert period["call_count"][0] == len(raw)


def test_unannotated_kernels_group_into_calls_by_shape(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    sdpa = "aten::scaled_dot_product_attention@" + json.dumps([[2, 4, 256, 32], [2, 4, 77, 32], [2, 4, 77, 32]])
    # Two adjacent calls of one shape stay two calls only when something runs between them.
    calls = [(sdpa, [5.0, 6.0, 7.0]), ("th|op=linear", [3.0]), (sdpa, [4.0, 4.0, 4.0]), (sdpa, [1.0])]
    path = gpu_trace(tmp_path / "sdpa.json.gz", "NVIDIA A100-SXM4-80GB", calls)
    run_id = _ingest(db, raw_dir, path, RunMeta(model="synthetic", dtype="fp16"))
    with session_scope(db.engine) as s:
        got = attention_calls(s, run_id)
    assert got["kernel_count"].to_list() == [3, 4]
    assert got["dur_ns"].to_list() == [18_000, 13_000]
    assert got.select("batch", "heads", "seq_q", "seq_kv", "head_dim").unique().rows() == [(2, 4, 256, 77, 32)]


def test_find_period_edge_cases() -> None:
    assert find_period(np.array([])) == (0, 0, 0)
    assert find_period(np.array([1, 2, 3])) == (3, 0, 1)  # nothing repeats
    assert find_period(np.array([5, 5, 5, 5, 5])) == (1, 0, 5)
    # prefix and suffix outside the repeated block; the double block (period 4) loses the tie
    assert find_period(np.array([9, 1, 2, 1, 2, 1, 2, 1, 2, 7])) == (2, 1, 4)


# ------------------------------------------------------------------ compare (query 2, 3)


def test_compare_baseline_and_flash(db: Database, raw_dir: Path) -> None:
    base, flash = _ingest(db, raw_dir, BASELINE), _ingest(db, raw_dir, FLASH)
    base_total, flash_total = _kernel_ns(db, base), _kernel_ns(db, flash)
    base_attn, flash_attn = _kernel_ns(db, base, "attention"), _kernel_ns(db, flash, "attention")
    with session_scope(db.engine) as s:
        summary = compare_summary(s, base, flash).row(0, named=True)
        per_op = compare_runs(s, base, flash)
        normalized = breakdown_normalized(s, flash, base)
        totals = [(s.get(Run, r).total_ns) for r in (base, flash)]
    assert totals == [base_total, flash_total]
    assert summary["end_to_end_speedup"] == base_total / flash_total
    assert summary["operator_speedup"] == base_attn / flash_attn
    f, sp = base_attn / base_total, base_attn / flash_attn
    assert summary["operator_share"] == pytest.approx(f, rel=1e-12)
    assert summary["amdahl_speedup"] == pytest.approx(1 / ((1 - f) + f / sp), rel=1e-12)
    assert summary["amdahl_error"] == pytest.approx((base_total / flash_total) / (1 / ((1 - f) + f / sp)) - 1)
    assert summary["differences"] == "attention_backend: baseline -> flash"
    attn = per_op.filter(pl.col("operator") == "attention").row(0, named=True)
    assert (attn["baseline_ns"], attn["other_ns"]) == (base_attn, flash_attn)
    for row in per_op.iter_rows(named=True):
        assert row["baseline_ns"] == _kernel_ns(db, base, row["operator"])
        assert row["speedup"] == pytest.approx(row["baseline_ns"] / row["other_ns"])
    assert per_op["other_normalized"].sum() == pytest.approx(flash_total / base_total)
    assert normalized["normalized"].sum() == pytest.approx(flash_total / base_total)
    with session_scope(db.engine) as s, pytest.raises(NotFound):
        compare_summary(s, base, 999_999)


# ------------------------------------------------------------------ FLOPs and roofline (query 6, 7)


def test_flops_and_bytes_from_stored_shapes(db: Database, raw_dir: Path) -> None:
    raw = raw_attention_calls(BASELINE)
    elem = {"fp32": 4, "fp16": 2}[_manifest(BASELINE)["dtype"]]
    base, flash = _ingest(db, raw_dir, BASELINE), _ingest(db, raw_dir, FLASH)
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
    assert conv["flops"] > 0 and conv["time_ns"] == _kernel_ns(db, base, "conv")


def test_roofline_against_the_device_peaks(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    big = dict(t="self", sq=4096, skv=4096, b=2, h=8, d=128)
    decode = dict(t="causal-decode", sq=1, skv=4096, b=2, h=8, d=128)
    calls = [(ATTN.format(**big), [400.0, 600.0]), ("th|op=conv", [50.0]), (ATTN.format(**decode), [20.0])]
    path = gpu_trace(tmp_path / "h100.json.gz", "NVIDIA H100 80GB HBM3", calls)
    run_id = _ingest(db, raw_dir, path, RunMeta(model="synthetic", dtype="fp16", attention_backend="flash"))
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
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed: the make-a-video collector trace cannot be generated")
    out = tmp_path_factory.mktemp("mav")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tracehouse.collectors.run",
            "--model",
            "make-a-video",
            "--scale",
            "tiny",
            "--attention",
            "baseline",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("*.json.gz"))


def test_temporal_vs_spatial_on_make_a_video(db: Database, raw_dir: Path, video_trace: Path) -> None:
    raw = raw_attention_calls(video_trace)
    manifest = _manifest(video_trace)
    run_id = _ingest(db, raw_dir, video_trace)
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
    manifest = _manifest(BASELINE)
    latent, text = int(manifest["tags"]["latent_size"]), manifest["text_length"]
    elem = {"fp32": 4, "fp16": 2}[manifest["dtype"]]
    unet = [c for c in raw_attention_calls(BASELINE) if c["comp"] == "unet"]
    depth = round(math.log(max(c["sq"] for c in unet) / min(c["sq"] for c in unet), 4))
    run_id = _ingest(db, raw_dir, BASELINE)
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


# ------------------------------------------------------------------ sweeps and hardware (query 5, 9)


def _sized_run(
    db: Database,
    raw_dir: Path,
    tmp: Path,
    size: int,
    backend: str,
    attn_us: float,
    conv_us: float,
    batch: int = 1,
    device: str = "NVIDIA A100-SXM4-80GB",
) -> int:
    calls = [
        (ATTN.format(t="self", sq=size * size, skv=size * size, b=batch, h=1, d=8), [attn_us]),
        ("th|op=conv", [conv_us]),
    ]
    path = gpu_trace(tmp / f"{device[7:11]}_{size}_{backend}_{batch}_{attn_us}.json.gz", device, calls)
    return _ingest(
        db,
        raw_dir,
        path,
        RunMeta(
            model="synthetic-sd",
            image_size=size,
            batch=batch,
            attention_backend=backend,
            dtype="fp16",
            denoising_steps=1,
        ),
    )


def test_sweep_fits_the_growth_exponent(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    sizes = [16, 32, 64, 128]
    for size in sizes:  # baseline attention ∝ size², flash ∝ size, conv ∝ size (no two files alike)
        _sized_run(db, raw_dir, tmp_path, size, "baseline", size * size / 16, float(size))
        _sized_run(db, raw_dir, tmp_path, size, "flash", size / 2, float(size))
    _sized_run(db, raw_dir, tmp_path, 32, "baseline", 999.0, 3.0, batch=2)  # another series
    with session_scope(db.engine) as s:
        frame = sweep(s, "synthetic-sd", "image_size", ("attention", "conv", "total"))
        flash_only = sweep(s, "synthetic-sd", "image_size", attention_backend="flash", batch=1)
        with pytest.raises(BadInput):
            sweep(s, "synthetic-sd", "colour")
        with pytest.raises(NotFound):
            sweep(s, "no-such-model", "image_size")

    def exponent(backend: str, op: str, batch: int = 1) -> float:
        rows = frame.filter(
            (pl.col("attention_backend") == backend) & (pl.col("operator") == op) & (pl.col("batch") == batch)
        )
        return rows["exponent"][0]

    assert exponent("baseline", "attention") == pytest.approx(2.0, abs=1e-9)
    assert exponent("flash", "attention") == pytest.approx(1.0, abs=1e-9)
    assert exponent("baseline", "conv") == pytest.approx(1.0, abs=1e-9)
    assert exponent("baseline", "attention", batch=2) is None  # one point: no fit
    base_attn = frame.filter(
        (pl.col("attention_backend") == "baseline") & (pl.col("operator") == "attention") & (pl.col("batch") == 1)
    )
    assert base_attn["image_size"].to_list() == sizes
    assert base_attn["total_ns"].to_list() == [s * s / 16 * 1000 for s in sizes]
    total = frame.filter((pl.col("operator") == "total") & (pl.col("attention_backend") == "flash"))
    assert total["total_ns"].to_list() == [1.5 * s * 1000 for s in sizes]
    assert set(flash_only["attention_backend"]) == {"flash"} and set(flash_only["operator"]) == {"attention", "conv"}


def test_table_ii_pairs_runs_alike_but_for_the_backend(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    sd_base, sd_flash = _ingest(db, raw_dir, BASELINE), _ingest(db, raw_dir, FLASH)
    attn = ATTN.format(t="causal", sq=512, skv=512, b=1, h=8, d=64)

    def run(name: str, attn_us: float, backend: str, **knobs: object) -> int:
        path = gpu_trace(
            tmp_path / f"{name}.json.gz", "NVIDIA A100-SXM4-80GB", [(attn, [attn_us]), ("th|op=linear", [60.0])]
        )
        return _ingest(db, raw_dir, path, RunMeta(model="toy-llm", attention_backend=backend, **knobs))

    run("old-baseline", 100.0, "baseline", batch=1)
    base = run("baseline", 90.0, "baseline", batch=1)  # a repeat: the latest one counts
    flash = run("flash", 30.0, "flash", batch=1)
    run("flash-batch-4", 35.0, "flash", batch=4)  # no baseline at batch 4: unpaired
    # Later Nsight Compute counters with the same metadata have no timeline: never a pair's side.
    from tests.test_ncu_link import write_ncu_csv
    from tracehouse.ingest.ncu_load import ingest_ncu

    ingest_ncu(
        db.engine,
        [write_ncu_csv(tmp_path / "ncu.csv", ["k(int)"])],
        RunMeta(model="toy-llm", attention_backend="flash", batch=1),
        raw_dir=raw_dir,
    )
    with session_scope(db.engine) as s:
        table = backend_speedups(s)
        expected = {r: compare_summary(s, *r).row(0, named=True) for r in ((sd_base, sd_flash), (base, flash))}
        only_toy = backend_speedups(s, model="toy-llm")
        none = backend_speedups(s, hardware="H100")
    assert sorted(zip(table["baseline_run_id"], table["other_run_id"], strict=True)) == sorted(expected)
    for row in table.iter_rows(named=True):
        want = expected[(row["baseline_run_id"], row["other_run_id"])]
        assert {k: row[k] for k in want} == want
    toy = only_toy.row(0, named=True)
    assert only_toy.height == 1 and (toy["model"], toy["hardware"]) == ("toy-llm", "NVIDIA A100-SXM4-80GB")
    assert toy["end_to_end_speedup"] == pytest.approx(150.0 / 90.0) and toy["operator_speedup"] == pytest.approx(3.0)
    assert none.is_empty() and "end_to_end_speedup" in none.columns


def test_compare_hardware(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    a100 = [_sized_run(db, raw_dir, tmp_path, 64, "flash", us, 100.0) for us in (300.0, 500.0)]
    h100 = _sized_run(db, raw_dir, tmp_path, 64, "flash", 100.0, 50.0, device="NVIDIA H100 80GB HBM3")
    _sized_run(db, raw_dir, tmp_path, 32, "flash", 10.0, 10.0, device="NVIDIA H100 80GB HBM3")
    with session_scope(db.engine) as s:
        with pytest.raises(BadInput, match="image_size"):
            compare_hardware(s, "synthetic-sd")
        frame = compare_hardware(s, "synthetic-sd", image_size=64)
        first = compare_hardware(s, "synthetic-sd", reference="NVIDIA H100 80GB HBM3", image_size=64)
        totals = {r: s.get(Run, r).total_ns for r in (*a100, h100)}
    a100_total = (totals[a100[0]] + totals[a100[1]]) / 2
    rows = {(r["hardware"], r["operator"]): r for r in frame.iter_rows(named=True)}
    h = rows[("NVIDIA H100 80GB HBM3", "attention")]
    a = rows[("NVIDIA A100-SXM4-80GB", "attention")]
    assert a["run_count"] == 2 and a["run_ids"] == sorted(a100) and a["run_total_ns"] == a100_total
    assert a["speedup"] == 1.0 and h["speedup"] == a100_total / totals[h100]
    assert h["operator_speedup"] == 400_000 / 100_000
    assert rows[("NVIDIA H100 80GB HBM3", "conv")]["operator_speedup"] == 2.0
    assert h["share"] == 100_000 / totals[h100]
    assert frame["hardware"][0] == "NVIDIA A100-SXM4-80GB"  # slowest first
    assert first.filter(pl.col("hardware") == "NVIDIA H100 80GB HBM3")["speedup"][0] == 1.0


def test_unknown_runs_and_bad_parameters(db: Database, raw_dir: Path) -> None:
    run_id = _ingest(db, raw_dir, BASELINE)
    with session_scope(db.engine) as s:
        for fn in (attention_calls, fundamental_period, temporal_vs_spatial, roofline, memory_model_vs_run):
            with pytest.raises(NotFound):
                fn(s, 424242)
        with pytest.raises(BadInput):
            seq_len_histogram(s, run_id, weight="bytes")
        with pytest.raises(BadInput):
            seq_len_histogram(s, run_id, key="heads")
        with pytest.raises(BadInput):
            breakdown_normalized(s, run_id, run_id, by="colour")
        with pytest.raises(NotFound):
            compare_hardware(s, "stable-diffusion", image_size=4096)


def test_real_gpu_traces_roofline_covers_the_run(db: Database, raw_dir: Path) -> None:
    require_shared()
    path = KINETO_DIR / "v100_ns_resolution.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    run_id = _ingest(db, raw_dir, path)
    with session_scope(db.engine) as s:
        roof = roofline(s, run_id)
        period = fundamental_period(s, run_id)
        run = s.get(Run, run_id)
    spec = lookup("Tesla V100-SXM2-32GB", 32 * 2**30)
    assert roof["time_ns"].sum() == run.total_ns == _kernel_ns(db, run_id)
    assert roof["ridge_point"][0] == pytest.approx(spec.fp16 / spec.bandwidth)  # no dtype: fp16 on GPU
    assert roof["flops"].null_count() == roof.height  # a CNN: no attention shapes, no FLOPs
    assert period.is_empty()
