"""Run one model of the suite under ``torch.profiler`` and write ``<out>/<name>.json.gz`` plus
its manifest ``<out>/<name>.manifest.json`` (keys: ``tracehouse.core.meta.RunMeta`` fields)."""

from __future__ import annotations

import contextlib
import functools
import gc
import gzip
import json
import os
import platform
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tracehouse.collectors.annotate import FALLBACKS, StepWindow, step_window
from tracehouse.collectors.models import canonical, get_spec, short_name
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import count_params
from tracehouse.core.annotation import parse_annotation
from tracehouse.core.meta import manifest_path_for
from tracehouse.core.model_catalog import family_and_architecture

ATTENTION_BACKENDS = {
    "baseline": [SDPBackend.MATH],  # materialised softmax(QK^T)V
    "flash": [SDPBackend.FLASH_ATTENTION],  # CUDA flash kernels; the flash CPU kernel on the CPU
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "auto": None,  # let SDPA choose
}
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
DTYPE_SHORT = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
KNOB_SHORT = {
    "image_size": "img",
    "frames": "f",
    "steps": "s",
    "batch": "b",
    "decode_tokens": "dec",
    "text_length": "txt",
}


@dataclass
class CollectResult:
    trace: Path
    manifest: Path
    meta: dict[str, Any]
    wall_s: float
    notes: dict[str, Any] = field(default_factory=dict)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {sorted(DTYPES)}") from None


def trace_name(model: str, scale: str, device: str, attention: str, overrides: Knobs | None, dtype: torch.dtype) -> str:
    parts = [short_name(model), scale, device.split(":", maxsplit=1)[0], attention]
    if overrides is not None:
        for key, short in KNOB_SHORT.items():
            value = getattr(overrides, key)
            if value is not None and not (key == "batch" and value == 1):
                parts.append(f"{short}{value}")
    if dtype != torch.float32:
        parts.append(DTYPE_SHORT.get(dtype, str(dtype).removeprefix("torch.")))
    return "_".join(parts)


def param_count(model: str, scale: str) -> int:
    """Parameters of the model at ``scale``, built on the meta device (nothing allocated)."""
    spec = get_spec(model)
    with torch.device("meta"):
        modules = spec.build(spec.config(scale))
    return sum(count_params(m) for m in modules.values())


def _backend_ctx(attention: str):
    if attention not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {attention!r}; known: {sorted(ATTENTION_BACKENDS)}")
    backends = ATTENTION_BACKENDS[attention]
    return contextlib.nullcontext() if backends is None else sdpa_kernel(backends)


def _host_info(device: torch.device) -> dict[str, str]:
    tags = {
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()),
        "device": str(device),
    }
    if torch.version.cuda:
        tags["cuda_version"] = str(torch.version.cuda)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        tags.update(
            gpu_name=props.name,
            gpu_memory_bytes=str(props.total_memory),
            gpu_sm_count=str(props.multi_processor_count),
            gpu_compute_capability=f"{props.major}.{props.minor}",
        )
    return tags


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def postprocess_export(raw: Path, dest: Path, device_type: int = 0, keep_memory: bool = True) -> dict[str, int]:
    """Gzip the Chrome trace after reading the allocator peak (overall and per component
    range) from its ``[memory]`` instants.  Returns ``{"": peak, component: peak}``.
    ``device_type``: the allocator to read (0: CPU, 1: CUDA).  ``keep_memory``: keep the
    instants in the trace (ingest stores them as the run's memory timeline); False drops them,
    which makes a long run's trace smaller, with no timeline to draw."""
    with _cyclic_gc_paused():
        return _peaks_and_gzip(raw, dest, device_type, keep_memory)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The decoded trace is ~10^5 acyclic containers: each allocation burst would start a
    collection that walks every object the process holds (torch, transformers, the model), which
    made decoding 2-3x slower than the decode itself (0.28 s against 0.11 s per tiny trace).
    Reference counting still frees everything; only the cycle search waits until the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _peaks_and_gzip(raw: Path, dest: Path, device_type: int, keep_memory: bool) -> dict[str, int]:
    data, encode = _read_chrome_trace(raw.read_bytes())
    events = data.get("traceEvents", [])
    mem = [
        (e["ts"], int(e["args"].get("Total Allocated", 0)))
        for e in events
        if e.get("name") == "[memory]" and "args" in e and int(e["args"].get("Device Type", 0)) == device_type
    ]
    peaks: dict[str, int] = {}
    if mem:
        peaks[""] = max(v for _, v in mem)
        mem.sort()
        comps = []
        for e in events:
            if e.get("cat") == "user_annotation" and e.get("ph") == "X":
                ann = parse_annotation(e.get("name", ""))
                if ann is not None and ann.component and ann.operator is None:
                    comps.append((ann.component, e["ts"], e["ts"] + e.get("dur", 0)))
        import bisect

        times = [t for t, _ in mem]
        for comp, t0, t1 in comps:
            lo, hi = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1)
            if hi > lo:
                peaks[comp] = max(peaks.get(comp, 0), *(v for _, v in mem[lo:hi]))
    if not keep_memory:
        data["traceEvents"] = [e for e in events if e.get("name") != "[memory]"]
    payload = encode(data)
    with gzip.GzipFile(dest, "wb", compresslevel=9, mtime=0) as fh:
        fh.write(payload)
    return peaks


