"""Library models (transformers / diffusers) under the trace store's annotation convention.

Models are built from configs with random initialisation (never ``from_pretrained``; the hub is
switched off in this process).  Attention runs through :func:`tracehouse.collectors.annotate.attention`:

* transformers: a custom attention function registered with ``AttentionInterface`` as
  ``tracehouse_sdpa`` (set as the config's ``_attn_implementation``).  No mask function is
  registered for it, so the models pass ``attention_mask=None`` and causality goes through SDPA's
  ``is_causal`` (what the flash kernels need).
* diffusers: an attention processor (``AttnProcessor2_0``'s computation) whose SDPA call is
  annotated; the attention type comes from a per-module callback (module path, cross or not).

Conv / linear / norm / embedding layers are annotated by forward hooks (``annotate.instrument``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from tracehouse.collectors.annotate import attention, component, instrument

ATTN_IMPLEMENTATION = "tracehouse_sdpa"


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


# ----------------------------------------------------------------------------- transformers


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def hf_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: ``(b, h, s, d)`` q/k/v in, ``(b, s, h, d)`` out.

    Type: ``causal`` (prefill / causal encoder), ``causal-decode`` (one query against a longer
    KV cache), ``self`` (bidirectional)."""
    rep = getattr(module, "num_key_value_groups", 1)
    key, value = _repeat_kv(key, rep), _repeat_kv(value, rep)
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", False))
    sq, skv = query.shape[2], key.shape[2]
    if causal:
        kind = "causal-decode" if sq == 1 and skv > 1 else "causal"
    else:
        kind = "self"
    use_causal = causal and sq > 1 and attention_mask is None
    if use_causal and skv > sq:  # prefill into a pre-sized cache: keep the flash-eligible square
        key, value = key[:, :, :sq], value[:, :, :sq]
    out = attention(
        query, key, value, kind, is_causal=use_causal, attn_mask=attention_mask, scale=scaling, seq_major=True
    )
    return out, None


@lru_cache(maxsize=1)
def transformers():
    """The ``transformers`` package, offline, with ``tracehouse_sdpa`` registered."""
    _offline()
    import transformers as tf

    tf.logging.set_verbosity_error()
    tf.AttentionInterface.register(ATTN_IMPLEMENTATION, hf_attention)
    return tf


def build_transformers(model_cls: Callable[..., nn.Module], config) -> nn.Module:
    """``model_cls(config)`` with our attention function, randomly initialised, hooks attached."""
    transformers()
    config._attn_implementation = ATTN_IMPLEMENTATION
    model = model_cls(config)
    return instrument(model)


# ----------------------------------------------------------------------------- diffusers


@lru_cache(maxsize=1)
def diffusers():
    _offline()
    import diffusers as df

    df.utils.logging.set_verbosity_error()
    return df


@lru_cache(maxsize=1)
def _processor_class():
    from diffusers.models.attention_processor import AttnProcessor2_0

    class AnnotatedAttnProcessor(AttnProcessor2_0):
        """``AttnProcessor2_0`` with its SDPA call inside an ``op=attention`` range."""

        def __init__(self, self_kind: str = "self", cross_kind: str = "cross") -> None:
            super().__init__()
            self.self_kind, self.cross_kind = self_kind, cross_kind

        def __call__(
            self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
        ):
            kind = self.self_kind if encoder_hidden_states is None else self.cross_kind
            residual = hidden_states
            if attn.spatial_norm is not None:
                hidden_states = attn.spatial_norm(hidden_states, temb)
            input_ndim = hidden_states.ndim
            if input_ndim == 4:
                batch_size, channel, height, width = hidden_states.shape
                hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
            batch_size, sequence_length, _ = (
                hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
            )
            if attention_mask is not None:
                attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
                attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
            if attn.group_norm is not None:
                hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
            query = attn.to_q(hidden_states)
            if encoder_hidden_states is None:
                encoder_hidden_states = hidden_states
            elif attn.norm_cross:
                encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
            key = attn.to_k(encoder_hidden_states)
            value = attn.to_v(encoder_hidden_states)
            head_dim = key.shape[-1] // attn.heads
            query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            if attn.norm_q is not None:
                query = attn.norm_q(query)
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            hidden_states = attention(
                query, key, value, kind, attn_mask=attention_mask, scale=getattr(attn, "scale", None)
            )
            hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
            hidden_states = hidden_states.to(query.dtype)
            hidden_states = attn.to_out[0](hidden_states)
            hidden_states = attn.to_out[1](hidden_states)
            if input_ndim == 4:
                hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
            if attn.residual_connection:
                hidden_states = hidden_states + residual
            return hidden_states / attn.rescale_output_factor

    return AnnotatedAttnProcessor


