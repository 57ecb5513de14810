"""Building blocks shared by the suite: attention, feed-forward, transformer blocks, a
diffusers-layout UNet (2-D, optionally with temporal layers) and a VAE/VQ-style conv decoder.

The layouts follow the published implementations closely enough that parameter counts of
the paper-scale configs land on the published figures (SD-1.5 UNet, CLIP, T5, LLaMA-2 ...);
every module call runs inside an annotation range (see ``collectors.annotate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from tracehouse.collectors.annotate import (
    AConv2d,
    AConv3d,
    AEmbedding,
    AGroupNorm,
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


# ----------------------------------------------------------------------------- UNet


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device).float() / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int | None, groups: int) -> None:
        super().__init__()
        self.norm1 = AGroupNorm(groups, cin, eps=1e-5)
        self.conv1 = AConv2d(cin, cout, 3, padding=1)
        self.temb = ALinear(temb, cout) if temb else None
        self.norm2 = AGroupNorm(groups, cout, eps=1e-5)
        self.conv2 = AConv2d(cout, cout, 3, padding=1)
        self.skip = AConv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb is not None and temb is not None:
            h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class SpatialTransformer(nn.Module):
    """diffusers ``Transformer2DModel``: GroupNorm, 1x1 proj, BasicTransformerBlock(s), 1x1 proj."""

    def __init__(
        self,
        ch: int,
        heads: int,
        cross_dim: int | None,
        groups: int,
        depth: int = 1,
        self_attention: bool = True,
        kind: str = "self",
    ) -> None:
        super().__init__()
        self.kind = kind
        self.norm = AGroupNorm(groups, ch, eps=1e-6)
        self.proj_in = AConv2d(ch, ch, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                ch,
                heads,
                ch // heads,
                4 * ch,
                act="geglu",
                cross_dim=cross_dim,
                qkv_bias=False,
                self_attention=self_attention,
            )
            for _ in range(depth)
        )
        self.proj_out = AConv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.blocks:
            y = blk(y, context, kind=self.kind)
        return x + self.proj_out(y.reshape(b, h, w, c).permute(0, 3, 1, 2))


class TemporalConv(nn.Module):
    """Convolution over frames (kernel (3,1,1)) on ``(B*F, C, H, W)`` activations."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = AGroupNorm(groups, ch)
        self.conv = AConv3d(ch, ch, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        y = self.norm(x).reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)
        y = self.conv(F.silu(y)).permute(0, 2, 1, 3, 4).reshape(bf, c, h, w)
        return x + y


