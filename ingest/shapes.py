"""Attention shapes from an op's recorded ``Input Dims``.

SDPA-family ops take q/k as [B, H, L, D]; flash-attn / xformers / the aten flash and
efficient forward ops take [B, L, H, D].  Attribution parses each distinct (op, dims) string once.
"""

from __future__ import annotations

import re

import orjson

from tracehouse.core.rules import BLHD_ATTENTION_PATTERN

SHAPE_COLUMNS = ("op_seq_q", "op_seq_kv", "op_batch", "op_heads", "op_head_dim")
_BLHD = re.compile(BLHD_ATTENTION_PATTERN, re.IGNORECASE)


def qk_shapes(op_name: str, input_dims: str | None) -> tuple[int | None, ...]:
    """(seq_q, seq_kv, batch, heads, head_dim) or Nones when the dims don't say."""
    none = (None,) * len(SHAPE_COLUMNS)
    if not input_dims:
        return none
    try:
        dims = orjson.loads(input_dims)
    except orjson.JSONDecodeError:
        return none
    if len(dims) < 2 or not all(isinstance(d, list) and len(d) == 4 for d in dims[:2]):
        return none
    q, k = dims[0], dims[1]
    if _BLHD.search(op_name):
        batch, seq_q, heads, head_dim = q
        seq_kv = k[1]
    else:
        batch, heads, seq_q, head_dim = q
        seq_kv = k[2]
    return seq_q, seq_kv, batch, heads, head_dim