def _read_chrome_trace(text: bytes) -> tuple[dict[str, Any], Callable[[Any], bytes]]:
    """The exported trace, decoded, and the encoder that writes it back compactly.  orjson
    reads and writes it in a fraction of the standard library's time (the two were ~16% of a
    tiny-suite collect); a trace orjson refuses (NaN, an integer past 64 bits) is read and
    written the standard way, so nothing in it changes on the way."""
    try:
        return orjson.loads(text), orjson.dumps
    except orjson.JSONDecodeError:
        return json.loads(text), _std_compact


def _std_compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


_PROFILER_WARM = {"done": False}

# Kineto (torch's profiler back end) prints ``USDT: ... profiler_start`` / ``profiler_stop`` on
# stderr for every session at any log level below 6, which it reads from the environment when
# the first session starts.  A user who sets KINETO_LOG_LEVEL gets Kineto's lines back.
QUIET_KINETO_LOG_LEVEL = "6"


def _warm_profiler() -> None:
    """The first profiler session of a process pays ~1 s of Kineto start-up: pay it outside the trace."""
    os.environ.setdefault("KINETO_LOG_LEVEL", QUIET_KINETO_LOG_LEVEL)
    if not _PROFILER_WARM["done"]:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
            torch.zeros(1).add_(1)
        _PROFILER_WARM["done"] = True


