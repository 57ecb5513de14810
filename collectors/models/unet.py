"""A diffusers-layout UNet (2-D, optionally with temporal layers) and a VAE/VQ-style conv
decoder, built on the transformer blocks of ``blocks.py``.

As there, the layouts follow the published implementations closely enough that parameter
counts of the paper-scale configs land on the published figures (SD-1.5 UNet ...); every module
call runs inside an annotation range (see ``collectors.annotate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from tracehouse.collectors.annotate import AConv2d, AConv3d, AGroupNorm, ALinear
from tracehouse.collectors.models.blocks import Attention, TransformerBlock

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
