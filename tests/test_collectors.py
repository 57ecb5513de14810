"""Collectors: paper-scale parameter counts, and the analytic sequence lengths in tiny traces."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.collected import tiny_traces  # noqa: E402
from tests.conftest import Database  # noqa: E402
from tracehouse.collectors.models import SUITE, get_spec  # noqa: E402
from tracehouse.collectors.models.blocks import count_params  # noqa: E402
from tracehouse.collectors.profile import collect_one  # noqa: E402
from tracehouse.core.annotation import parse_annotation  # noqa: E402
from tracehouse.core.meta import RunMeta, load_manifest, manifest_path_for  # noqa: E402

DATA = Path(__file__).parent / "data"
BACKENDS = ("baseline", "flash")


# ----------------------------------------------------------------------------- helpers


def load_events(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as fh:
        return json.load(fh)["traceEvents"]


def annotations(path: Path) -> list[dict]:
    """Our ranges, each with its parsed keys and the component/step of the enclosing component range."""
    ranges = []
    for e in load_events(path):
        if e.get("cat") == "user_annotation" and e.get("ph") == "X":
            ann = parse_annotation(e["name"])
            if ann is not None:
                ranges.append(
                    {
                        "ann": ann,
                        "ts": e["ts"],
                        "end": e["ts"] + e.get("dur", 0),
                        "tid": e.get("tid"),
                        "name": e["name"],
                    }
                )
    comps = [r for r in ranges if r["ann"].operator is None and r["ann"].component]
    for r in ranges:
        r["component"], r["step"] = None, None
        for c in comps:
            if c is not r and c["tid"] == r["tid"] and c["ts"] <= r["ts"] and r["end"] <= c["end"]:
                r["component"], r["step"] = c["ann"].component, c["ann"].step
    return ranges


def attention_calls(path: Path, component: str | None = None, kind: str | None = None) -> list:
    return [
        r
        for r in annotations(path)
        if r["ann"].operator == "attention"
        and (component is None or r["component"] == component)
        and (kind is None or r["ann"].attention_type == kind)
    ]


def level_tokens(side: int, levels: int) -> set[int]:
    return {side * side // 4**n for n in range(levels)}


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", SUITE)
def test_paper_param_counts_match_published(name: str) -> None:
    spec = get_spec(name)
    with torch.device("meta"):
        modules = spec.build(spec.config("paper"))
    counts = {k: count_params(m) for k, m in modules.items()}
    assert spec.published, f"{name}: no published figure to check"
    for key, (published, tol) in spec.published.items():
        got = sum(counts[k] for k in key.split("+"))
        assert abs(got - published) <= tol * published, (
            f"{name}.{key}: {got:,} params vs published {published:,} (tolerance {tol:.0%})"
        )


def test_exact_counts_of_library_layouts() -> None:
    """SD-1.5 and LLaMA-2-7B follow the diffusers / transformers layouts to the parameter."""
    from tracehouse.collectors.profile import param_count

    assert param_count("llama", "paper") == 6_738_415_616
    spec = get_spec("stable-diffusion")
    with torch.device("meta"):
        m = spec.build(spec.config("paper"))
    assert count_params(m["unet"]) == 859_520_964
    assert count_params(m["text_encoder"]) == 123_060_480
    assert count_params(m["decoder"]) == 49_490_199


@pytest.mark.parametrize("name", SUITE)
def test_paper_configs_run_on_the_meta_device(name: str) -> None:
    """Every paper-scale pipeline runs shape-correctly (meta tensors: no memory, no compute)."""
    from tracehouse.collectors.models.base import Knobs, RunContext

    spec = get_spec(name)
    cfg = spec.config("paper")
    short = Knobs(
        steps=1 if cfg.knobs.steps else None,
        decode_tokens=2 if cfg.knobs.decode_tokens else None,
        image_size=32 if name == "parti" else None,
    )  # parti: 16 image tokens, not 1024
    with torch.device("meta"):
        modules = spec.build(cfg)
    for m in modules.values():
        m.to(dtype=torch.float16)
    ctx = RunContext(
        device=torch.device("meta"),
        dtype=torch.float16,
        knobs=cfg.knobs.over(short),
        generator=torch.Generator().manual_seed(0),
    )
    calls: Counter[str] = Counter()
    for key, module in modules.items():  # a pipeline that skips a part of the model fails here
        module.register_forward_hook(lambda _m, _in, _out, key=key: calls.update([key]))
    with torch.inference_mode():
        spec.run(modules, cfg, ctx)
    assert set(calls) == set(modules), f"{name}: never ran {sorted(set(modules) - set(calls))}"
    assert all(p.device.type == "meta" for m in modules.values() for p in m.parameters())  # nothing allocated


# ----------------------------------------------------------------------------- the tiny suite


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory) -> dict[tuple[str, str], Path]:
    return tiny_traces(tmp_path_factory, [(name, backend) for name in SUITE for backend in BACKENDS])


@pytest.mark.parametrize("name", SUITE)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_model_writes_an_annotated_trace(tiny_suite, name: str, backend: str) -> None:
    path = tiny_suite[(name, backend)]
    assert path.name.endswith(".json.gz")
    assert path.stat().st_size < 1_000_000
    events = load_events(path)
    assert any(e.get("cat") == "cpu_op" and "Input Dims" in e.get("args", {}) for e in events), "record_shapes is on"
    ops = Counter(r["ann"].operator for r in annotations(path))
    assert ops["attention"] > 0 and ops["linear"] > 0
    for r in attention_calls(path):
        a = r["ann"]
        assert None not in (a.attention_type, a.seq_q, a.seq_kv, a.batch, a.heads, a.head_dim), r["name"]
        assert r["component"] is not None, f"attention outside a component range: {r['name']}"
    meta = json.loads(manifest_path_for(path).read_text())
    assert set(meta) <= {f.name for f in fields(RunMeta)}
    loaded = load_manifest(path)
    assert loaded.model == name and loaded.scale == "tiny" and loaded.attention_backend == backend
    assert loaded.param_count == sum(int(v) for k, v in loaded.tags.items() if k.startswith("params."))
    assert loaded.peak_memory_bytes and loaded.peak_memory_bytes > 0


def test_sd_unet_sequence_lengths(tiny_suite) -> None:
    spec = get_spec("stable-diffusion")
    cfg = spec.config("tiny")
    for backend in BACKENDS:
        path = tiny_suite[("stable-diffusion", backend)]
        meta = load_manifest(path)
        hl = meta.image_size // cfg.latent_factor
        levels = len(cfg.unet.channels)
        with_attn = {hl * hl // 4**n for n in range(levels) if cfg.unet.attn[n]} | {hl * hl // 4 ** (levels - 1)}
        self_calls = attention_calls(path, "unet", "self")
        assert {r["ann"].seq_q for r in self_calls} == with_attn
        for r in self_calls:
            a = r["ann"]
            assert a.seq_q == a.seq_kv
            assert a.seq_q in level_tokens(hl, levels)  # H_L * W_L / 4^n
            assert a.batch == 2 * meta.batch  # classifier-free guidance
            assert a.heads * a.head_dim in cfg.unet.channels
        cross = attention_calls(path, "unet", "cross")
        assert cross and {r["ann"].seq_kv for r in cross} == {meta.text_length}
        assert {r["ann"].seq_q for r in cross} == with_attn
        assert {r["step"] for r in self_calls} == set(range(meta.denoising_steps))


def test_video_spatial_and_temporal_sequence_lengths(tiny_suite) -> None:
    cfg = get_spec("make-a-video").config("tiny")
    path = tiny_suite[("make-a-video", "flash")]
    meta = load_manifest(path)
    f, s, b = meta.frames, meta.image_size, 2 * meta.batch
    levels = len(cfg.unet.channels)
    spatial = attention_calls(path, "unet", "spatial")
    temporal = attention_calls(path, "unet", "temporal")
    assert spatial and temporal
    for r in spatial:  # (B*F, H*W)
        a = r["ann"]
        assert a.seq_q == a.seq_kv and a.seq_q in level_tokens(s, levels) and a.batch == b * f
    assert s * s in {r["ann"].seq_q for r in spatial}
    for r in temporal:  # (B*H*W, F)
        a = r["ann"]
        assert a.seq_q == a.seq_kv == f
        assert a.batch in {b * n for n in level_tokens(s, levels)}
    for r in attention_calls(path, "unet", "cross"):
        assert r["ann"].seq_kv == meta.text_length and r["ann"].batch == b * f


def test_llama_decode_grows_kv_by_one(tiny_suite) -> None:
    for backend in BACKENDS:
        path = tiny_suite[("llama", backend)]
        meta = load_manifest(path)
        p = meta.text_length
        prefill = attention_calls(path, "prefill")
        assert prefill and all(
            r["ann"].attention_type == "causal" and r["ann"].seq_q == r["ann"].seq_kv == p for r in prefill
        )
        decode = attention_calls(path, "decode")
        assert {r["step"] for r in decode} == set(range(meta.decode_tokens))
        for r in decode:
            a = r["ann"]
            assert a.attention_type == "causal-decode" and a.seq_q == 1
            assert a.seq_kv == p + r["step"] + 1


def test_parti_decodes_image_tokens_with_cross_attention_to_text(tiny_suite) -> None:
    path = tiny_suite[("parti", "flash")]
    meta = load_manifest(path)
    assert meta.decode_tokens == (meta.image_size // 8) ** 2
    decode = attention_calls(path, "decode")
    selfs = [r for r in decode if r["ann"].attention_type == "causal-decode"]
    assert {r["step"] for r in selfs} == set(range(meta.decode_tokens - 1))
    assert all(r["ann"].seq_q == 1 and r["ann"].seq_kv == r["step"] + 2 for r in selfs)  # BOS + tokens
    cross = [r for r in decode if r["ann"].attention_type == "cross"]
    assert cross and all(r["ann"].seq_kv == meta.text_length for r in cross)


def test_phenaki_and_masked_models_sequence_lengths(tiny_suite) -> None:
    from tracehouse.collectors.models.phenaki import token_grid

    path = tiny_suite[("phenaki", "flash")]
    meta = load_manifest(path)
    t, side = token_grid(meta.frames, meta.image_size)
    assert {r["ann"].seq_q for r in attention_calls(path, "transformer", "self")} == {t * side * side}
    assert {r["ann"].seq_q for r in attention_calls(path, "vq_decoder", "spatial")} == {side * side}
    assert {r["ann"].seq_q for r in attention_calls(path, "vq_decoder", "temporal")} == {t}

    path = tiny_suite[("diffusion-lm", "flash")]
    meta = load_manifest(path)
    calls = attention_calls(path, "transformer")
    assert {(r["ann"].attention_type, r["ann"].seq_q, r["ann"].seq_kv) for r in calls} == {
        ("self", meta.text_length + meta.decode_tokens, meta.text_length + meta.decode_tokens)
    }
    assert {r["step"] for r in calls} == set(range(meta.denoising_steps))

    path = tiny_suite[("muse", "flash")]
    meta = load_manifest(path)
    base = (meta.image_size // 16) ** 2
    assert {r["ann"].seq_q for r in attention_calls(path, "transformer", "self")} == {base}


@pytest.mark.parametrize("name", SUITE)
def test_baseline_and_flash_differ_in_attention_only(tiny_suite, name: str) -> None:
    def non_attention_ops(path: Path) -> Counter:
        return Counter(
            (r["ann"].operator, r["component"])
            for r in annotations(path)
            if r["ann"].operator not in (None, "attention")
        )

    def attention_shapes(path: Path) -> Counter:
        return Counter(r["name"] for r in attention_calls(path))

    base, flash = tiny_suite[(name, "baseline")], tiny_suite[(name, "flash")]
    assert non_attention_ops(base) == non_attention_ops(flash)
    assert attention_shapes(base) == attention_shapes(flash)
    # The kernels inside attention differ: math materialises softmax, flash runs one fused op.
    ops_in = lambda p, word: any(word in e.get("name", "") for e in load_events(p) if e.get("cat") == "cpu_op")  # noqa: E731
    assert ops_in(base, "aten::_softmax")
    assert ops_in(flash, "flash_attention")


# ----------------------------------------------------------------------------- committed data


@pytest.mark.parametrize("backend", BACKENDS)
def test_committed_sd_traces(backend: str) -> None:
    path = DATA / f"sd_tiny_cpu_{backend}.json.gz"
    assert path.stat().st_size < 300_000
    meta = load_manifest(path)
    assert meta.model == "stable-diffusion" and meta.attention_backend == backend
    hl = meta.image_size // 8
    seqs = {r["ann"].seq_q for r in attention_calls(path, "unet", "self")}
    assert seqs and seqs <= level_tokens(hl, 4)


# ----------------------------------------------------------------------------- CLI


def test_cli_imports_without_torch() -> None:
    code = "import sys, tracehouse.api.cli_collect; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parse_sweep() -> None:
    from tracehouse.api.cli_collect import parse_sweep

    assert parse_sweep(["image-size=64,128", "attention=baseline,flash"]) == {
        "image_size": [64, 128],
        "attention": ["baseline", "flash"],
    }
    import typer

    with pytest.raises(typer.BadParameter):
        parse_sweep(["colour=red"])


def test_cli_sweep(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from tracehouse.api.cli_collect import collect

    app = typer.Typer()
    app.command("collect")(collect)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(
        app,
        [
            "collect",
            "--model",
            "sd",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
            "--sweep",
            "steps=1,2",
            "--attention",
            "both",
        ],
    )
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in tmp_path.glob("*.json.gz"))
    assert names == [
        "sd_tiny_cpu_baseline_s1.json.gz",
        "sd_tiny_cpu_baseline_s2.json.gz",
        "sd_tiny_cpu_flash_s1.json.gz",
        "sd_tiny_cpu_flash_s2.json.gz",
    ]
    assert load_manifest(tmp_path / "sd_tiny_cpu_flash_s2.json.gz").denoising_steps == 2


def test_collect_and_ingest(db: Database, tmp_path: Path) -> None:
    """What the collector writes (trace and manifest) is what the database holds after ingest."""
    from sqlalchemy import func, select

    from tracehouse.analyses.breakdown import breakdown
    from tracehouse.ingest.pipeline import ingest_file
    from tracehouse.schema.db import session_scope
    from tracehouse.schema.models import Kernel, Run

    res = collect_one("llama", "tiny", "flash", out=tmp_path)
    meta = load_manifest(res.trace)
    result = ingest_file(db.engine, res.trace, None, raw_dir=db.raw_dir)
    with session_scope(db.engine) as s:
        run = s.get(Run, result.run_id)
        assert run is not None
        assert (run.attention_backend, run.scale) == (meta.attention_backend, meta.scale) == ("flash", "tiny")
        assert run.decode_tokens == meta.decode_tokens and run.param_count == meta.param_count
        kernels = s.scalar(select(func.count()).select_from(Kernel).where(Kernel.run_id == run.id))
        assert run.kernel_count == kernels > 0
        by_type = breakdown(s, run.id, "attention_type")
    assert by_type["kernel_count"].sum() == kernels and by_type["total_ns"].sum() == run.total_ns > 0
    assert {"causal", "causal-decode"} & set(by_type["attention_type"].drop_nulls()), by_type  # a decoder: causal
    # The profiler's memory events stay in the trace and become the run's memory_event rows,
    # whose peak is the one the collector read from them for the manifest.
    from tracehouse.analyses.memory_timeline import memory_timeline
    from tracehouse.schema.memory import MemoryEvent

    recorded = [e for e in load_events(res.trace) if e.get("name") == "[memory]"]
    with session_scope(db.engine) as s:
        stored = s.scalar(select(func.count()).select_from(MemoryEvent).where(MemoryEvent.run_id == run.id))
        timeline = memory_timeline(s, run.id, 20)
    assert stored == len(recorded) > 0
    assert timeline["allocated_bytes"].max() == int(meta.tags["peak_activation_bytes"])


def test_step_window_bounds_long_decodes(tmp_path: Path) -> None:
    from tracehouse.collectors.models.base import Knobs

    res = collect_one("llama", "tiny", "flash", knobs=Knobs(decode_tokens=12), out=tmp_path, max_profiled_steps=3)
    assert res.trace.name == "llama_tiny_cpu_flash_dec12_w3.json.gz"
    decode = attention_calls(res.trace, "decode")
    assert {r["step"] for r in decode} == {0, 1, 2}
    assert attention_calls(res.trace, "prefill")
    meta = load_manifest(res.trace)
    assert meta.decode_tokens == 12 and meta.tags["unprofiled_steps"] == "decode:9"


def test_the_exported_trace_is_written_back_as_it_was_read(tmp_path: Path) -> None:
    """The profiler's export, gzipped by ``postprocess_export`` (orjson both ways): the same JSON,
    the memory peaks read from it; a trace orjson refuses (a NaN) is kept as the standard
    library reads it, not written with nulls."""
    from tracehouse.collectors.profile import postprocess_export

    events = [
        {"ph": "X", "cat": "user_annotation", "name": "th|comp=unet", "ts": 10, "dur": 5, "args": {}},
        {"ph": "i", "name": "[memory]", "ts": 12, "args": {"Total Allocated": 4096, "Device Type": 0}},
        {"ph": "i", "name": "[memory]", "ts": 40, "args": {"Total Allocated": 8192, "Device Type": 0}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 11, "dur": 1.5, "args": {"Input Dims": [[2, 3]]}},
    ]
    for extra, parsed_by in (({"note": "ünïcode"}, "orjson"), ({"ratio": float("nan")}, "json")):
        raw = tmp_path / f"{parsed_by}.json"
        raw.write_text(json.dumps({"traceEvents": events, **extra}))
        dest = tmp_path / f"{parsed_by}.json.gz"
        peaks = postprocess_export(raw, dest)
        assert peaks == {"": 8192, "unet": 4096}
        written = json.loads(gzip.decompress(dest.read_bytes()))
        if parsed_by == "json":  # NaN != NaN: it must still be a NaN, not orjson's null
            assert math.isnan(written.pop("ratio"))
        assert written == {"traceEvents": events, **({} if parsed_by == "json" else extra)}
