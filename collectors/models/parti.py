"""Parti: encoder-decoder transformer predicting ViT-VQGAN image tokens autoregressively.

Text encoder (bidirectional) -> decoder: one BOS prefill step, then one decode step per image
token (self ``causal-decode`` with a KV cache, ``cross`` to the text) -> VQ decoder (conv).
Image tokens = (image_size / 8)^2 (paper: 256x256 -> 32x32 = 1024 tokens).
Paper scale: Parti-350M (Yu et al. 2022: 12+12 layers, 1024 wide, 16 heads, 4096 MLP);
``20b`` scale: 16+64 layers, 4096 wide, 64 heads, 16384 MLP.  Own module.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracehouse.collectors.annotate import component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerConfig
from tracehouse.collectors.models.llama import generate
from tracehouse.collectors.models.muse import VQDecoder
from tracehouse.collectors.models.unet import DecoderConfig


@dataclass(frozen=True)
class PartiConfig:
    encoder: TransformerConfig
    decoder: TransformerConfig
    vq: DecoderConfig
    codebook: int
    knobs: Knobs


def parti(
    dim, enc_layers, dec_layers, heads, ff, text_vocab=16000, codebook=8192, text_pos=128, tokens=1024, vq=None
) -> PartiConfig:
    return PartiConfig(
        encoder=TransformerConfig(
            dim=dim, layers=enc_layers, heads=heads, ff_inner=ff, vocab=text_vocab, max_positions=text_pos
        ),
        decoder=TransformerConfig(
            dim=dim,
            layers=dec_layers,
            heads=heads,
            ff_inner=ff,
            vocab=codebook + 1,
            max_positions=tokens + 1,
            cross_dim=dim,
            lm_head=codebook,
        ),
        vq=vq or DecoderConfig(latent_ch=32, channels=(128, 128, 256, 256), layers=2, post_quant=False),
        codebook=codebook,
        knobs=Knobs(image_size=256, text_length=text_pos),
    )


CONFIGS = {
    "tiny": PartiConfig(
        **{
            **parti(
                32,
                1,
                2,
                2,
                64,
                text_vocab=1000,
                codebook=256,
                text_pos=64,
                tokens=64,
                vq=DecoderConfig(latent_ch=16, channels=(16, 16, 32, 32), layers=1, groups=8, post_quant=False),
            ).__dict__,
            "knobs": Knobs(image_size=32, text_length=8),
        }
    ),
    "paper": parti(1024, 12, 12, 16, 4096),
    "20b": parti(4096, 16, 64, 64, 16384),
}


def build(cfg: PartiConfig):
    return {
        "text_encoder": Transformer(cfg.encoder),
        "transformer": Transformer(cfg.decoder),
        "vq_decoder": VQDecoder(cfg.vq, cfg.codebook),
    }


def run(m, cfg: PartiConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    side = k.image_size // 8
    n_tokens = side * side
    if n_tokens + 1 > cfg.decoder.max_positions:
        raise ValueError(
            f"parti: image_size {k.image_size} needs {n_tokens} tokens; config has {cfg.decoder.max_positions - 1}"
        )
    text_tokens = ctx.randint(cfg.encoder.vocab, k.batch, k.text_length)
    with component("text_encoder"):
        text = m["text_encoder"](text_tokens, kind="self")
    bos = ctx.randint(1, k.batch, 1) + cfg.codebook  # the extra row is BOS
    image = generate(m["transformer"], bos, n_tokens, context=text)
    with component("vq_decoder"):
        m["vq_decoder"](image, side)
    ctx.notes["image_tokens"] = n_tokens
    ctx.meta["decode_tokens"] = n_tokens


SPEC = ModelSpec(
    name="parti",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"text_encoder+transformer": (350_000_000, 0.15)},
    published_note="Parti-350M (encoder + decoder; the ViT-VQGAN is counted apart)",
    knob_names=("batch", "image_size", "text_length"),
)
