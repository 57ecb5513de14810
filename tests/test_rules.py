"""The attribution rule tables, the annotation convention, interval nesting and shape
parsing, each on small hand-made inputs whose answer is known."""

from __future__ import annotations

import polars as pl
import pytest

from tracehouse.core.annotation import Annotation, format_annotation, parse_annotation
from tracehouse.core.rules import classify_kernel_names, classify_op_names
from tracehouse.ingest.nesting import enclosing_ranges, top_level
from tracehouse.ingest.shapes import qk_shapes

KERNEL_CASES = [
    ("ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)", "communication"),
    ("ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)", "communication"),
    ("void flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64, 64, 4> >(Flash_fwd_params)", "attention"),
    ("fmha_cutlassF_f16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel)", "attention"),
    ("void cudnn::detail::implicit_convolve_sgemm<float, float, 128, 5, 5>(int, int)", "conv"),
    ("sm80_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw", "conv"),
    ("void at::native::(anonymous namespace)::GroupNormKernel<float>()", "groupnorm"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float>()", "layernorm"),
    ("void cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512>()", "normalization"),
    ("ampere_sgemm_32x128_nt", "linear"),
    ("Cijk_Alik_Bljk_SB_Bias_AS_SAV_UserArgs_MT64x16x32_MI16x16x1", "linear"),
    ("void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_64x64_16x6_nn_align4>()", "linear"),
    ("void (anonymous namespace)::softmax_warp_forward<float, float, float, 8, false>()", "softmax"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float> >()", "elementwise"),
    ("triton_poi_fused_add_cos_sin_0", "elementwise"),
    ("triton_red_fused_sum_1", "reduction"),
    ("void at::native::reduce_kernel<512, 1>()", "reduction"),
    ("void at::native::(anonymous namespace)::max_pool_forward_nchw<float>()", "pooling"),
    ("void at::native::multi_tensor_apply_kernel<TensorListMetadata<3> >()", "optimizer"),
]

OP_CASES = [
    ("aten::scaled_dot_product_attention", "attention"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
    ("flash_attn::_flash_attn_forward", "attention"),
    ("aten::conv2d", "conv"),
    ("aten::cudnn_convolution", "conv"),
    ("autograd::engine::evaluate_function: ConvolutionBackward0", "conv"),
    ("aten::group_norm", "groupnorm"),
    ("aten::layer_norm", "layernorm"),
    ("aten::native_batch_norm", "normalization"),
    ("aten::softmax", "softmax"),
    ("aten::linear", "linear"),
    ("aten::addmm", "linear"),
    ("aten::bmm", "linear"),
    ("AddmmBackward0", "linear"),
    ("aten::embedding", "embedding"),
    ("nccl:all_reduce", "communication"),
    ("c10d::broadcast_", "communication"),
    ("nccl:broadcast", "communication"),
    ("aten::broadcast_tensors", None),  # a shape op: expands views, no collective
    ("aten::add", "elementwise"),
    ("aten::mean", "reduction"),
    ("aten::view", None),
    ("aten::empty", None),
]


@pytest.mark.parametrize(("name", "operator"), KERNEL_CASES)
def test_kernel_name_rules(name: str, operator: str) -> None:
    row = classify_kernel_names(pl.Series([name])).row(0, named=True)
    assert (row["authoritative_operator"] or row["name_operator"]) == operator


@pytest.mark.parametrize(("name", "operator"), OP_CASES)
def test_op_rules(name: str, operator: str | None) -> None:
    assert classify_op_names(pl.Series([name]))["op_operator"][0] == operator


def test_attention_op_outranks_the_matmul_inside_it() -> None:
    ranked = classify_op_names(pl.Series(["aten::scaled_dot_product_attention", "aten::bmm", "aten::softmax"]))
    prio = dict(zip(ranked["name"], ranked["op_priority"], strict=True))
    assert prio["aten::scaled_dot_product_attention"] > prio["aten::softmax"] > prio["aten::bmm"]


def test_annotation_round_trip() -> None:
    name = format_annotation(
        operator="attention",
        attention_type="temporal",
        seq_q=16,
        seq_kv=16,
        batch=1024,
        heads=8,
        head_dim=40,
        component="unet",
        step=7,
    )
    assert name == "th|op=attention|attn=temporal|sq=16|skv=16|b=1024|h=8|d=40|comp=unet|step=7"
    assert parse_annotation(name) == Annotation("attention", "temporal", 16, 16, 1024, 8, 40, "unet", 7)


def test_annotation_ignores_foreign_and_malformed() -> None:
    assert parse_annotation("## forward ##") is None
    assert parse_annotation("th|sq=abc|zz=1|comp=unet") == Annotation(component="unet")
    with pytest.raises(ValueError, match="may not contain"):
        format_annotation(component="a|b")


def test_enclosing_ranges_nests_and_separates_threads() -> None:
    ranges = pl.DataFrame(
        {
            "range_idx": [0, 1, 2, 3, 4],
            "pid": [1, 1, 1, 1, 1],
            "tid": [1, 1, 1, 1, 2],
            "start_ns": [0, 10, 12, 50, 0],
            "dur_ns": [100, 20, 5, 10, 100],
        }
    )
    queries = pl.DataFrame(
        {"query_idx": [0, 1, 2, 3], "pid": [1, 1, 1, 1], "tid": [1, 1, 1, 2], "t_ns": [13, 25, 40, 13]}
    )
    chain = enclosing_ranges(ranges, queries).sort("query_idx", "depth")
    got = {q: list(g["range_idx"]) for (q,), g in chain.group_by("query_idx")}
    assert got == {0: [0, 1, 2], 1: [0, 1], 2: [0], 3: [4]}
    assert list(chain.filter(pl.col("query_idx") == 0)["depth"]) == [0, 1, 2]


def test_top_level_marks_outermost_ranges() -> None:
    ranges = pl.DataFrame(
        {"pid": [1, 1, 1, 1], "tid": [1, 1, 1, 1], "start_ns": [0, 5, 200, 210], "dur_ns": [100, 10, 50, 0]}
    )
    assert top_level(ranges).to_list() == [True, False, True, False]


@pytest.mark.parametrize(
    ("op", "dims", "expected"),
    [
        (
            "aten::scaled_dot_product_attention",
            "[[2, 8, 4096, 40], [2, 8, 77, 40], [2, 8, 77, 40]]",
            (4096, 77, 2, 8, 40),
        ),
        ("aten::_flash_attention_forward", "[[2, 4096, 8, 40], [2, 77, 8, 40]]", (4096, 77, 2, 8, 40)),
        ("aten::scaled_dot_product_attention", "[[2, 4096, 320], [2, 77, 320]]", (None,) * 5),
        ("aten::scaled_dot_product_attention", None, (None,) * 5),
    ],
)
def test_attention_shapes_from_input_dims(op: str, dims: str | None, expected: tuple) -> None:
    assert qk_shapes(op, dims) == expected


@pytest.mark.parametrize(
    ("name", "dims", "expected"),
    [
        ("aten::linear", [[2, 8, 32], [64, 32], [64]], (2 * 16 * 32 * 64, 4 * (16 * 32 + 64 * 32 + 16 * 64))),
        ("aten::addmm", [[64], [16, 32], [32, 64], [], []], (2 * 16 * 32 * 64, 4 * (16 * 32 + 32 * 64 + 16 * 64))),
        ("aten::bmm", [[4, 16, 32], [4, 32, 8]], (2 * 4 * 16 * 32 * 8, 4 * 4 * (16 * 32 + 32 * 8 + 16 * 8))),
        ("aten::linear", [[2, 8, 31], [64, 32]], (None, None)),  # mismatched K: unknown, not guessed
    ],
)
def test_gemm_cost(name: str, dims: list, expected: tuple) -> None:
    from tracehouse.core.opcost import gemm_cost

    assert gemm_cost(name, dims, 4) == expected


def test_conv_cost_uses_stride_padding_and_groups() -> None:
    from tracehouse.core.opcost import conv_cost

    # 2x4x8x8 input, 32 filters of 4x3x3, stride 2, padding 1 -> 4x4 output
    dims = [[2, 4, 8, 8], [32, 4, 3, 3], [32]]
    flops, nbytes = conv_cost("aten::conv2d", dims, ["", "", "", "[2, 2]", "[1, 1]", "[1, 1]", "1"], 2)
    assert flops == 2 * 2 * 32 * 16 * 4 * 9
    assert nbytes == 2 * (2 * 4 * 64 + 32 * 4 * 9 + 2 * 32 * 16)
    assert conv_cost("aten::conv2d", dims, None, 2) == (None, None)  # no Concrete Inputs recorded
