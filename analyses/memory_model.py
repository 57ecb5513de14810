"""The paper's similarity-matrix memory model (§V-A) next to what a run's stored attention
shapes imply.

The formula implemented, from §V-A of "Generative AI Beyond LLMs" with e bytes per element
(the paper takes e = 2, FP16), one head and batch 1 ("we omit batch size and assume 1
attention head"):

- latent grid ``H_L = H_O / latent_factor`` (likewise W_L), ``T = text_encode``;
- one self- plus one cross-attention similarity matrix at full latent resolution:
  ``e·(H_L·W_L)·(H_L·W_L) + e·(H_L·W_L)·T = e·H_L·W_L·[H_L·W_L + T]``
  (the paper's ``2H_LW_L[H_LW_L + text_encode]``);
- at UNet stage n the side shrinks by ``d^n`` so the tokens are ``t_n = H_L·W_L / d^(2n)``;
  the cumulative memory over one UNet pass is
  ``e·[2·Σ_{n=0}^{depth−1} t_n·(t_n + T) + t_depth·(t_depth + T)]``:
  every stage above the bottleneck is visited twice (down and up path), the bottleneck once.

``heads`` and ``batch`` multiply every term (the paper sets both to 1).
"""

from __future__ import annotations

import math

import polars as pl
from sqlalchemy.orm import Session

from tracehouse.analyses.common import get_run
from tracehouse.analyses.roofline import DTYPES, run_dtype
from tracehouse.analyses.runs import run_tags
from tracehouse.analyses.sequence import attention_calls
from tracehouse.core.errors import BadInput
from tracehouse.core.frames import FrameSchema

MODELLED_TYPES = ("self", "spatial", "cross")
STAGE_SCHEMA: FrameSchema = {
    "stage": pl.Int64,
    "side_h": pl.Int64,
    "side_w": pl.Int64,
    "tokens": pl.Int64,
    "visits": pl.Int64,
    "self_bytes_per_call": pl.Int64,
    "cross_bytes_per_call": pl.Int64,
    "bytes_per_visit": pl.Int64,
    "stage_bytes": pl.Int64,
    "cumulative_bytes": pl.Int64,
}


def _positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInput(f"{name} must be a positive integer, got {value!r}")


def similarity_matrix_memory(
    image_size: int,
    latent_factor: int,
    text_length: int,
    unet_depth: int,
    downsample_factor: int,
    bytes_per_element: int = 2,
    heads: int = 1,
    batch: int = 1,
    image_width: int | None = None,
) -> pl.DataFrame:
    """One row per UNet stage n = 0..unet_depth (the last is the bottleneck).

    Columns: ``stage, side_h, side_w, tokens`` (t_n), ``visits`` (2 above the bottleneck,
    1 at it), ``self_bytes_per_call`` (e·B·H·t_n²), ``cross_bytes_per_call`` (e·B·H·t_n·T),
    ``bytes_per_visit`` (their sum), ``stage_bytes`` (visits × bytes_per_visit) and
    ``cumulative_bytes`` (running sum; the last row is the paper's cumulative formula).
    ``image_width`` defaults to ``image_size`` (square images).
    """
    width = image_size if image_width is None else image_width
    _positive(
        image_size=image_size,
        image_width=width,
        latent_factor=latent_factor,
        text_length=text_length,
        downsample_factor=downsample_factor,
        bytes_per_element=bytes_per_element,
        heads=heads,
        batch=batch,
    )
    if not isinstance(unet_depth, int) or isinstance(unet_depth, bool) or unet_depth < 0:
        raise BadInput(f"unet_depth must be a non-negative integer, got {unet_depth!r}")
    if image_size % latent_factor or width % latent_factor:
        raise BadInput(f"image size {image_size}x{width} is not divisible by latent_factor {latent_factor}")
    h_l, w_l = image_size // latent_factor, width // latent_factor
    shrink = downsample_factor**unet_depth
    if h_l % shrink or w_l % shrink:
        raise BadInput(f"latent {h_l}x{w_l} is not divisible by downsample_factor^unet_depth = {shrink}")
    scale = bytes_per_element * heads * batch
    rows, cumulative = [], 0
    for n in range(unet_depth + 1):
        side_h, side_w = h_l // downsample_factor**n, w_l // downsample_factor**n
        t = side_h * side_w  # = H_L·W_L / d^(2n), exact by the divisibility check
        visits = 1 if n == unet_depth else 2
        self_b, cross_b = scale * t * t, scale * t * text_length
        cumulative += visits * (self_b + cross_b)
        rows.append(
            (n, side_h, side_w, t, visits, self_b, cross_b, self_b + cross_b, visits * (self_b + cross_b), cumulative)
        )
    return pl.DataFrame(rows, schema=STAGE_SCHEMA, orient="row")


