"""Muse: masked-token parallel decoding.  T5 encoder -> base transformer over a (image/32)^2 token
grid for N parallel-decoding steps -> super-resolution transformer over a (image/8)^2 grid whose
cross-attention memory is the text plus the encoded low-resolution tokens -> VQGAN decoder.

Paper scale (Chang et al. 2023): T5-XXL encoder, Muse-3B base transformer (48 x 2048, 8192 MLP),
SR transformer ~900M (32 x 1024 plus an 8-layer low-res token encoder), 512x512 output,
24 base + 8 SR steps.  Own modules (diffusers ``UVit2DModel`` is the amused variant, not Muse-3B).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from tracehouse.collectors.annotate import AEmbedding, ALinear, component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerConfig
from tracehouse.collectors.models.text import T5_TINY, T5_XXL, encode_text, parallel_decode
from tracehouse.collectors.models.unet import ConvDecoder, DecoderConfig


@dataclass(frozen=True)
class MuseConfig:
    text: TransformerConfig
    base: TransformerConfig
    sr: TransformerConfig
    lowres: TransformerConfig  # encodes the base tokens for the SR transformer's memory
    vq: DecoderConfig
    codebook: int
    base_div: int  # image_size / base grid side
    sr_div: int  # image_size / SR grid side (= VQ decoder factor)
    sr_steps: int
    knobs: Knobs
    guidance: bool = True


def token_transformer(dim, layers, heads, ff, codebook, positions, cross_dim) -> TransformerConfig:
    return TransformerConfig(
        dim=dim,
        layers=layers,
        heads=heads,
        ff_inner=ff,
        vocab=codebook + 1,
        max_positions=positions,
        cross_dim=cross_dim,
        lm_head=codebook,
        act="gelu",
        norm="layer",
    )


CONFIGS = {
    "tiny": MuseConfig(
        text=T5_TINY,
        base=token_transformer(32, 2, 2, 64, 256, 16, 32),
        sr=token_transformer(32, 2, 2, 64, 256, 64, 32),
        lowres=TransformerConfig(dim=32, layers=1, heads=2, ff_inner=64, vocab=256, max_positions=16),
        vq=DecoderConfig(latent_ch=16, channels=(16, 16, 32, 32), layers=1, groups=8, post_quant=False),
        codebook=256,
        base_div=16,
        sr_div=8,
        sr_steps=2,
        knobs=Knobs(image_size=64, steps=2, text_length=8),
    ),
    "paper": MuseConfig(
        text=T5_XXL,
        base=token_transformer(2048, 48, 32, 8192, 8192, 256, 4096),
        sr=token_transformer(1024, 32, 16, 4096, 8192, 4096, 4096),
        lowres=TransformerConfig(dim=1024, layers=8, heads=16, ff_inner=4096, vocab=8192, max_positions=256),
        vq=DecoderConfig(latent_ch=256, channels=(128, 128, 256, 512), layers=2, post_quant=False),
        codebook=8192,
        base_div=32,
        sr_div=8,
        sr_steps=8,
        knobs=Knobs(image_size=512, steps=24, text_length=77),
    ),
}


class LowresEncoder(torch.nn.Module):
    def __init__(self, cfg: TransformerConfig, out_dim: int) -> None:
        super().__init__()
        self.enc = Transformer(cfg)
        self.proj = ALinear(cfg.dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.enc(tokens, kind="self"))


class VQDecoder(torch.nn.Module):
    """Codebook lookup then the conv decoder (a VQGAN decoder)."""

    def __init__(self, cfg: DecoderConfig, codebook: int) -> None:
        super().__init__()
        self.codes = AEmbedding(codebook, cfg.latent_ch)
        self.dec = ConvDecoder(cfg)

    def forward(self, tokens: torch.Tensor, side: int) -> torch.Tensor:
        z = self.codes(tokens).view(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)
        return self.dec(z)


def build(cfg: MuseConfig):
    return {
        "text_encoder": Transformer(cfg.text),
        "transformer": Transformer(cfg.base),
        "super_resolution": Transformer(cfg.sr),
        "lowres_encoder": LowresEncoder(cfg.lowres, cfg.text.dim),
        "vq_decoder": VQDecoder(cfg.vq, cfg.codebook),
    }


def _positions(cfg: TransformerConfig, n: int) -> TransformerConfig:
    return cfg if cfg.max_positions >= n else replace(cfg, max_positions=n)


def run(m, cfg: MuseConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    b, n = k.batch, (2 if cfg.guidance else 1)
    gb, gs = k.image_size // cfg.base_div, k.image_size // cfg.sr_div
    if gb * gb > cfg.base.max_positions or gs * gs > cfg.sr.max_positions:
        raise ValueError(f"muse: image_size {k.image_size} needs more positions than the config has")
    text = encode_text(m["text_encoder"], ctx, b * n)
    base = parallel_decode(m["transformer"], ctx, gb * gb, cfg.codebook, k.steps, text, batch=b * n)
    with component("super_resolution"):
        low = m["lowres_encoder"](base)
    memory = torch.cat([text, low], dim=1)
    sr = parallel_decode(
        m["super_resolution"], ctx, gs * gs, cfg.codebook, cfg.sr_steps, memory, batch=b * n, comp="super_resolution"
    )
    with component("vq_decoder"):
        m["vq_decoder"](sr[:b], gs)
    ctx.notes.update(base_tokens=gb * gb, sr_tokens=gs * gs, sr_steps=cfg.sr_steps)


SPEC = ModelSpec(
    name="muse",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"text_encoder": (4_762_310_656, 0.01), "transformer": (3_000_000_000, 0.25)},
    published_note="Muse-3B base transformer (T5-XXL text encoder 4.76B); SR ~900M",
    knob_names=("batch", "image_size", "steps", "text_length"),
)