class TemporalTransformer(nn.Module):
    """Self-attention over frames at every pixel: sequences of length F, batch B*H*W."""

    def __init__(self, ch: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = AGroupNorm(groups, ch, eps=1e-6)
        self.proj_in = ALinear(ch, ch)
        self.block = TransformerBlock(ch, heads, ch // heads, 4 * ch, act="geglu", qkv_bias=False)
        self.proj_out = ALinear(ch, ch)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // frames
        y = self.norm(x).reshape(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)
        y = self.proj_out(self.block(self.proj_in(y), kind="temporal"))
        y = y.reshape(b, h * w, frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return x + y


@dataclass(frozen=True)
class UNetConfig:
    in_ch: int = 4
    out_ch: int = 4
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers: int = 2
    attn: tuple[bool, ...] = (True, True, True, False)  # per level; mid block always attends
    heads: int = 8
    cross_dim: int | None = 768
    groups: int = 32
    self_attention: bool = True  # False: cross-attention only (Imagen SR UNets)
    temporal: bool = False  # video UNet: temporal conv + temporal attention after each layer
    spatial_kind: str = "self"  # annotation attention type of the per-frame attention
    mid_attn: bool = True


def _layers(stage: nn.Module) -> list[nn.ModuleDict]:
    """A UNet stage's layers: the stage is a ModuleList of ModuleDicts, which torch types as
    plain Modules."""
    return [cast("nn.ModuleDict", layer) for layer in stage.children()]


class UNet(nn.Module):
    """The diffusers ``UNet2DConditionModel`` / ``UNet3DConditionModel`` block layout."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0, g = cfg.channels[0], cfg.groups
        temb = 4 * c0
        self.time1, self.time2 = ALinear(c0, temb), ALinear(temb, temb)
        self.conv_in = AConv2d(cfg.in_ch, c0, 3, padding=1)

        def layer(cin: int, cout: int, attn: bool) -> nn.ModuleDict:
            d = nn.ModuleDict({"res": ResnetBlock(cin, cout, temb, g)})
            if cfg.temporal:
                d["tconv"] = TemporalConv(cout, g)
            if attn:
                d["attn"] = SpatialTransformer(
                    cout, cfg.heads, cfg.cross_dim, g, self_attention=cfg.self_attention, kind=cfg.spatial_kind
                )
                if cfg.temporal:
                    d["tattn"] = TemporalTransformer(cout, cfg.heads, g)
            return d

        n = len(cfg.channels)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [c0]
        cin = c0
        for i, cout in enumerate(cfg.channels):
            blocks = nn.ModuleList()
            for _ in range(cfg.layers):
                blocks.append(layer(cin, cout, cfg.attn[i]))
                cin = cout
                skips.append(cout)
            self.down.append(blocks)
            if i < n - 1:
                self.downsample.append(AConv2d(cout, cout, 3, stride=2, padding=1))
                skips.append(cout)
        cl = cfg.channels[-1]
        self.mid1 = layer(cl, cl, cfg.mid_attn)
        self.mid2 = ResnetBlock(cl, cl, temb, g)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        rev = list(reversed(cfg.channels))
        prev = rev[0]
        for i, cout in enumerate(rev):
            blocks = nn.ModuleList()
            for _ in range(cfg.layers + 1):
                blocks.append(layer(prev + skips.pop(), cout, list(reversed(cfg.attn))[i]))
                prev = cout
            self.up.append(blocks)
            if i < n - 1:
                self.upsample.append(AConv2d(cout, cout, 3, padding=1))
        self.norm_out = AGroupNorm(g, c0)
        self.conv_out = AConv2d(c0, cfg.out_ch, 3, padding=1)

    def _layer(self, d: nn.ModuleDict, x, temb, context, frames):
        x = d["res"](x, temb)
        if "tconv" in d:
            x = d["tconv"](x, frames)
        if "attn" in d:
            x = d["attn"](x, context)
        if "tattn" in d:
            x = d["tattn"](x, frames)
        return x

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None, frames: int = 1) -> torch.Tensor:
        """``x``: (B*F, C, H, W); ``t``: (B*F,); ``context``: (B*F, L, D) or None."""
        temb = self.time2(F.silu(self.time1(timestep_embedding(t, self.cfg.channels[0]).to(x.dtype))))
        x = self.conv_in(x)
        skips = [x]
        for i, blocks in enumerate(self.down):
            for d in _layers(blocks):
                x = self._layer(d, x, temb, context, frames)
                skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
                skips.append(x)
        x = self._layer(self.mid1, x, temb, context, frames)
        x = self.mid2(x, temb)
        for i, blocks in enumerate(self.up):
            for d in _layers(blocks):
                x = self._layer(d, torch.cat([x, skips.pop()], dim=1), temb, context, frames)
            if i < len(self.upsample):
                x = self.upsample[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(x)))


# ----------------------------------------------------------------------------- decoders


class ConvAttention(nn.Module):
    """The single-head self-attention of the VAE mid block, over all H*W positions."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = AGroupNorm(groups, ch, eps=1e-6)
        self.attn = Attention(ch, 1, ch, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x).reshape(b, c, h * w).transpose(1, 2)
        y = self.attn(y, kind="self")
        return x + y.transpose(1, 2).reshape(b, c, h, w)


@dataclass(frozen=True)
class DecoderConfig:
    latent_ch: int = 4
    out_ch: int = 3
    channels: tuple[int, ...] = (128, 256, 512, 512)
    layers: int = 2
    groups: int = 32
    post_quant: bool = True
    mid_attn: bool = True


class ConvDecoder(nn.Module):
    """diffusers ``AutoencoderKL`` decoder layout (also used as a VQ-GAN style token decoder)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.groups
        rev = list(reversed(cfg.channels))
        self.post_quant = AConv2d(cfg.latent_ch, cfg.latent_ch, 1) if cfg.post_quant else None
        self.conv_in = AConv2d(cfg.latent_ch, rev[0], 3, padding=1)
        self.mid1 = ResnetBlock(rev[0], rev[0], None, g)
        self.mid_attn = ConvAttention(rev[0], g) if cfg.mid_attn else None
        self.mid2 = ResnetBlock(rev[0], rev[0], None, g)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        prev = rev[0]
        for i, cout in enumerate(rev):
            self.up.append(
                nn.ModuleList(ResnetBlock(prev if j == 0 else cout, cout, None, g) for j in range(cfg.layers + 1))
            )
            prev = cout
            if i < len(rev) - 1:
                self.upsample.append(AConv2d(cout, cout, 3, padding=1))
        self.norm_out = AGroupNorm(g, rev[-1], eps=1e-6)
        self.conv_out = AConv2d(rev[-1], cfg.out_ch, 3, padding=1)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.cfg.channels) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant is not None:
            z = self.post_quant(z)
        x = self.mid1(self.conv_in(z))
        if self.mid_attn is not None:
            x = self.mid_attn(x)
        x = self.mid2(x)
        for i, blocks in enumerate(self.up):
            for blk in blocks.children():  # each stage is a ModuleList, typed as any Module
                x = blk(x)
            if i < len(self.upsample):
                x = self.upsample[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(x)))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
