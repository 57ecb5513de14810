"""The paper's sequence and comparison analyses (issue 4, queries 2-4) against numbers known
independently: the raw trace's own annotation ranges read with the standard library, the
manifest's knobs, and the compare figures summed by hand; and their refusals of unknown runs
and bad parameters.  FLOPs, roofline and memory: ``test_flops_roofline.py``; sweeps, Table II
and hardware: ``test_sweeps_hardware.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.analysis_readings import (
    BASELINE,
    FLASH,
    gpu_trace,
    ingest_run,
    kernel_ns,
    manifest_of,
    raw_attention_calls,
)
from tests.conftest import Database
from tracehouse.analyses.attention import temporal_vs_spatial
from tracehouse.analyses.compare import breakdown_normalized, compare_runs, compare_summary
from tracehouse.analyses.hardware_compare import compare_hardware
from tracehouse.analyses.memory_model import memory_model_vs_run
from tracehouse.analyses.roofline import roofline
from tracehouse.analyses.sequence import attention_calls, find_period, fundamental_period, seq_len_histogram
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import RunMeta
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Run

# ------------------------------------------------------------------ sequence profile (query 4)


def test_attention_calls_follow_the_raw_annotations(db: Database, raw_dir: Path) -> None:
    raw = raw_attention_calls(BASELINE)
    manifest = manifest_of(BASELINE)
    run_id = ingest_run(db, raw_dir, BASELINE)
    with session_scope(db.engine) as s:
        calls = attention_calls(s, run_id)
        by_count = seq_len_histogram(s, run_id, "count")
        by_time = seq_len_histogram(s, run_id, "time", key="seq_kv")
    got = calls.select("attention_type", "seq_q", "seq_kv", "batch", "heads", "head_dim", "component", "step").rows()
    assert got == [(c["type"], c["sq"], c["skv"], c["b"], c["h"], c["d"], c["comp"], c["step"]) for c in raw]
    assert calls["dur_ns"].sum() == kernel_ns(db, run_id, "attention")
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
    run_id = ingest_run(db, raw_dir, BASELINE)
    with session_scope(db.engine) as s:
        period = fundamental_period(s, run_id)
    assert period["period"][0] == len(step0) == period.height
    assert period.select("attention_type", "seq_q", "seq_kv").rows() == step0
    assert period["offset"][0] == first
    assert period["repeats"][0] == manifest_of(BASELINE)["denoising_steps"]
    assert period["call_count"][0] == len(raw)


def test_unannotated_kernels_group_into_calls_by_shape(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    sdpa = "aten::scaled_dot_product_attention@" + json.dumps([[2, 4, 256, 32], [2, 4, 77, 32], [2, 4, 77, 32]])
    # Two adjacent calls of one shape stay two calls only when something runs between them.
    calls = [(sdpa, [5.0, 6.0, 7.0]), ("th|op=linear", [3.0]), (sdpa, [4.0, 4.0, 4.0]), (sdpa, [1.0])]
    path = gpu_trace(tmp_path / "sdpa.json.gz", "NVIDIA A100-SXM4-80GB", calls)
    run_id = ingest_run(db, raw_dir, path, RunMeta(model="synthetic", dtype="fp16"))
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
    base, flash = ingest_run(db, raw_dir, BASELINE), ingest_run(db, raw_dir, FLASH)
    base_total, flash_total = kernel_ns(db, base), kernel_ns(db, flash)
    base_attn, flash_attn = kernel_ns(db, base, "attention"), kernel_ns(db, flash, "attention")
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
        assert row["baseline_ns"] == kernel_ns(db, base, row["operator"])
        assert row["speedup"] == pytest.approx(row["baseline_ns"] / row["other_ns"])
    assert per_op["other_normalized"].sum() == pytest.approx(flash_total / base_total)
    assert normalized["normalized"].sum() == pytest.approx(flash_total / base_total)
    with session_scope(db.engine) as s, pytest.raises(NotFound):
        compare_summary(s, base, 999_999)


def test_unknown_runs_and_bad_parameters(db: Database, raw_dir: Path) -> None:
    run_id = ingest_run(db, raw_dir, BASELINE)
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
