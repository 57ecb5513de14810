"""LLaMA-2-style decoder: prefill of the prompt, then autoregressive decode with a KV cache.

Prefill attention is ``causal`` with seq_q = seq_kv = prompt length; decode step ``i`` (0-based)
is ``causal-decode`` with seq_q = 1 and seq_kv = prompt + i + 1 (the cache grows by one per step).
Paper scale is LLaMA-2-7B (6.74B parameters).  The model is transformers' ``LlamaForCausalLM``
built from a ``LlamaConfig`` (random weights), its attention routed through the annotated SDPA
(``models.hf``).  :func:`generate` (own ``Transformer``) stays for the encoder-decoder Parti.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tracehouse.collectors.annotate import component
from tracehouse.collectors.models.base import Knobs, ModelSpec, RunContext
from tracehouse.collectors.models.blocks import Transformer, TransformerConfig


def llama_config(
    dim: int, layers: int, heads: int, ff: int, vocab: int = 32000, kv_heads: int | None = None
) -> TransformerConfig:
    return TransformerConfig(
        dim=dim,
        layers=layers,
        heads=heads,
        ff_inner=ff,
        vocab=vocab,
        kv_heads=kv_heads,
        act="swiglu",
        norm="rms",
        rope=True,
        qkv_bias=False,
        out_bias=False,
        ff_bias=False,
        lm_head=vocab,
    )


@dataclass(frozen=True)
class LlamaConfig:
    model: TransformerConfig
    knobs: Knobs


CONFIGS = {
    "tiny": LlamaConfig(llama_config(64, 2, 4, 172, vocab=512, kv_heads=2), Knobs(text_length=16, decode_tokens=8)),
    "paper": LlamaConfig(llama_config(4096, 32, 32, 11008), Knobs(text_length=512, decode_tokens=128)),
}


def hf_config(c: TransformerConfig):
    """transformers ``LlamaConfig`` for one of our LLaMA layouts."""
    from tracehouse.collectors.models.hf import transformers

    tf = transformers()
    return tf.LlamaConfig(
        vocab_size=c.vocab,
        hidden_size=c.dim,
        intermediate_size=c.ff_inner,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        num_key_value_heads=c.kv_heads or c.heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=c.tie_head,
        attention_bias=c.qkv_bias,
        mlp_bias=c.ff_bias,
        use_cache=True,
    )


def build(cfg: LlamaConfig):
    from tracehouse.collectors.models.hf import build_transformers, transformers

    return {"transformer": build_transformers(transformers().LlamaForCausalLM, hf_config(cfg.model))}


def hf_generate(model, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy generation with transformers' KV cache: one prefill call, then one call per token."""
    with component("prefill"):
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    tok = out.logits[:, -1:].argmax(-1)
    toks = [tok]
    for step in range(n_new - 1):
        with component("decode", step):
            out = model(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        toks.append(tok)
    return torch.cat(toks, dim=1)


def generate(
    model: Transformer,
    prompt: torch.Tensor,
    n_new: int,
    *,
    kind_prefill: str = "causal",
    kind_decode: str = "causal-decode",
    context: torch.Tensor | None = None,
    prefill_component: str = "prefill",
    decode_component: str = "decode",
) -> torch.Tensor:
    """Greedy KV-cache generation; ``context`` (cross-attention memory) for encoder-decoders."""
    caches: list[dict[str, Any]] = [{} for _ in model.blocks]
    with component(prefill_component):
        logits = model(prompt, context, kind=kind_prefill, is_causal=True, caches=caches)
    tok = logits[:, -1:].argmax(-1)
    out = [tok]
    pos = prompt.shape[1]
    for step in range(n_new - 1):
        with component(decode_component, step):
            logits = model(tok, context, kind=kind_decode, caches=caches, start=pos)
        tok = logits[:, -1:].argmax(-1)
        out.append(tok)
        pos += 1
    return torch.cat(out, dim=1)


def run(m, cfg: LlamaConfig, ctx: RunContext) -> None:
    k = ctx.knobs.required()
    prompt = ctx.randint(cfg.model.vocab, k.batch, k.text_length)
    # decode_tokens decode steps after the prefill (the prefill yields the first new token too).
    hf_generate(m["transformer"], prompt, k.decode_tokens + 1)
    ctx.notes["prompt_tokens"] = k.text_length


SPEC = ModelSpec(
    name="llama",
    configs=CONFIGS,
    build=build,
    run=run,
    published={"transformer": (6_738_415_616, 0.01)},
    published_note="LLaMA-2-7B (Touvron et al. 2023; HF Llama-2-7b: 6,738,415,616)",
    knob_names=("batch", "decode_tokens", "text_length"),
)
