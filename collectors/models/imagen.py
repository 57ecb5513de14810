"""Imagen: a pixel-space diffusion cascade.  T5 encoder -> base UNet (64x64 at paper scale) for N
steps -> super-resolution UNets (x4 each at paper scale: 64->256->1024), each conditioned on the
upsampled lower-resolution image (concatenated channels) and on the text (cross-attention only).

``image_size`` is the final resolution; the base resolution is image_size / prod(sr factors).
Paper scale: T5-XXL encoder (4.6B), base UNet 2B, SR-256 600M, SR-1024 400M (Saharia et al. 2022).
The UNets use the diffusers UNet layout, not Imagen's Efficient-UNet, so SR counts are approximate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tracehouse.collectors.annotate import component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerConfig
from tracehouse.collectors.models.text import T5_TINY, T5_XXL, encode_text
from tracehouse.collectors.models.unet import UNet, UNetConfig


@dataclass(frozen=True)
class ImagenConfig:
    text: TransformerConfig
    base: UNetConfig
    sr: tuple[UNetConfig, ...]
    sr_factor: int
    knobs: Knobs
    guidance: bool = True


CONFIGS = {
    "tiny": ImagenConfig(
        text=T5_TINY,
        base=UNetConfig(
            in_ch=3, out_ch=3, channels=(32, 64), layers=1, attn=(False, True), heads=2, cross_dim=32, groups=8
        ),
        sr=(
            UNetConfig(
                in_ch=6,
                out_ch=3,
                channels=(16, 32),
                layers=1,
                attn=(False, True),
                heads=2,
                cross_dim=32,
                groups=8,
                self_attention=False,
            ),
        ),
        sr_factor=2,
        knobs=Knobs(image_size=32, steps=2, text_length=8),
    ),
    "paper": ImagenConfig(
        text=T5_XXL,
        base=UNetConfig(
            in_ch=3,
            out_ch=3,
            channels=(512, 1024, 1536, 2048),
            layers=2,
            attn=(False, True, True, True),
            heads=8,
            cross_dim=4096,
        ),
        sr=(
            UNetConfig(
                in_ch=6,
                out_ch=3,
                channels=(128, 256, 512, 1024),
                layers=4,
                attn=(False, False, False, True),
                heads=8,
                cross_dim=4096,
                self_attention=False,
            ),
            UNetConfig(
                in_ch=6,
                out_ch=3,
                channels=(128, 256, 512, 1024),
                layers=4,
                attn=(False, False, False, False),
                heads=8,
                cross_dim=4096,
                self_attention=False,
                mid_attn=True,
            ),
        ),
        sr_factor=4,
        knobs=Knobs(image_size=1024, steps=50, text_length=128),
    ),
}


def build(cfg: ImagenConfig):
    mods = {"text_encoder": Transformer(cfg.text), "unet": UNet(cfg.base)}
    for i, sr in enumerate(cfg.sr):
        mods[f"super_resolution{i}" if i else "super_resolution"] = UNet(sr)
    return mods


def _denoise(unet, x, cond, text, n, steps, comp, ctx, extra_step=0):
    b = x.shape[0]
    for step in range(steps):
        t = torch.full((b * n,), 999 - step * (1000 // max(steps, 1)), device=ctx.device)
        inp = x if cond is None else torch.cat([x, cond], dim=1)
        with component(comp, step + extra_step):
            eps = unet(torch.cat([inp] * n), t, text)
        if n == 2:
            e_u, e_c = eps.chunk(2)
            eps = e_u + 7.5 * (e_c - e_u)
        x = x - 0.02 * eps
    return x


def run(m, cfg: ImagenConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    b, n = k.batch, (2 if cfg.guidance else 1)
    text = encode_text(m["text_encoder"], ctx, b * n)
    base = k.image_size // cfg.sr_factor ** len(cfg.sr)
    x = _denoise(m["unet"], ctx.randn(b, 3, base, base), None, text, n, k.steps, "unet", ctx)
    size = base
    for i in range(len(cfg.sr)):
        size *= cfg.sr_factor
        low = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        # Each SR stage numbers its steps after the previous stage's, so (component, step) is unique.
        x = _denoise(
            m[f"super_resolution{i}" if i else "super_resolution"],
            ctx.randn(b, 3, size, size),
            low,
            text,
            n,
            k.steps,
            "super_resolution",
            ctx,
            extra_step=i * k.steps,
        )
    ctx.notes["base_size"] = base


SPEC = ModelSpec(
    name="imagen",
    configs=CONFIGS,
    build=build,
    run=run,
    published={
        "text_encoder": (4_762_310_656, 0.01),
        "unet": (2_000_000_000, 0.2),
        "super_resolution": (600_000_000, 0.2),
        "super_resolution1": (400_000_000, 0.2),
    },
    published_note="Imagen: T5-XXL encoder 4.76B, base 64x64 UNet 2B, SR 600M + 400M",
    knob_names=("batch", "image_size", "steps", "text_length"),
)
