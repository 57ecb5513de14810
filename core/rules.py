"""Every attribution rule, as data.

Three sources, most specific first (see ``attribution.py`` for how they combine):

1. collector annotations (``annotation.py``) — say operator, attention type, seq lens outright;
2. ``OP_RULES`` — the aten / autograd op that encloses the launch (highest priority among all
   enclosing ops wins, so the ``bmm`` inside ``scaled_dot_product_attention`` is attention);
3. ``NAME_RULES`` — the kernel's base name (``kernel_names.py``: no template or parameter
   lists), first match wins; a lab's own rules (``user_rules.py``) come first.

Authoritative name rules override the op: an NCCL kernel is communication whichever op launched
it.  Patterns are case-insensitive regular expressions (Rust regex syntax, applied by polars to
the distinct names only).  Every rule has an id, stored with the kernels it decided, so
``tracehouse explain`` can say why a kernel got its class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from tracehouse.core.kernel_names import rule_name

# (operator, priority, pattern on the enclosing cpu op's name)
OP_RULES: tuple[tuple[str, int, str], ...] = (
    (
        "attention",
        100,
        (
            r"scaled_dot_product|flash_attn|flash_attention|efficient_attention|"
            r"memory_efficient_attention|xformers|fmha|multi_head_attention|"
            r"_native_multi_head_attention|attention"
        ),
    ),
    (
        "communication",
        95,
        # No ``broadcast``: aten::broadcast_tensors is a shape op, not a collective (c10d's
        # and NCCL's broadcasts are caught by their prefixes).
        (
            r"^nccl:|^gloo:|^c10d::|record_param_comms|all_reduce|allreduce|all_gather|"
            r"allgather|reduce_scatter|alltoall|all_to_all"
        ),
    ),
    ("conv", 90, r"conv|cudnn_convolution|mkldnn_convolution|slow_conv|_convolution|upsample.*conv"),
    ("groupnorm", 80, r"group_norm|groupnorm"),
    ("layernorm", 80, r"layer_norm|layernorm|rms_norm|rmsnorm"),
    ("normalization", 80, r"batch_norm|batchnorm|instance_norm|instancenorm"),
    ("softmax", 70, r"softmax"),
    # fbgemm (and Meta's ``fb::`` twins) is the embedding stack of recommendation models:
    # TBE lookups, ``permute_pooled_embs`` (no pooling), sparse-feature bucketizing.
    ("embedding", 65, r"embedding|^fbgemm::|^fb::|fbgemm_gpu::"),
    (
        "linear",
        60,
        (
            r"aten::linear$|aten::addmm$|aten::mm$|aten::bmm$|aten::baddbmm$|aten::matmul$|"
            r"aten::einsum$|aten::_addmm_activation$|addmmbackward|mmbackward|bmmbackward|"
            r"linearbackward|matmulbackward|aten::addbmm$"
        ),
    ),
    # ``pool2d`` and kin, not any ``pool``: torchrec's ``All2All_Pooled_Req`` is no pooling.
    ("pooling", 50, r"pool[123]d|max_unpool"),
    ("optimizer", 40, r"optimizer|_foreach_|fused_adam|fused_sgd"),
    # Generic tensor ops: lowest priority, so any enclosing module-level op above wins.
    ("reduction", 6, r"^aten::(?:sum|mean|amax|amin|max|min|argmax|argmin|topk|sort|cumsum|norm|linalg_vector_norm)$"),
    (
        "elementwise",
        5,
        (
            r"^aten::(?:add|add_|mul|mul_|sub|rsub|div|div_|silu|gelu|relu|sigmoid|tanh|exp|"
            r"pow|neg|sqrt|rsqrt|sin|cos|clamp|where|copy_|fill_|zero_|cat|clone|contiguous|"
            r"_to_copy|to|dropout|masked_fill|lerp|addcmul_|addcdiv_|abs|log)$"
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class NameRule:
    """A kernel-name rule: a case-insensitive pattern on the rule name (``kernel_names``) gives
    an operator (and, optionally, an attention type).  ``authoritative`` rules decide over the
    enclosing op and annotations (an NCCL kernel is communication whichever op launched it);
    the others only where no op or annotation decides.  ``origin`` says where it was written."""

    id: str
    operator: str
    pattern: str
    attention_type: str | None = None
    authoritative: bool = False
    origin: str = "built-in"


# First match wins, user rules (``user_rules.py``) before these.
NAME_RULES: tuple[NameRule, ...] = (
    NameRule(
        "name.communication",
        "communication",
        r"nccl|rccl|allreduce|all_reduce|allgather|all_gather|reducescatter|sendrecv",
        authoritative=True,
    ),
    NameRule("name.attention", "attention", r"flash_fwd|flash_bwd|flash::|fmha|fused_mha|mha_|attention|attn_"),
    NameRule("name.softmax", "softmax", r"softmax"),
    # ``conv`` but not ``convert``; cuDNN's own kernels (``cudnn_infer``/``cudnn_train`` and
    # the cutlass ones it ships) are convolution work.
    NameRule(
        "name.conv",
        "conv",
        r"conv(?:[^e]|$)|implicit_gemm|implicit_convolve|winograd|fft2d|fprop|dgrad|wgrad|"
        r"nchwtonhwc|nhwctonchw|cudnn::(?:cnn|detail|ops|winograd)|cask_cudnn|scudnn|"
        r"cudnn_infer|cudnn_train|computeoffsets",
    ),
    NameRule("name.groupnorm", "groupnorm", r"group_norm|groupnorm"),
    NameRule("name.layernorm", "layernorm", r"layer_norm|layernorm|rms_norm|rmsnorm|gammabeta"),
    NameRule(
        "name.normalization", "normalization", r"batch_norm|batchnorm|bn_fw|bn_bw|instance_norm|welford|cudnn::bn_"
    ),
    # fbgemm / TorchRec table-batched embedding (TBE) kernels, before ``linear``: ``fbgemm``
    # is no GEMM.
    NameRule(
        "name.embedding",
        "embedding",
        r"embedding|^fbgemm_gpu::|bounds_check_indices|permute_pooled_embs|recat_copy|"
        r"linearize_index|indexselect|index_select",
    ),
    NameRule(
        "name.linear",
        "linear",
        r"gemm|gemv|cutlass|cublas|cijk_|matmul|splitk|s1688|s16816|h1688|h16816|nvjet|"
        r"epilogue::impl|triton_tem_fused_.*mm|dot_kernel",
    ),
    NameRule("name.pooling", "pooling", r"pool"),
    NameRule("name.optimizer", "optimizer", r"multi_tensor_apply|adam|sgd_|lamb_"),
    # a lookup per element, though ``sort`` is in the name
    NameRule("name.lookup", "elementwise", r"searchsorted|bucketize"),
    NameRule(
        "name.reduction",
        "reduction",
        r"reduce_kernel|reduction|triton_red_|triton_per_|cub::|radix|sort|topk|scan_|argmax",
    ),
    NameRule(
        "name.elementwise",
        "elementwise",
        r"elementwise|vectorized|unrolled|functor|triton_poi_|pointwise|fill|copy|"
        r"catarray|where|dropout|gelu|silu|relu|sigmoid|tanh|add|mul|div|"
        r"index|scatter|gather|masked|clamp|pow|exp(?:[^a]|$)",
    ),  # not ``expand``, a view
)

# The same rules as (operator, pattern) pairs, for code that only needs what they can produce.
AUTHORITATIVE_KERNEL_RULES: tuple[tuple[str, str], ...] = tuple(
    (r.operator, r.pattern) for r in NAME_RULES if r.authoritative
)
KERNEL_RULES: tuple[tuple[str, str], ...] = tuple((r.operator, r.pattern) for r in NAME_RULES if not r.authoritative)

KIND_OPERATORS = {"memcpy": "memcpy", "memset": "memset"}

# The launch call of a whole CUDA / HIP graph: one call, many kernels, all with its correlation.
GRAPH_LAUNCH_PATTERN = r"(?i)^(?:cuda|cu|hip)GraphLaunch"

# An enclosing module or annotation with one of these names makes the matmul / softmax inside
# it attention, for models that compute attention by hand (bmm + softmax + bmm).
ATTENTION_SCOPE_PATTERN = r"attention|attn"
ATTENTION_BUILDING_BLOCKS = frozenset(
    {
        "aten::bmm",
        "aten::baddbmm",
        "aten::matmul",
        "aten::softmax",
        "aten::_softmax",
        "aten::einsum",
        "aten::mul",
        "aten::div",
    }
)

# Input Dims layout of each attention op family: BHLD for SDPA, BLHD for flash / xformers.
BLHD_ATTENTION_PATTERN = r"flash_attn::|aten::_flash_attention_forward|aten::_efficient_attention_forward|xformers"

PROFILER_STEP_PATTERN = r"^ProfilerStep#(\d+)$"


def _first_match(rules: Sequence[NameRule], col: pl.Expr) -> pl.Expr:
    """Index (in ``rules``) of the first rule whose pattern matches ``col``; null when none."""
    expr: pl.Expr = pl.lit(None, dtype=pl.Int32)
    for i in reversed(range(len(rules))):
        expr = pl.when(col.str.contains(f"(?i){rules[i].pattern}")).then(pl.lit(i, dtype=pl.Int32)).otherwise(expr)
    return expr


def op_rule_columns(col: pl.Expr) -> dict[str, pl.Expr]:
    """``op_operator`` and ``op_priority`` of the op name in ``col`` (null when no rule matches)."""
    op: pl.Expr = pl.lit(None, dtype=pl.String)
    prio: pl.Expr = pl.lit(None, dtype=pl.Int32)
    for operator, priority, pattern in reversed(OP_RULES):
        hit = col.str.contains(f"(?i){pattern}")
        op = pl.when(hit).then(pl.lit(operator)).otherwise(op)
        prio = pl.when(hit).then(pl.lit(priority, dtype=pl.Int32)).otherwise(prio)
    return {"op_operator": op, "op_priority": prio}


def classify_op_names(names: pl.Series) -> pl.DataFrame:
    """name → (op_operator, op_priority) for op names; null when no rule matches."""
    return pl.DataFrame({"name": names.unique()}).with_columns(**op_rule_columns(pl.col("name")))


def _rule_columns(rules: Sequence[NameRule], prefix: str, col: pl.Expr) -> dict[str, pl.Expr]:
    """``<prefix>_operator`` / ``_rule`` (id) / ``_attention`` of the first matching rule."""
    index = _first_match(rules, col)
    keys = list(range(len(rules)))

    def pick(values: list[str | None]) -> pl.Expr:
        return index.replace_strict(keys, values, default=None, return_dtype=pl.String)

    return {
        f"{prefix}_operator": pick([r.operator for r in rules]),
        f"{prefix}_rule": pick([r.id for r in rules]),
        f"{prefix}_attention": pick([r.attention_type for r in rules]),
    }


def kernel_rule_columns(col: pl.Expr, name_rules: Sequence[NameRule] = NAME_RULES) -> dict[str, pl.Expr]:
    """``authoritative_*`` and ``name_*`` (operator, rule id, attention type) of the rule name
    (``kernel_names``) in ``col``."""
    return {
        **_rule_columns([r for r in name_rules if r.authoritative], "authoritative", col),
        **_rule_columns([r for r in name_rules if not r.authoritative], "name", col),
    }


def kernel_name_table(names: pl.Series, name_rules: Sequence[NameRule] = NAME_RULES) -> pl.LazyFrame:
    """Per distinct kernel name: its ``rule_name`` (base name, see ``kernel_names``) and what
    the name rules give it.  Rules never see template or parameter lists."""
    distinct = names.unique()
    rule_names = pl.Series([None if n is None else rule_name(n) for n in distinct.to_list()], dtype=pl.String)
    return pl.LazyFrame({"name": distinct, "rule_name": rule_names}).with_columns(
        **kernel_rule_columns(pl.col("rule_name"), name_rules)
    )


def classify_kernel_names(names: pl.Series, name_rules: Sequence[NameRule] = NAME_RULES) -> pl.DataFrame:
    """name → rule_name and the ``authoritative_*`` / ``name_*`` columns, for kernel names."""
    return kernel_name_table(names, name_rules).collect()
