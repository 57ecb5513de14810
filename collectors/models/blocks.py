"""Building blocks shared by the suite: attention, feed-forward and transformer blocks (the
UNet and the conv decoder built on them are in ``unet.py``).

The layouts follow the published implementations closely enough that parameter counts of
the paper-scale configs land on the published figures (SD-1.5 UNet, CLIP, T5, LLaMA-2 ...);
every module call runs inside an annotation range (see ``collectors.annotate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tracehouse.collectors.annotate import (
    AEmbedding,
    ALayerNorm,
    ALinear,
    ARMSNorm,
    annotated,
    attention,
)

# ----------------------------------------------------------------------------- transformers


def rope_tables(head_dim: int, positions: torch.Tensor, theta: float = 10000.0):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions.float()[:, None] * inv[None, :]
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, tables) -> torch.Tensor:
    cos, sin = tables
    x1, x2 = x[..., 0::2].float(), x[..., 1::2].float()
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        context_dim: int | None = None,
        kv_heads: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = True,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.kv_heads = kv_heads or heads
        inner, kv_inner = heads * head_dim, self.kv_heads * head_dim
        cdim = context_dim or dim
        self.q = ALinear(dim, inner, bias=qkv_bias)
        self.k = ALinear(cdim, kv_inner, bias=qkv_bias)
        self.v = ALinear(cdim, kv_inner, bias=qkv_bias)
        self.o = ALinear(inner, dim, bias=out_bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        kind: str = "self",
        is_causal: bool = False,
        cache: dict | None = None,
        rope=None,
    ) -> torch.Tensor:
        b, s, _ = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        if cache is not None and context is not None and "k" in cache:
            k, v = cache["k"], cache["v"]  # cross-attention keys are computed once
        else:
            k = self.k(ctx).view(b, -1, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v(ctx).view(b, -1, self.kv_heads, self.head_dim).transpose(1, 2)
            if rope is not None:
                q, k = apply_rope(q, rope), apply_rope(k, rope)
            if cache is not None:
                if context is None and "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        causal = is_causal and q.shape[2] > 1
        out = attention(q, k, v, kind, is_causal=causal)
        return self.o(out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class FeedForward(nn.Module):
    """``act``: gelu / quick_gelu (plain MLP), geglu / swiglu / gated-gelu (gated)."""

    def __init__(self, dim: int, inner: int, act: str = "gelu", bias: bool = True) -> None:
        super().__init__()
        self.act = act
        self.gated = act in ("geglu", "swiglu", "gated-gelu")
        self.up = ALinear(dim, inner * (2 if self.gated else 1), bias=bias)
        self.down = ALinear(inner, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.gated:
            a, g = h.chunk(2, dim=-1)
            h = a * (F.silu(g) if self.act == "swiglu" else F.gelu(g))
        elif self.act == "quick_gelu":
            h = h * torch.sigmoid(1.702 * h)
        else:
            h = F.gelu(h)
        return self.down(h)


def make_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    return ARMSNorm(dim, eps=eps) if kind == "rms" else ALayerNorm(dim, eps=eps)


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, feed-forward."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        ff_inner: int,
        *,
        act: str = "gelu",
        norm: str = "layer",
        cross_dim: int | None = None,
        kv_heads: int | None = None,
        qkv_bias: bool = True,
        out_bias: bool = True,
        ff_bias: bool = True,
        self_attention: bool = True,
    ) -> None:
        super().__init__()
        self.self_attention = self_attention
        if self_attention:
            self.norm1 = make_norm(norm, dim)
            self.attn1 = Attention(dim, heads, head_dim, kv_heads=kv_heads, qkv_bias=qkv_bias, out_bias=out_bias)
        self.cross = cross_dim is not None
        if self.cross:
            self.norm2 = make_norm(norm, dim)
            self.attn2 = Attention(dim, heads, head_dim, context_dim=cross_dim, qkv_bias=qkv_bias, out_bias=out_bias)
        self.norm3 = make_norm(norm, dim)
        self.ff = FeedForward(dim, ff_inner, act, bias=ff_bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        kind: str = "self",
        is_causal: bool = False,
        cache: dict | None = None,
        rope=None,
        cross_kind: str = "cross",
    ) -> torch.Tensor:
        if self.self_attention:
            x = x + self.attn1(
                self.norm1(x),
                kind=kind,
                is_causal=is_causal,
                cache=None if cache is None else cache.setdefault("self", {}),
                rope=rope,
            )
        if self.cross and context is not None:
            x = x + self.attn2(
                self.norm2(x), context, kind=cross_kind, cache=None if cache is None else cache.setdefault("cross", {})
            )
        return x + self.ff(self.norm3(x))


@dataclass(frozen=True)
class TransformerConfig:
    dim: int
    layers: int
    heads: int
    ff_inner: int
    vocab: int = 0  # 0: no token embedding (inputs are already vectors)
    head_dim: int | None = None
    kv_heads: int | None = None
    act: str = "gelu"
    norm: str = "layer"
    max_positions: int = 0  # >0: learned absolute positions; 0 with rope=True: rotary
    rope: bool = False
    cross_dim: int | None = None
    qkv_bias: bool = True
    out_bias: bool = True
    ff_bias: bool = True
    lm_head: int = 0  # output vocabulary (0: none)
    tie_head: bool = False

    @property
    def hd(self) -> int:
        return self.head_dim or self.dim // self.heads


class Transformer(nn.Module):
    """A token (or vector) transformer stack: CLIP/T5 text encoders, LLaMA, Parti, Muse, Phenaki."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = AEmbedding(cfg.vocab, cfg.dim) if cfg.vocab else None
        self.pos = nn.Parameter(torch.zeros(cfg.max_positions, cfg.dim)) if cfg.max_positions else None
        self.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.dim,
                cfg.heads,
                cfg.hd,
                cfg.ff_inner,
                act=cfg.act,
                norm=cfg.norm,
                cross_dim=cfg.cross_dim,
                kv_heads=cfg.kv_heads,
                qkv_bias=cfg.qkv_bias,
                out_bias=cfg.out_bias,
                ff_bias=cfg.ff_bias,
            )
            for _ in range(cfg.layers)
        )
        self.norm = make_norm(cfg.norm, cfg.dim)
        self.head = None
        if cfg.lm_head and not (cfg.tie_head and self.embed is not None):
            self.head = ALinear(cfg.dim, cfg.lm_head, bias=False)

    def forward(
        self,
        tokens: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        kind: str = "self",
        is_causal: bool = False,
        caches: list | None = None,
        start: int = 0,
        logits: bool = True,
    ) -> torch.Tensor:
        x = self.embed(tokens) if self.embed is not None else tokens
        s = x.shape[1]
        rope = None
        if self.pos is not None:
            x = x + self.pos[start : start + s]
        elif self.cfg.rope:
            rope = rope_tables(self.cfg.hd, torch.arange(start, start + s, device=x.device))
        for i, blk in enumerate(self.blocks):
            x = blk(x, context, kind=kind, is_causal=is_causal, cache=None if caches is None else caches[i], rope=rope)
        x = self.norm(x)
        if not logits or not self.cfg.lm_head:
            return x
        if self.head is not None:
            return self.head(x)
        if self.embed is None:
            raise ValueError("lm_head tied to the embedding needs an embedding (vocab)")
        with annotated(operator="linear"):
            return x @ self.embed.weight.t()


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
