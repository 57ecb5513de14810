"""Match Nsight Compute launches to a timeline trace's kernels of the same run.

ncu numbers launches in the order the application issued them (its ``ID``), and a timeline
trace (Kineto, nsys) sees the same launches in the same order, so within one kernel name the
k-th profiled launch is the k-th kernel of that name on the timeline.  Names are compared
exactly first; launches whose names never appear exactly (ncu run with
``--print-kernel-base function`` shows ``elementwise_kernel`` where the timeline has the full
demangled signature) are then matched on the base function name, in the same way.

What this cannot see: a profile that skipped launches (``--launch-skip``, ``-c``) shifts the
order within a name; the caller reports unmatched launches so such a mismatch is visible.
"""

from __future__ import annotations

import polars as pl

_LINK_SCHEMA = {"kernel_id": pl.Int64, "kernel_ref": pl.Int64}


def kernel_base_name(name: str) -> str:
    """``void at::native::(anonymous namespace)::foo<4, T>(int, T)`` -> ``foo``."""
    text = _strip_trailing_group(name.strip(), "(", ")")
    text = _strip_trailing_group(text, "<", ">")
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        elif depth == 0 and ch == " ":
            start = i + 1  # after a return type such as ``void``
        elif depth == 0 and text.startswith("::", i):
            start = i + 2
    return text[start:] or name


def _strip_trailing_group(text: str, opener: str, closer: str) -> str:
    """Drop one balanced ``(...)`` / ``<...>`` group at the end of ``text``, if there is one."""
    if not text.endswith(closer):
        return text
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == closer:
            depth += 1
        elif text[i] == opener:
            depth -= 1
            if depth == 0:
                return text[:i].rstrip()
    return text


def link_launches(launches: pl.DataFrame, timeline: pl.DataFrame) -> pl.DataFrame:
    """``launches``: ``kernel_id, kernel_name`` (ncu); ``timeline``: ``kernel_ref, name`` in
    execution order.  Returns ``kernel_id, kernel_ref`` for every launch that found its kernel."""
    if launches.is_empty() or timeline.is_empty():
        return pl.DataFrame(schema=_LINK_SCHEMA)
    ncu = launches.select("kernel_id", key="kernel_name").unique("kernel_id").sort("kernel_id")
    tl = timeline.select("kernel_ref", key="name")
    exact = _match_in_order(ncu, tl)
    shared = set(ncu["key"]) & set(tl["key"])
    # The base-name pass only sees launches and kernels no exact name accounts for.
    ncu_rest = ncu.filter(~pl.col("key").is_in(shared)).with_columns(_base_key())
    tl_rest = tl.filter(~pl.col("key").is_in(shared)).with_columns(_base_key())
    return pl.concat([exact, _match_in_order(ncu_rest, tl_rest)]).sort("kernel_id")


def _base_key() -> pl.Expr:
    return pl.col("key").map_elements(kernel_base_name, return_dtype=pl.String)


def _match_in_order(ncu: pl.DataFrame, tl: pl.DataFrame) -> pl.DataFrame:
    occurrence = pl.int_range(pl.len()).over("key")
    left = ncu.with_columns(occurrence=occurrence)
    right = tl.with_columns(occurrence=occurrence)
    return left.join(right, on=["key", "occurrence"], how="inner").select(
        pl.col("kernel_id").cast(pl.Int64), pl.col("kernel_ref").cast(pl.Int64)
    )
