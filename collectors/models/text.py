"""Text encoders used by the text-to-image/video models, and MaskGIT-style parallel decoding."""

from __future__ import annotations

import math

import torch

from tracehouse.collectors.annotate import component
from tracehouse.collectors.models.base import RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerConfig


def clip_text(dim: int, layers: int, heads: int, vocab: int = 49408, positions: int = 77) -> TransformerConfig:
    """CLIP text transformer (causal mask, quick-GELU MLP, learned positions)."""
    return TransformerConfig(
        dim=dim,
        layers=layers,
        heads=heads,
        ff_inner=4 * dim,
        vocab=vocab,
        max_positions=positions,
        act="quick_gelu",
        norm="layer",
    )


def t5_encoder(dim: int, layers: int, heads: int, ff: int, head_dim: int = 64, vocab: int = 32128) -> TransformerConfig:
    """T5 v1.1 encoder (RMSNorm, gated-GELU, no biases).  The relative position bias table
    (32 x heads, a few thousand parameters) is left out."""
    return TransformerConfig(
        dim=dim,
        layers=layers,
        heads=heads,
        head_dim=head_dim,
        ff_inner=ff,
        vocab=vocab,
        act="gated-gelu",
        norm="rms",
        qkv_bias=False,
        out_bias=False,
        ff_bias=False,
    )


T5_XXL = t5_encoder(4096, 24, 64, 10240)
T5_TINY = t5_encoder(32, 2, 2, 64, head_dim=16, vocab=1000)
CLIP_L = clip_text(768, 12, 12)


def encode_text(model: Transformer, ctx: RunContext, batch: int, causal: bool = False) -> torch.Tensor:
    tokens = ctx.randint(model.cfg.vocab, batch, ctx.knobs.required().text_length)
    with component("text_encoder"):
        return model(tokens, kind="causal" if causal else "self", is_causal=causal)


def parallel_decode(
    model: Transformer,
    ctx: RunContext,
    n_tokens: int,
    codebook: int,
    steps: int,
    context: torch.Tensor | None,
    *,
    batch: int,
    comp: str = "transformer",
    prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """MaskGIT / Muse / Phenaki / LLaDA decoding: every step runs the bidirectional transformer
    over the whole sequence and unmasks the most confident tokens on a cosine schedule.

    ``prefix``: fixed tokens prepended (a prompt, for the diffusion LM); only the rest is decoded.
    """
    mask_id = codebook  # the embedding table has codebook + 1 rows
    tokens = torch.full((batch, n_tokens), mask_id, dtype=torch.long, device=ctx.device)
    p = 0 if prefix is None else prefix.shape[1]
    remaining = n_tokens  # tracked on the host: no device sync per step
    for step in range(steps):
        seq = tokens if prefix is None else torch.cat([prefix, tokens], dim=1)
        with component(comp, step):
            logits = model(seq, context, kind="self")[:, p:, :codebook]
        conf, pred = logits.float().softmax(-1).max(-1)
        masked = tokens == mask_id
        conf = torch.where(masked, conf, torch.full_like(conf, -1.0))
        still = int(n_tokens * math.cos(math.pi / 2 * (step + 1) / steps))
        n_unmask = remaining if step == steps - 1 else min(remaining, max(remaining - still, 1))
        if n_unmask > 0:
            idx = conf.topk(n_unmask, dim=-1).indices
            sel = torch.zeros_like(masked).scatter_(1, idx, True) & masked
            tokens = torch.where(sel, pred, tokens)
            remaining -= n_unmask
    return tokens