def memory_model_vs_run(
    session: Session,
    run_id: int,
    *,
    latent_factor: int | None = None,
    unet_depth: int | None = None,
    downsample_factor: int = 2,
    bytes_per_element: int | None = None,
    component: str = "unet",
) -> pl.DataFrame:
    """The model's stages next to the run's stored attention calls in ``component``.

    Defaults come from the run: image size and text length from its columns, the latent
    factor from the ``latent_size`` tag (image_size / latent_size), the element size from the
    run dtype, and ``unet_depth`` from the smallest stored self-attention length
    (log_d² of max/min tokens).  Extra columns per stage: ``self_calls``/``cross_calls``
    (calls whose seq_q equals the stage's tokens), ``observed_self_bytes_per_call`` /
    ``observed_cross_bytes_per_call`` (e·Lq·Lkv from the stored shapes, one head and batch 1
    as in the paper; null without such calls), ``observed_bytes`` (e·Lq·Lkv summed over all
    the stage's calls in the run) and ``matches`` (observed per-call bytes equal the model's
    wherever calls were seen).
    """
    run = get_run(session, run_id)
    if run.image_size is None or run.text_length is None:
        raise BadInput(f"run {run_id} has no image_size or text_length; the memory model needs both")
    # Temporal / causal attention do not follow the image-token model: only self (or
    # spatial) and cross calls are compared.
    calls = attention_calls(session, run_id).filter(
        (pl.col("component") == component)
        & pl.col("attention_type").is_in(MODELLED_TYPES)
        & pl.col("seq_q").is_not_null()
        & pl.col("seq_kv").is_not_null()
    )
    if calls.is_empty():
        raise BadInput(f"run {run_id} has no {component} attention calls with stored shapes")
    elem = bytes_per_element or DTYPES[run_dtype(run)][0]
    factor = latent_factor or _latent_factor(session, run_id, run.image_size)
    depth = unet_depth if unet_depth is not None else _depth(calls, downsample_factor)
    model = similarity_matrix_memory(run.image_size, factor, run.text_length, depth, downsample_factor, elem)
    observed = (
        calls.with_columns(bytes=elem * pl.col("seq_q") * pl.col("seq_kv"))
        .group_by(pl.col("seq_q").alias("tokens"))
        .agg(
            self_calls=(pl.col("attention_type") != "cross").sum().cast(pl.Int64),
            cross_calls=(pl.col("attention_type") == "cross").sum().cast(pl.Int64),
            observed_self_bytes_per_call=pl.col("bytes").filter(pl.col("attention_type") != "cross").max(),
            observed_cross_bytes_per_call=pl.col("bytes").filter(pl.col("attention_type") == "cross").max(),
            observed_bytes=pl.col("bytes").sum(),
        )
    )
    joined = model.join(observed, on="tokens", how="left").with_columns(
        pl.col("self_calls", "cross_calls", "observed_bytes").fill_null(0)
    )
    return joined.with_columns(
        matches=_agrees("observed_self_bytes_per_call", "self_bytes_per_call")
        & _agrees("observed_cross_bytes_per_call", "cross_bytes_per_call")
    )


def _agrees(observed: str, modelled: str) -> pl.Expr:
    # A stage the run never reached (no calls) does not contradict the model.
    return pl.col(observed).is_null() | (pl.col(observed) == pl.col(modelled))


def _latent_factor(session: Session, run_id: int, image_size: int) -> int:
    latent = run_tags(session, run_id).get("latent_size")
    if not latent or not latent.isdigit() or int(latent) == 0 or image_size % int(latent):
        raise BadInput(f"run {run_id} has no usable latent_size tag; pass latent_factor")
    return image_size // int(latent)


def _depth(calls: pl.DataFrame, d: int) -> int:
    # Self-attention lengths run t_0 ... t_0 / d^(2·depth); the ratio gives the depth.
    lengths: list[int] = calls.filter(pl.col("attention_type") != "cross")["seq_q"].drop_nulls().to_list()
    if not lengths or d < 2:
        raise BadInput("cannot infer unet_depth from the run; pass unet_depth")
    return round(math.log(max(lengths) / min(lengths), d * d))