def collect_one(
    model: str,
    scale: str = "tiny",
    attention: str = "baseline",
    *,
    knobs: Knobs | None = None,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    out: Path = Path("traces"),
    name: str | None = None,
    warmup: bool | None = None,
    seed: int = 0,
    profile_memory: bool = True,
    keep_memory_events: bool = True,
    max_profiled_steps: int | None = None,
    name_suffix: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> CollectResult:
    """Profile one pipeline run.  ``max_profiled_steps``: keep only the first N steps of each
    denoising / decode loop in the trace (the rest still runs, with collection off).
    ``name_suffix`` tells repeats' files apart; ``extra_meta`` (experiment, commit, version,
    tags) goes into the manifest.  ``keep_memory_events``: keep the profiler's ``[memory]``
    events in the trace (the memory timeline); the peaks in the manifest are read either way."""
    model = canonical(model)
    dt, dev = resolve_dtype(dtype), torch.device(device)
    if dev.type == "cuda" and attention == "flash" and dt == torch.float32:
        raise ValueError("flash attention on CUDA needs --dtype float16 or bfloat16")
    if not name:
        window = f"_w{max_profiled_steps}" if max_profiled_steps is not None else ""
        name = trace_name(model, scale, dev.type, attention, knobs, dt) + window
    trace = Path(out) / f"{name}{name_suffix}.json.gz"
    trace.parent.mkdir(parents=True, exist_ok=True)
    pipeline = _Pipeline.built(model, scale, attention, knobs, dev, dt, seed)
    if warmup is None or warmup:
        pipeline.run()
    prof, ctx, wall = _profiled(pipeline, profile_memory, max_profiled_steps)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        peaks = postprocess_export(raw, trace, 1 if dev.type == "cuda" else 0, keep_memory_events)
    meta = pipeline.manifest(peaks, ctx, wall, extra_meta or {})
    manifest = manifest_path_for(trace)
    manifest.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return CollectResult(trace=trace, manifest=manifest, meta=meta, wall_s=wall, notes=ctx.notes)


@dataclass
class _Pipeline:
    """One model of the suite built on its device in its dtype, and how it is run."""

    model: str
    scale: str
    attention: str
    spec: ModelSpec
    cfg: Any
    knobs: Knobs  # the scale's knobs with the caller's overrides
    device: torch.device
    dtype: torch.dtype
    seed: int
    modules: dict[str, torch.nn.Module]

    @classmethod
    def built(
        cls, model: str, scale: str, attention: str, knobs: Knobs | None, dev: torch.device, dt: torch.dtype, seed: int
    ) -> _Pipeline:
        spec = get_spec(model)
        cfg = spec.config(scale)
        torch.manual_seed(seed)
        with torch.device(dev):
            modules = spec.build(cfg)
        for m in modules.values():
            m.to(dtype=dt).eval()
        return cls(model, scale, attention, spec, cfg, cfg.knobs.over(knobs), dev, dt, seed, modules)

    def run(self, window: StepWindow | None = None) -> RunContext:
        """The pipeline once, from the same seed; ``window`` bounds the steps profiled."""
        FALLBACKS.clear()
        generator = torch.Generator().manual_seed(self.seed)
        ctx = RunContext(device=self.device, dtype=self.dtype, knobs=self.knobs, generator=generator)
        if window is not None:
            ctx.notes["max_profiled_steps"] = window.max_steps
        with torch.inference_mode(), _backend_ctx(self.attention), step_window(window):
            self.spec.run(self.modules, self.cfg, ctx)
        if window is not None and window.skipped:
            ctx.notes["unprofiled_steps"] = ",".join(f"{k}:{v}" for k, v in sorted(window.skipped.items()))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return ctx

    def manifest(
        self, peaks: dict[str, int], ctx: RunContext, wall: float, extra_meta: dict[str, Any]
    ) -> dict[str, Any]:
        """The manifest's keys (``RunMeta`` fields), ``extra_meta`` over them, none left None."""
        eff, n_params = self.knobs, sum(count_params(m) for m in self.modules.values())
        meta: dict[str, Any] = {
            # One vocabulary for family / architecture: the store's catalogue.
            "model": self.model,
            **dict(zip(("family", "architecture"), family_and_architecture(self.model), strict=True)),
            "param_count": n_params,
            "scale": self.scale,
            "hardware": _cpu_name() if self.device.type == "cpu" else None,
            "attention_backend": self.attention,
            "batch": eff.batch,
            "dtype": DTYPE_SHORT.get(self.dtype, str(self.dtype)),
            "image_size": eff.image_size,
            "frames": eff.frames,
            "denoising_steps": eff.steps if "steps" in self.spec.knob_names else None,
            "decode_tokens": eff.decode_tokens,
            "text_length": eff.text_length,
            "peak_memory_bytes": self._peak_memory_bytes(peaks),
            "host": socket.gethostname(),
            "tags": self._tags(n_params, peaks, ctx, wall),
        }
        meta.update(ctx.meta)
        extra = dict(extra_meta)
        meta["tags"].update(extra.pop("tags", {}))
        meta.update(extra)
        return {k: v for k, v in meta.items() if v is not None}

    @functools.cached_property
    def _weight_bytes(self) -> int:  # read by the tags and the CPU peak; the weights never change
        return sum(p.numel() * p.element_size() for m in self.modules.values() for p in m.parameters())

    def _peak_memory_bytes(self, peaks: dict[str, int]) -> int | None:
        """Weights + activations, as ``torch.cuda.max_memory_allocated`` means it."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        # The CPU allocator's counter starts at zero when profiling starts (activations only):
        # the weights are added.
        activation_peak = peaks.get("")
        return None if activation_peak is None else self._weight_bytes + activation_peak

    def _tags(self, n_params: int, peaks: dict[str, int], ctx: RunContext, wall: float) -> dict[str, str]:
        """Host, collector settings, parameter and memory figures, and the run's notes."""
        cuda = self.device.type == "cuda"
        # CPU: the profiler's allocator counter (activations only); CUDA: the caching
        # allocator's total (weights included).
        mem_key = "peak_allocated_bytes" if cuda else "peak_activation_bytes"
        tags: dict[str, str] = {
            **_host_info(self.device),
            "collector": "tracehouse.collectors",
            "seed": str(self.seed),
            "wall_s": f"{wall:.3f}",
            "param_bytes_estimate": str(n_params * (torch.finfo(self.dtype).bits // 8)),
            "sdpa_backends": ",".join(b.name for b in (ATTENTION_BACKENDS[self.attention] or [])) or "auto",
            "peak_memory_source": "torch.cuda.max_memory_allocated"
            if cuda
            else "weights + profiler CPU allocator peak ([memory] events)",
            "weight_bytes": str(self._weight_bytes),
        }
        if "" in peaks:
            tags[mem_key] = str(peaks[""])
        tags.update({f"params.{comp}": str(count_params(m)) for comp, m in self.modules.items()})
        tags.update({f"{mem_key}.{comp}": str(v) for comp, v in peaks.items() if comp})
        tags.update({key: str(value) for key, value in ctx.notes.items()})
        if FALLBACKS:
            tags["attention_fallbacks"] = ",".join(f"{k}={v}" for k, v in sorted(FALLBACKS.items()))
        return tags


def _profiled(
    pipeline: _Pipeline, profile_memory: bool, max_steps: int | None
) -> tuple[torch.profiler.profile, RunContext, float]:
    """The pipeline run once under torch.profiler: the profile, the run's context and its wall time."""
    _warm_profiler()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if pipeline.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    t0 = time.perf_counter()
    with torch.profiler.profile(
        activities=activities, record_shapes=True, profile_memory=profile_memory, with_stack=False
    ) as prof:
        ctx = pipeline.run(None if max_steps is None else StepWindow(prof, activities, max_steps))
    return prof, ctx, time.perf_counter() - t0
