"""Profiler ranges in the trace store's annotation convention (``tracehouse.core.annotation``).

Every module call a collector wants attributed runs inside :func:`annotated`: a
``torch.profiler.record_function`` range (Kineto ``user_annotation``) and, when CUDA is
present, an NVTX range with the same name so Nsight Systems traces carry the same keys.

The ``A*`` layers are drop-in subclasses of the ``torch.nn`` layers whose forward is
wrapped in an ``op=...`` range; :func:`attention` runs scaled-dot-product attention inside an
``op=attention`` range whose sequence lengths, batch, heads and head dim are read off the
tensors actually passed, so the annotation can never drift from what ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tracehouse.core.annotation import format_annotation

_NVTX: dict[str, bool | None] = {"enabled": None}


def _nvtx_enabled() -> bool:
    if _NVTX["enabled"] is None:
        _NVTX["enabled"] = bool(torch.cuda.is_available())
    return bool(_NVTX["enabled"])


def set_nvtx(enabled: bool | None) -> None:
    """Force NVTX ranges on/off (``None``: on when CUDA is available)."""
    _NVTX["enabled"] = enabled


@contextlib.contextmanager
def annotated(**keys: object) -> Iterator[str]:
    """A profiler (and NVTX) range named ``format_annotation(**keys)``."""
    name = format_annotation(**keys)
    nvtx = _nvtx_enabled()
    if nvtx:
        torch.cuda.nvtx.range_push(name)
    try:
        with torch.profiler.record_function(name):
            yield name
    finally:
        if nvtx:
            torch.cuda.nvtx.range_pop()


class StepWindow:
    """Bounds long loops (autoregressive decode, many denoising steps): component calls whose
    ``step`` is ``>= max_steps`` run with profiler collection switched off
    (``toggle_collection_dynamic``), so the trace keeps every component and the first
    ``max_steps`` steps of each loop.  Collection is switched back on at the next component
    call within the window, and by :meth:`close`.
    """

    def __init__(self, profiler, activities, max_steps: int) -> None:
        self.profiler, self.activities, self.max_steps = profiler, activities, max_steps
        self.off = False
        self.skipped: dict[str, int] = {}

    def enter(self, name: str, step: int | None) -> bool:
        """True when this call is profiled."""
        inside = step is None or step < self.max_steps
        if inside and self.off:
            self.profiler.toggle_collection_dynamic(True, self.activities)
            self.off = False
        elif not inside:
            self.skipped[name] = self.skipped.get(name, 0) + 1
            if not self.off:
                self.profiler.toggle_collection_dynamic(False, self.activities)
                self.off = True
        return inside

    def close(self) -> None:
        if self.off:
            self.profiler.toggle_collection_dynamic(True, self.activities)
            self.off = False


_WINDOW: dict[str, StepWindow | None] = {"window": None}


@contextlib.contextmanager
def step_window(window: StepWindow | None) -> Iterator[StepWindow | None]:
    _WINDOW["window"] = window
    try:
        yield window
    finally:
        if window is not None:
            window.close()
        _WINDOW["window"] = None


@contextlib.contextmanager
def component(name: str, step: int | None = None) -> Iterator[None]:
    """The range enclosing one component call (``th|comp=unet|step=3``)."""
    window = _WINDOW["window"]
    if window is not None and not window.enter(name, step):
        yield  # outside the step window: collection is off, no range either
        return
    with annotated(component=name, step=step):
        yield


class ALinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="linear"):
            return super().forward(x)


class AConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="conv"):
            return super().forward(x)


class AConv3d(nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="conv"):
            return super().forward(x)


class AGroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="groupnorm"):
            return super().forward(x)


class ALayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="layernorm"):
            return super().forward(x)


class ARMSNorm(nn.Module):
    """LLaMA/T5-style RMSNorm (no mean subtraction, no bias); annotated ``normalization``."""

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="normalization"):
            var = x.float().pow(2).mean(-1, keepdim=True)
            return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight


class AEmbedding(nn.Embedding):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with annotated(operator="embedding"):
            return super().forward(x)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_type: str,
    *,
    is_causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    seq_major: bool = False,
) -> torch.Tensor:
    """SDPA over ``(batch, heads, seq, head_dim)`` tensors inside an ``op=attention`` range.

    The backend (math vs flash) is chosen by the caller's ``sdpa_kernel`` context.
    ``seq_major`` returns ``(batch, seq, heads, head_dim)`` made contiguous *inside* the range:
    whether that copy happens depends on the backend's output layout, so it belongs to attention.
    """
    b, h, sq, d = q.shape
    skv = k.shape[-2]
    with annotated(
        operator="attention", attention_type=attention_type, seq_q=sq, seq_kv=skv, batch=b, heads=h, head_dim=d
    ):
        out = _sdpa(q, k, v, attention_type, d, is_causal=is_causal, attn_mask=attn_mask, scale=scale)
        return out.transpose(1, 2).contiguous() if seq_major else out


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_type: str,
    d: int,
    *,
    is_causal: bool,
    attn_mask: torch.Tensor | None,
    scale: float | None,
) -> torch.Tensor:
    try:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    except RuntimeError as exc:
        # The forced backend cannot serve this call (e.g. CUDA flash and head_dim > 256 in a
        # VAE mid block): fall back rather than fail the run, and count it for the manifest.
        if not any(m in str(exc) for m in ("No available kernel", "No viable backend")):
            raise
        key = f"{attention_type}:d{d}"
        FALLBACKS[key] = FALLBACKS.get(key, 0) + 1
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)


# Library layers (transformers / diffusers models) get their ranges from forward hooks: the layer
# class (or, for RMSNorm variants that are not torch.nn classes, its name) -> operator.
_HOOK_OPERATORS: tuple[tuple[type, str], ...] = (
    (nn.Linear, "linear"),
    (nn.Conv1d, "conv"),
    (nn.Conv2d, "conv"),
    (nn.Conv3d, "conv"),
    (nn.GroupNorm, "groupnorm"),
    (nn.LayerNorm, "layernorm"),
    (nn.Embedding, "embedding"),
)
_ANNOTATED_CLASSES = (ALinear, AConv2d, AConv3d, AGroupNorm, ALayerNorm, ARMSNorm, AEmbedding)


def hook_operator(module: nn.Module) -> str | None:
    """The operator a library layer is annotated with (``None``: not annotated by a hook)."""
    if isinstance(module, _ANNOTATED_CLASSES):
        return None  # annotates itself
    for cls, op in _HOOK_OPERATORS:
        if isinstance(module, cls):
            return op
    if type(module).__name__.endswith("RMSNorm") or isinstance(module, getattr(nn, "RMSNorm", ())):
        return "normalization"
    return None


def instrument(model: nn.Module) -> nn.Module:
    """Annotate every conv / linear / norm / embedding layer of a library model with forward
    pre/post hooks that open and close an ``op=...`` range (record_function, and NVTX on CUDA).
    Idempotent; returns ``model``."""
    for mod in model.modules():
        op = hook_operator(mod)
        if op is None or getattr(mod, "_th_instrumented", False):
            continue
        # Plain attributes, where nn.Module.__setattr__ would put them too (it is typed for tensors
        # and modules only).
        vars(mod).update(_th_instrumented=True, _th_ranges=[])

        def pre(m, args, _op=op):
            cm = annotated(operator=_op)
            cm.__enter__()
            m._th_ranges.append(cm)

        def post(m, args, output):
            if m._th_ranges:
                m._th_ranges.pop().__exit__(None, None, None)

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post, always_call=True)
    return model


# Attention calls the forced SDPA backend could not run (``type:dHEAD_DIM`` -> count); reset per run.
FALLBACKS: dict[str, int] = {}


__all__ = [
    "AConv2d",
    "AConv3d",
    "AEmbedding",
    "AGroupNorm",
    "ALayerNorm",
    "ALinear",
    "ARMSNorm",
    "StepWindow",
    "annotated",
    "attention",
    "component",
    "instrument",
    "set_nvtx",
    "step_window",
]
