"""Stable Diffusion (latent diffusion): CLIP text encoder -> UNet x N steps (CFG) -> VAE decoder.

Paper scale is SD-1.5: CLIP ViT-L/14 text encoder (123M), UNet2DConditionModel (860M),
AutoencoderKL decoder (49M).  All three are the library implementations (transformers
``CLIPTextModel``, diffusers ``UNet2DConditionModel`` and ``AutoencoderKL``'s decoder), built from
configs with random weights; the dataclass configs below describe their layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracehouse.collectors.annotate import component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import TransformerConfig
from tracehouse.collectors.models.hf import denoise
from tracehouse.collectors.models.text import clip_text
from tracehouse.collectors.models.unet import DecoderConfig, UNetConfig


@dataclass(frozen=True)
class SDConfig:
    text: TransformerConfig
    unet: UNetConfig
    vae: DecoderConfig
    knobs: Knobs
    guidance: bool = True  # classifier-free guidance: the UNet batch is 2B

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.channels) - 1)


CONFIGS = {
    "tiny": SDConfig(
        text=clip_text(32, 2, 2, vocab=1000),
        unet=UNetConfig(
            in_ch=4,
            out_ch=4,
            channels=(32, 64, 64),
            layers=1,
            attn=(True, True, False),
            heads=2,
            cross_dim=32,
            groups=8,
        ),
        vae=DecoderConfig(channels=(16, 16, 32, 32), layers=1, groups=8),
        knobs=Knobs(image_size=64, steps=2, text_length=8),
    ),
    "paper": SDConfig(
        text=clip_text(768, 12, 12),
        unet=UNetConfig(),  # SD-1.5: (320, 640, 1280, 1280), 2 layers, 8 heads, cross 768
        vae=DecoderConfig(),
        knobs=Knobs(image_size=512, steps=50, text_length=77),
    ),
}


def build(cfg: SDConfig):
    from tracehouse.collectors.models.hf import clip_text_model, kl_decoder, unet2d

    return {"text_encoder": clip_text_model(cfg.text), "unet": unet2d(cfg.unet), "decoder": kl_decoder(cfg.vae)}


def run(m, cfg: SDConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    b, n = k.batch, (2 if cfg.guidance else 1)
    tokens = ctx.randint(cfg.text.vocab, b * n, k.text_length)
    with component("text_encoder"):
        text = m["text_encoder"](input_ids=tokens).last_hidden_state
    hl = k.image_size // cfg.latent_factor
    x = ctx.randn(b, cfg.unet.in_ch, hl, hl)
    x = denoise(m["unet"], x, text, k.steps, n)
    with component("decoder"):
        m["decoder"](x / 0.18215)
    ctx.notes["latent_size"] = hl


SPEC = ModelSpec(
    name="stable-diffusion",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"text_encoder": (123_060_480, 0.01), "unet": (859_520_964, 0.01), "decoder": (49_490_199, 0.01)},
    published_note="SD-1.5 (diffusers): CLIP ViT-L/14 text 123.06M, UNet 859.52M, VAE decoder 49.49M",
    knob_names=("batch", "image_size", "steps", "text_length"),
)
