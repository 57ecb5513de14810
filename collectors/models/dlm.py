"""Diffusion LM (LLaDA-style masked diffusion): a bidirectional LLaMA-architecture transformer
that starts from a fully masked answer of ``decode_tokens`` tokens after the prompt and unmasks it
over ``steps`` denoising steps, each a full forward over prompt + answer (``self`` attention,
seq_q = seq_kv = text_length + decode_tokens).  Compare with ``llama`` (autoregressive) for the
same prompt and answer length.
Paper scale: LLaDA-8B (Nie et al. 2025: 32 x 4096, 32 heads, 12288 SwiGLU, vocab 126464).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerConfig
from tracehouse.collectors.models.llama import llama_config
from tracehouse.collectors.models.text import parallel_decode


@dataclass(frozen=True)
class DLMConfig:
    model: TransformerConfig
    knobs: Knobs


CONFIGS = {
    "tiny": DLMConfig(llama_config(64, 2, 4, 172, vocab=512), Knobs(text_length=16, decode_tokens=8, steps=4)),
    "paper": DLMConfig(
        llama_config(4096, 32, 32, 12288, vocab=126464), Knobs(text_length=512, decode_tokens=128, steps=128)
    ),
}


def build(cfg: DLMConfig):
    return {"transformer": Transformer(cfg.model)}


def run(m, cfg: DLMConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    vocab = cfg.model.vocab - 1  # the last id is the mask token
    prompt = ctx.randint(vocab, k.batch, k.text_length)
    parallel_decode(m["transformer"], ctx, k.decode_tokens, vocab, k.steps, None, batch=k.batch, prefix=prompt)
    ctx.notes["sequence_length"] = k.text_length + k.decode_tokens


SPEC = ModelSpec(
    name="diffusion-lm",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"transformer": (8_020_000_000, 0.03)},
    published_note="LLaDA-8B (8.02B)",
    knob_names=("batch", "decode_tokens", "steps", "text_length"),
)