def annotate_diffusers(model: nn.Module, kinds: Callable[[str], tuple[str, str]] | None = None) -> nn.Module:
    """Swap every diffusers attention processor for the annotated one and hook conv/linear/norm
    layers.  ``kinds(module_path) -> (self_kind, cross_kind)``; default ``("self", "cross")``."""
    from diffusers.models.attention_processor import Attention

    proc = _processor_class()
    kinds = kinds or (lambda name: ("self", "cross"))
    for name, mod in model.named_modules():
        if isinstance(mod, Attention):
            mod.set_processor(proc(*kinds(name)))
    return instrument(model)


# ----------------------------------------------------------------------------- builders


def clip_text_model(c) -> nn.Module:
    """transformers ``CLIPTextModel`` for a ``clip_text`` layout (``TransformerConfig``)."""
    tf = transformers()
    cfg = tf.CLIPTextConfig(
        vocab_size=c.vocab,
        hidden_size=c.dim,
        intermediate_size=c.ff_inner,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        max_position_embeddings=c.max_positions,
        hidden_act="quick_gelu",
        projection_dim=c.dim,
    )
    return build_transformers(tf.CLIPTextModel, cfg)


def _unet_blocks(u, dims: int) -> dict:
    down = tuple(f"CrossAttnDownBlock{dims}D" if a else f"DownBlock{dims}D" for a in u.attn)
    up = tuple(f"CrossAttnUpBlock{dims}D" if a else f"UpBlock{dims}D" for a in reversed(u.attn))
    return dict(
        in_channels=u.in_ch,
        out_channels=u.out_ch,
        block_out_channels=tuple(u.channels),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=u.layers,
        cross_attention_dim=u.cross_dim,
        attention_head_dim=u.heads,
        norm_num_groups=u.groups,
    )


def unet2d(u) -> nn.Module:
    """diffusers ``UNet2DConditionModel`` for a ``UNetConfig`` (``heads``: heads per level, as
    diffusers' legacy ``attention_head_dim`` means)."""
    return annotate_diffusers(diffusers().UNet2DConditionModel(**_unet_blocks(u, 2)))


def _video_kinds(name: str) -> tuple[str, str]:
    if "temp_attentions" in name or name.startswith("transformer_in"):
        return "temporal", "temporal"
    return "spatial", "cross"


def unet3d(u) -> nn.Module:
    """diffusers ``UNet3DConditionModel``: spatial attention over (B*F, H*W), temporal attention
    (``temp_attentions``, ``transformer_in``) over (B*H*W, F).

    diffusers' 3-D blocks read ``attention_head_dim`` as the head *dimension* (heads per level =
    channels / head_dim; its default 64 is ModelScope's layout), so ``u.heads`` is taken as the
    head count at the first level: head_dim = channels[0] // heads."""
    kw = _unet_blocks(u, 3)
    kw["attention_head_dim"] = u.channels[0] // u.heads
    return annotate_diffusers(diffusers().UNet3DConditionModel(**kw), _video_kinds)


class KLDecoder(nn.Module):
    """The decoding half of diffusers' ``AutoencoderKL``: ``post_quant_conv`` then ``decoder``
    (what ``AutoencoderKL.decode`` runs), taken from a full ``AutoencoderKL``."""

    def __init__(self, vae: Any) -> None:  # a diffusers AutoencoderKL
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv
        self.decoder = vae.decoder
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


def kl_decoder(d) -> nn.Module:
    """``AutoencoderKL`` decoder for a ``DecoderConfig``."""
    n = len(d.channels)
    vae = diffusers().AutoencoderKL(
        in_channels=d.out_ch,
        out_channels=d.out_ch,
        latent_channels=d.latent_ch,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(d.channels),
        layers_per_block=d.layers,
        norm_num_groups=d.groups,
        use_post_quant_conv=d.post_quant,
        mid_block_add_attention=d.mid_attn,
    )
    return annotate_diffusers(KLDecoder(vae))


def denoise(unet: nn.Module, x: torch.Tensor, text: torch.Tensor, steps: int, guided: int) -> torch.Tensor:
    """The diffusion loop shared by the image and video UNets: ``steps`` UNet passes, each a
    ``unet`` component range with its step; ``guided`` = 2 runs classifier-free guidance
    (unconditional and conditional halves in one batch)."""
    for step in range(steps):
        t = torch.full((x.shape[0] * guided,), 999 - step * (1000 // max(steps, 1)), device=x.device)
        with component("unet", step):
            eps = unet(torch.cat([x] * guided), t, encoder_hidden_states=text).sample
        if guided == 2:
            e_u, e_c = eps.chunk(2)
            eps = e_u + 7.5 * (e_c - e_u)
        x = x - 0.02 * eps
    return x
