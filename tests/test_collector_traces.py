"""Traces our collectors made (tests/data): the stored attention calls carry the analytic
sequence lengths, and the analyses read them back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
from sqlalchemy import select

from tests.conftest import DATA, Database
from tracehouse.analyses.breakdown import breakdown
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel, Run

BASELINE = DATA / "sd_tiny_cpu_baseline.json.gz"
FLASH = DATA / "sd_tiny_cpu_flash.json.gz"


def _manifest(trace: Path) -> dict:
    return json.loads(trace.with_name(trace.name.replace(".json.gz", ".manifest.json")).read_text())


def _attention_calls(db: Database, run_id: int) -> pl.DataFrame:
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Kernel.component, Kernel.attention_type, Kernel.seq_q, Kernel.seq_kv).where(
                Kernel.run_id == run_id, Kernel.operator == "attention"
            )
        ).all()
    return pl.DataFrame(
        [tuple(r) for r in rows], orient="row", schema=["component", "attention_type", "seq_q", "seq_kv"]
    )


def test_unet_attention_sequence_lengths_are_analytic(db: Database, raw_dir: Path) -> None:
    manifest = _manifest(BASELINE)
    latent = int(manifest["tags"]["latent_size"])
    text_len = manifest["text_length"]
    run_id = ingest_file(db.engine, BASELINE, raw_dir=raw_dir).run_id
    unet = _attention_calls(db, run_id).filter(pl.col("component") == "unet")
    levels = {latent * latent // 4**n for n in range(8) if latent * latent // 4**n >= 1}
    self_attn = unet.filter(pl.col("attention_type") == "self")
    cross = unet.filter(pl.col("attention_type") == "cross")
    assert self_attn.height > 0 and cross.height > 0
    assert (self_attn["seq_q"] == self_attn["seq_kv"]).all()
    assert set(self_attn["seq_q"]) <= levels and max(self_attn["seq_q"]) == latent * latent
    assert set(cross["seq_kv"]) == {text_len}
    assert set(cross["seq_q"]) == set(self_attn["seq_q"])
    assert set(unet["attention_type"]) == {"self", "cross"}


def test_run_metadata_comes_from_the_manifest(db: Database, raw_dir: Path) -> None:
    manifest = _manifest(BASELINE)
    run_id = ingest_file(db.engine, BASELINE, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        run = s.get(Run, run_id)
        assert (run.attention_backend, run.image_size, run.denoising_steps, run.device_kind) == (
            "baseline",
            manifest["image_size"],
            manifest["denoising_steps"],
            "cpu",
        )
        assert run.param_count == manifest["param_count"]


def test_baseline_and_flash_differ_only_in_attention(db: Database, raw_dir: Path) -> None:
    base = ingest_file(db.engine, BASELINE, raw_dir=raw_dir).run_id
    flash = ingest_file(db.engine, FLASH, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        counts = [
            dict(breakdown(s, r, "operator").select("operator", "kernel_count").iter_rows()) for r in (base, flash)
        ]
    for c in counts:
        c.pop("attention")
    assert counts[0] == counts[1]


def test_breakdown_shares_sum_to_one_and_match_kernel_rows(db: Database, raw_dir: Path) -> None:
    run_id = ingest_file(db.engine, BASELINE, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        frame = breakdown(s, run_id, "seq_len")
        ops = breakdown(s, run_id, "operator")
        rows = s.execute(
            select(Kernel.attention_type, Kernel.seq_q, Kernel.seq_kv, Kernel.dur_ns).where(
                Kernel.run_id == run_id, Kernel.seq_q.is_not(None)
            )
        ).all()
    direct = (
        pl.DataFrame([tuple(r) for r in rows], orient="row", schema=["attention_type", "seq_q", "seq_kv", "dur_ns"])
        .group_by("attention_type", "seq_q", "seq_kv")
        .agg(total_ns=pl.col("dur_ns").sum(), kernel_count=pl.len())
    )
    joined = frame.join(direct, on=["attention_type", "seq_q", "seq_kv"], suffix="_direct")
    assert joined.height == frame.height == direct.height
    assert (joined["total_ns"] == joined["total_ns_direct"]).all()
    assert abs(ops["share"].sum() - 1.0) < 1e-9


def _independent_conv_and_linear_flops(trace: Path) -> dict[str, int]:
    """FLOPs of every aten::conv2d and aten::linear call in the raw trace, by the textbook
    formulas, with the standard library only."""
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    totals = {"conv": 0, "linear": 0}
    for e in events:
        if e.get("cat") != "cpu_op":
            continue
        dims = e["args"].get("Input Dims")
        if e["name"] == "aten::conv2d":
            (n, _, h, w), (o, cg, kh, kw) = dims[0], dims[1]
            (sh, sw), (ph, pw), (dh, dw) = (json.loads(e["args"]["Concrete Inputs"][i]) for i in (3, 4, 5))
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            totals["conv"] += 2 * n * o * ho * wo * cg * kh * kw
        elif e["name"] == "aten::linear":
            x, (out_features, in_features) = dims[0], dims[1]
            rows = 1
            for d in x[:-1]:
                rows *= d
            totals["linear"] += 2 * rows * in_features * out_features
    return totals


def test_gemm_and_conv_flops_equal_the_textbook_formulas(db: Database, raw_dir: Path) -> None:
    from tracehouse.analyses.roofline import roofline

    run_id = ingest_file(db.engine, BASELINE, raw_dir=raw_dir).run_id
    expected = _independent_conv_and_linear_flops(BASELINE)
    with session_scope(db.engine) as s:
        points = roofline(s, run_id).filter(pl.col("operator").is_in(["conv", "linear"]))
    got = dict(zip(points["operator"], points["flops"], strict=True))
    assert expected["conv"] > 0 and expected["linear"] > 0
    assert got == {k: float(v) for k, v in expected.items()}
    assert (points["shaped_ns"] == points["time_ns"]).all()  # every conv / linear call has shapes
