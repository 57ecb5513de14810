"""Phenaki: a MaskGIT transformer over space-time video tokens, then the C-ViViT decoder.

Tokens: ``1 + (frames - 1) // 2`` temporal positions (the first frame alone, then pairs of
frames) times ``(image_size / 8)^2`` spatial patches (paper: 11 frames of 128x128 -> 6 x 256 =
1536 tokens).  The bidirectional transformer attends over all of them (``self``) with
cross-attention to the text, for N parallel-decoding steps.  The C-ViViT decoder alternates
spatial blocks over ``(B*T, h*w)`` (``spatial``) and causal temporal blocks over ``(B*h*w, T)``
(``temporal``), then un-patches to pixels.
Paper scale (Villegas et al. 2022): T5-XXL text, 1.8B MaskGIT transformer (24 x 2048, 8192
MLP), C-ViViT 4+4 layers of 512.  Own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tracehouse.collectors.annotate import AEmbedding, ALinear, component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerBlock, TransformerConfig, make_norm
from tracehouse.collectors.models.text import T5_TINY, T5_XXL, encode_text, parallel_decode


@dataclass(frozen=True)
class CViViTConfig:
    dim: int
    layers: int  # spatial + temporal pairs
    heads: int
    ff: int
    patch: int = 8


@dataclass(frozen=True)
class PhenakiConfig:
    text: TransformerConfig
    maskgit: TransformerConfig
    cvivit: CViViTConfig
    codebook: int
    knobs: Knobs
    guidance: bool = True


CONFIGS = {
    "tiny": PhenakiConfig(
        text=T5_TINY,
        maskgit=TransformerConfig(
            dim=32, layers=2, heads=2, ff_inner=64, vocab=257, max_positions=256, cross_dim=32, lm_head=256
        ),
        cvivit=CViViTConfig(dim=32, layers=1, heads=2, ff=64),
        codebook=256,
        knobs=Knobs(image_size=32, frames=5, steps=2, text_length=8),
    ),
    "paper": PhenakiConfig(
        text=T5_XXL,
        maskgit=TransformerConfig(
            dim=2048,
            layers=24,
            heads=16,
            ff_inner=8192,
            vocab=8193,
            max_positions=6 * 256,
            cross_dim=4096,
            lm_head=8192,
        ),
        cvivit=CViViTConfig(dim=512, layers=4, heads=8, ff=2048),
        codebook=8192,
        knobs=Knobs(image_size=128, frames=11, steps=12, text_length=77),
    ),
}


class CViViTDecoder(nn.Module):
    def __init__(self, cfg: CViViTConfig, codebook: int) -> None:
        super().__init__()
        self.codes = AEmbedding(codebook, cfg.dim)
        hd = cfg.dim // cfg.heads
        self.spatial = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, hd, cfg.ff) for _ in range(cfg.layers))
        self.temporal = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, hd, cfg.ff) for _ in range(cfg.layers))
        self.norm = make_norm("layer", cfg.dim)
        self.first = ALinear(cfg.dim, cfg.patch * cfg.patch * 3)
        self.rest = ALinear(cfg.dim, 2 * cfg.patch * cfg.patch * 3)

    def forward(self, tokens: torch.Tensor, t: int, side: int) -> torch.Tensor:
        b = tokens.shape[0]
        x = self.codes(tokens).view(b, t, side * side, -1)
        d = x.shape[-1]
        for sp, tm in zip(self.spatial, self.temporal, strict=True):
            x = sp(x.reshape(b * t, side * side, d), kind="spatial").view(b, t, side * side, d)
            y = x.permute(0, 2, 1, 3).reshape(b * side * side, t, d)
            y = tm(y, kind="temporal", is_causal=True)
            x = y.view(b, side * side, t, d).permute(0, 2, 1, 3)
        x = self.norm(x)
        hw = side * side
        first = self.first(x[:, :1]).reshape(b, 1, hw, -1)
        rest = self.rest(x[:, 1:]).reshape(b, t - 1, hw, 2, -1).transpose(2, 3).reshape(b, 2 * (t - 1), hw, -1)
        return torch.cat([first, rest], dim=1)  # (B, frames, patches, patch*patch*3)


def build(cfg: PhenakiConfig):
    return {
        "text_encoder": Transformer(cfg.text),
        "transformer": Transformer(cfg.maskgit),
        "vq_decoder": CViViTDecoder(cfg.cvivit, cfg.codebook),
    }


def token_grid(frames: int, image_size: int, patch: int = 8) -> tuple[int, int]:
    return 1 + (frames - 1) // 2, image_size // patch


def run(m, cfg: PhenakiConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    b, n = k.batch, (2 if cfg.guidance else 1)
    t, side = token_grid(k.frames, k.image_size, cfg.cvivit.patch)
    n_tokens = t * side * side
    if n_tokens > cfg.maskgit.max_positions:
        raise ValueError(f"phenaki: {n_tokens} tokens exceed the config's {cfg.maskgit.max_positions} positions")
    text = encode_text(m["text_encoder"], ctx, b * n)
    tokens = parallel_decode(m["transformer"], ctx, n_tokens, cfg.codebook, k.steps, text, batch=b * n)
    with component("vq_decoder"):
        m["vq_decoder"](tokens[:b], t, side)
    ctx.notes.update(video_tokens=n_tokens, token_frames=t, token_side=side)


SPEC = ModelSpec(
    name="phenaki",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"transformer": (1_800_000_000, 0.1), "text_encoder": (4_762_310_656, 0.01)},
    published_note="Phenaki: 1.8B MaskGIT transformer; T5-XXL text encoder",
    knob_names=("batch", "image_size", "frames", "steps", "text_length"),
)
