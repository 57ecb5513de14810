"""Analytic FLOPs and ideal DRAM bytes of GEMM and convolution ops from their recorded shapes.

``Input Dims`` gives the tensors; ``Concrete Inputs`` (recent PyTorch) gives a convolution's
stride, padding, dilation and groups; ``Input type`` the element type.  An op whose
arguments are not all there gets ``None``: an unknown cost, never a guessed one.
Attention's cost comes from its own shapes (``analyses/attention.py``).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

ELEMENT_BYTES = {
    "float": 4,
    "c10::Half": 2,
    "c10::BFloat16": 2,
    "double": 8,
    "c10::Float8_e4m3fn": 1,
    "signed char": 1,
    "int": 4,
    "long int": 8,
}
Cost = tuple[int, int] | tuple[None, None]
_UNKNOWN: Cost = (None, None)


def _json(text: str | None) -> list[Any] | None:
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _ints(text: object) -> list[int] | None:
    """``"[1, 1]"`` (how Concrete Inputs spells int lists) → ``[1, 1]``."""
    if not isinstance(text, str) or not text.startswith("["):
        return None
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return values if all(isinstance(v, int) for v in values) else None


def gemm_cost(name: str, dims: list[Any], elem: int) -> Cost:
    """2·M·K·N per (broadcast) batch; bytes = A + B + C once each."""
    op = name.removeprefix("aten::")
    if op in ("addmm", "baddbmm", "_addmm_activation"):
        dims = dims[1:3]
    elif op == "linear":
        if len(dims) < 2 or len(dims[1]) != 2:
            return _UNKNOWN
        x, (n, k) = dims[0], dims[1]
        if not x or x[-1] != k:
            return _UNKNOWN
        m = math.prod(x[:-1])
        return 2 * m * k * n, elem * (m * k + n * k + m * n)
    elif op not in ("mm", "bmm", "matmul"):
        return _UNKNOWN
    if len(dims) < 2 or len(dims[0]) < 2 or len(dims[1]) < 2 or dims[0][-1] != dims[1][-2]:
        return _UNKNOWN
    a, b = dims[0], dims[1]
    batch = math.prod(a[:-2]) if len(a) > 2 else math.prod(b[:-2])
    m, k, n = a[-2], a[-1], b[-1]
    return 2 * batch * m * k * n, elem * batch * (m * k + k * n + m * n)


def conv_cost(name: str, dims: list[Any], concrete: list[Any] | None, elem: int) -> Cost:
    """2·N·O·prod(out)·(C/g)·prod(kernel); bytes = input + weight + output once each."""
    op = name.removeprefix("aten::")
    if op not in ("conv1d", "conv2d", "conv3d", "convolution", "_convolution") or not concrete:
        return _UNKNOWN
    if len(dims) < 2 or len(dims[0]) < 3 or len(dims[0]) != len(dims[1]):
        return _UNKNOWN
    x, w = dims[0], dims[1]
    stride, padding, dilation = (_ints(concrete[i]) if len(concrete) > i else None for i in (3, 4, 5))
    transposed = op in ("convolution", "_convolution") and len(concrete) > 6 and concrete[6] == "True"
    if stride is None or padding is None or dilation is None or transposed:
        return _UNKNOWN
    spatial = len(x) - 2
    out = [
        (x[2 + i] + 2 * padding[i % len(padding)] - dilation[i % len(dilation)] * (w[2 + i] - 1) - 1)
        // stride[i % len(stride)]
        + 1
        for i in range(spatial)
    ]
    if min(out) <= 0:
        return _UNKNOWN
    n, o = x[0], w[0]
    flops = 2 * n * o * math.prod(out) * w[1] * math.prod(w[2:])
    return flops, elem * (math.prod(x) + math.prod(w) + n * o * math.prod(out))


def op_cost(
    name: str, input_dims: str | None, concrete_inputs: str | None, input_types: str | None, operator: str
) -> Cost:
    dims = _json(input_dims)
    if not dims:
        return _UNKNOWN
    types = _json(input_types) or []
    elem = ELEMENT_BYTES.get(types[0] if types and isinstance(types[0], str) else "", 4)
    if operator == "linear":
        return gemm_cost(name, dims, elem)
    if operator == "conv":
        return conv_cost(name, dims, _json(concrete_inputs), elem)
    return _UNKNOWN
