"""Make-A-Video: a text-conditioned video diffusion UNet whose every level has, after each spatial
ResNet, a temporal convolution (kernel 3 over frames) and, after each spatial transformer, a
temporal transformer.  Spatial attention runs over ``(B*F, H*W)`` (annotated ``spatial``),
temporal attention over ``(B*H*W, F)`` (annotated ``temporal``); cross-attention to the text
runs per frame.

Paper scale: the spatiotemporal decoder at 16 frames x 64x64 pixels (Singer et al. 2022) with
the diffusers ``UNet3DConditionModel`` layout (320/640/1280/1280, CLIP ViT-L text).  Frame
interpolation and the spatiotemporal super-resolution networks are not run.  The UNet is diffusers'
``UNet3DConditionModel`` and the text encoder transformers' ``CLIPTextModel`` (random weights);
the UNet also runs its input temporal transformer (``transformer_in``, full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracehouse.collectors.annotate import component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import TransformerConfig
from tracehouse.collectors.models.hf import denoise
from tracehouse.collectors.models.text import CLIP_L, clip_text
from tracehouse.collectors.models.unet import UNetConfig


@dataclass(frozen=True)
class VideoConfig:
    text: TransformerConfig
    unet: UNetConfig
    knobs: Knobs
    guidance: bool = True


CONFIGS = {
    "tiny": VideoConfig(
        text=clip_text(32, 2, 2, vocab=1000),
        unet=UNetConfig(
            in_ch=3,
            out_ch=3,
            channels=(32, 64),
            layers=1,
            attn=(True, True),
            heads=2,
            cross_dim=32,
            groups=8,
            temporal=True,
            spatial_kind="spatial",
        ),
        knobs=Knobs(image_size=16, frames=4, steps=2, text_length=8),
    ),
    # heads=5 at 320 channels: head_dim 64, diffusers' UNet3DConditionModel default (5/10/20/20 heads).
    "paper": VideoConfig(
        text=CLIP_L,
        unet=UNetConfig(
            in_ch=3,
            out_ch=3,
            channels=(320, 640, 1280, 1280),
            layers=2,
            attn=(True, True, True, False),
            heads=5,
            cross_dim=768,
            temporal=True,
            spatial_kind="spatial",
        ),
        knobs=Knobs(image_size=64, frames=16, steps=50, text_length=77),
    ),
}


def build(cfg: VideoConfig):
    from tracehouse.collectors.models.hf import clip_text_model, unet3d

    return {"text_encoder": clip_text_model(cfg.text), "unet": unet3d(cfg.unet)}


def run(m, cfg: VideoConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    b, n, f, s = k.batch, (2 if cfg.guidance else 1), k.frames, k.image_size
    tokens = ctx.randint(cfg.text.vocab, b * n, k.text_length)
    with component("text_encoder"):
        text = m["text_encoder"](input_ids=tokens).last_hidden_state
    # The UNet repeats the text per frame itself: cross-attention memory (B*n*F, L, D).
    x = ctx.randn(b, cfg.unet.in_ch, f, s, s)
    denoise(m["unet"], x, text, k.steps, n)


SPEC = ModelSpec(
    name="make-a-video",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"text_encoder": (123_060_480, 0.01)},
    published_note="CLIP ViT-L/14 text encoder; the video UNet count is computed (no single published figure)",
    knob_names=("batch", "image_size", "frames", "steps", "text_length"),
)
