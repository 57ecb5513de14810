"""Normalization: a ParsedTrace becomes kernel rows keyed by operator, attention type,
sequence lengths, component and step.

For each kernel we find the host call that launched it (by correlation), then every host
range enclosing that call on its thread (``nesting.py``).  The keys come, most specific
first, from: the kernel's kind (memcpy / memset) and authoritative name rules (NCCL); our
collectors' annotations (innermost value of each key wins); the enclosing aten op with the
highest rule priority, whose ``Input Dims`` give attention shapes; an enclosing attention
module around a bare matmul / softmax; the kernel-name rules; else ``other``.
"""

from __future__ import annotations

import polars as pl

from tracehouse.ingest import rules
from tracehouse.ingest.annotation import ANNOTATION_FIELDS, PREFIX, parse_annotation
from tracehouse.ingest.frames import ParsedTrace
from tracehouse.ingest.nesting import enclosing_ranges, top_level
from tracehouse.ingest.opcost import op_cost
from tracehouse.ingest.shapes import attention_shapes

KERNEL_ROW_COLUMNS = (
    "seq", "kind", "device", "stream", "start_ns", "dur_ns", "name", "correlation",
    "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "bytes",
    "operator", "operator_source", "attention_type", "seq_q", "seq_kv", "batch", "heads",
    "head_dim", "component", "step", "cpu_op", "annotation", "op_flops", "op_bytes",
    "launch_ns", "launch_dur_ns",
)
COMM_ANNOTATION_PATTERN = r"^(?:gloo|nccl|ucc|mpi):"


def attribute(parsed: ParsedTrace) -> pl.DataFrame:
    """Kernel rows (``KERNEL_ROW_COLUMNS``) in execution order."""
    ranges = _range_table(parsed.ranges)
    units = _cpu_units(ranges) if parsed.cpu_only else _gpu_units(parsed)
    units = units.sort("start_ns", "device", "stream", maintain_order=True).with_row_index("query_idx")
    queries = units.filter(pl.col("t_ns").is_not_null()).select("query_idx", "pid", "tid", "t_ns")
    chain = enclosing_ranges(ranges.select("range_idx", "pid", "tid", "start_ns", "dur_ns"), queries)
    chain = chain.join(ranges.drop("pid", "tid", "start_ns", "dur_ns"), on="range_idx", how="left")
    keyed = units
    for found in (_annotation_keys(chain), _op_keys(chain), _innermost_op(chain),
                  _attention_scope(chain), _profiler_step(chain)):
        keyed = keyed.join(found, on="query_idx", how="left")
    names = rules.classify_kernel_names(keyed["name"])
    keyed = keyed.join(names, on="name", how="left")
    return _resolve(keyed).with_columns(
        seq=pl.col("query_idx").cast(pl.Int64),
        # The host call that enqueued the kernel (none for CPU-only units): launch overhead.
        launch_ns=pl.when(pl.col("kind") != "cpu").then(pl.col("t_ns")),
    ).select(KERNEL_ROW_COLUMNS)


def _range_table(ranges: pl.DataFrame) -> pl.DataFrame:
    """Ranges with their parsed annotation keys and op-rule match (rules run on distinct names)."""
    ranges = ranges.with_row_index("range_idx").with_columns(
        is_ours=pl.col("name").str.starts_with(PREFIX) | (pl.col("name") == PREFIX.rstrip("|")))
    ours = ranges.filter("is_ours")["name"].unique().to_list()
    parsed = [parse_annotation(n) for n in ours]
    ann = pl.DataFrame(
        {"name": ours, **{f"ann_{f}": [getattr(a, f) if a else None for a in parsed] for f in ANNOTATION_FIELDS}},
        schema={"name": pl.String, **{f"ann_{f}": (pl.Int64 if f in _INT_KEYS else pl.String)
                                      for f in ANNOTATION_FIELDS}})
    ops = rules.classify_op_names(ranges.filter(pl.col("cat") == "cpu_op")["name"])
    return ranges.join(ann, on="name", how="left").join(ops, on="name", how="left")


_INT_KEYS = {"seq_q", "seq_kv", "batch", "heads", "head_dim", "step"}


def _gpu_units(parsed: ParsedTrace) -> pl.DataFrame:
    launches = parsed.launches.select("correlation", "pid", "tid", t_ns="start_ns", launch_dur_ns="dur_ns")
    gpu = parsed.gpu_events
    # Correlation ids are unique within a process; a Kineto trace is one process, and the
    # nsys parser qualifies ids with the pid when an export holds several.
    return gpu.join(launches, on="correlation", how="left")


def _cpu_units(ranges: pl.DataFrame) -> pl.DataFrame:
    """CPU-only trace: top-level host ops (and collective annotations) are the execution units."""
    ops = ranges.filter(pl.col("cat") == "cpu_op")
    ops = ops.filter(top_level(ops))
    comms = ranges.filter((pl.col("cat") == "annotation") & pl.col("name").str.contains(COMM_ANNOTATION_PATTERN))
    units = pl.concat([ops, comms])
    return units.select(
        kind=pl.lit("cpu"), name="name", device=pl.lit(None, pl.Int64), stream="tid",
        start_ns="start_ns", dur_ns="dur_ns", correlation=pl.lit(None, pl.Int64),
        external_id=pl.lit(None, pl.Int64),
        **{c: pl.lit(None, pl.Int64) for c in ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "bytes")},
        pid="pid", tid="tid", t_ns="start_ns", launch_dur_ns=pl.lit(None, pl.Int64),
    )


def _annotation_keys(chain: pl.DataFrame) -> pl.DataFrame:
    ours = chain.filter("is_ours").sort("query_idx", "depth")
    return ours.group_by("query_idx").agg(
        *[pl.col(f"ann_{f}").drop_nulls().last() for f in ANNOTATION_FIELDS],
        annotation=pl.col("name").last(),
    )


def _op_keys(chain: pl.DataFrame) -> pl.DataFrame:
    """The matching enclosing op with the highest priority (outermost on ties: the SDPA call,
    not its math-backend children, carries the user-facing q/k shapes)."""
    matched = chain.filter(pl.col("op_operator").is_not_null())
    best = matched.sort(["query_idx", "op_priority", "depth"], descending=[False, True, False])
    best = best.group_by("query_idx", maintain_order=True).first()
    shapes = attention_shapes(best.filter(pl.col("op_operator") == "attention").select("name", "input_dims"))
    costs = _op_costs(best)
    return (best.select("query_idx", "op_operator", "input_dims", "concrete_inputs", "input_types",
                        op_name="name", op_instance="range_idx")
            .join(shapes, on=["op_name", "input_dims"], how="left")
            .join(costs, on=["op_name", "input_dims", "concrete_inputs", "input_types", "op_operator"],
                  how="left", nulls_equal=True))


_COST_KEYS = ["op_name", "input_dims", "concrete_inputs", "input_types", "op_operator"]


def _op_costs(best: pl.DataFrame) -> pl.DataFrame:
    """FLOPs and bytes of each distinct GEMM / conv call signature (``opcost.py``)."""
    distinct = (best.filter(pl.col("op_operator").is_in(["linear", "conv"]))
                .select(op_name="name", input_dims="input_dims", concrete_inputs="concrete_inputs",
                        input_types="input_types", op_operator="op_operator").unique())
    costs = [op_cost(*row) for row in distinct.iter_rows()]
    return distinct.with_columns(
        instance_flops=pl.Series([c[0] for c in costs], dtype=pl.Int64),
        instance_bytes=pl.Series([c[1] for c in costs], dtype=pl.Int64))


def _innermost_op(chain: pl.DataFrame) -> pl.DataFrame:
    ops = chain.filter(pl.col("cat") == "cpu_op").sort("query_idx", "depth")
    return ops.group_by("query_idx").agg(cpu_op=pl.col("name").last())


def _attention_scope(chain: pl.DataFrame) -> pl.DataFrame:
    scoped = chain.filter(
        pl.col("cat").is_in(["python", "annotation"]) & ~pl.col("is_ours")
        & pl.col("name").str.contains(f"(?i){rules.ATTENTION_SCOPE_PATTERN}"))
    return scoped.select("query_idx").unique().with_columns(in_attention_scope=pl.lit(True))


def _profiler_step(chain: pl.DataFrame) -> pl.DataFrame:
    steps = chain.filter(pl.col("name").str.contains(rules.PROFILER_STEP_PATTERN))
    return steps.group_by("query_idx").agg(
        profiler_step=pl.col("name").str.extract(rules.PROFILER_STEP_PATTERN).cast(pl.Int64).last())


def _resolve(k: pl.DataFrame) -> pl.DataFrame:
    kind_op = pl.col("kind").replace_strict(rules.KIND_OPERATORS, default=None, return_dtype=pl.String)
    scope_op = pl.when(pl.col("in_attention_scope") & pl.col("cpu_op").is_in(list(rules.ATTENTION_BUILDING_BLOCKS))
                       ).then(pl.lit("attention"))
    candidates = [
        ("kind", kind_op), ("kernel_name", pl.col("authoritative_operator")),
        ("annotation", pl.col("ann_operator")), ("op", pl.col("op_operator")),
        ("scope", scope_op), ("kernel_name", pl.col("name_operator")),
    ]
    operator: pl.Expr = pl.lit("other")
    source: pl.Expr = pl.lit("none")
    for label, expr in reversed(candidates):
        operator = pl.when(expr.is_not_null()).then(expr).otherwise(operator)
        source = pl.when(expr.is_not_null()).then(pl.lit(label)).otherwise(source)
    k = k.with_columns(operator=operator, operator_source=source)
    from_op = pl.col("operator") == "attention"
    shape = {f: pl.coalesce(f"ann_{f}", pl.when(from_op).then(pl.col(f"op_{f}")))
             for f in ("seq_q", "seq_kv", "batch", "heads", "head_dim")}
    k = k.with_columns(**shape)
    inferred_type = (pl.when(~from_op | pl.col("seq_q").is_null()).then(None)
                     .when(pl.col("seq_q") == pl.col("seq_kv")).then(pl.lit("self"))
                     .when(pl.col("seq_q") == 1).then(pl.lit("causal-decode"))
                     .otherwise(pl.lit("cross")))
    # An op's cost is counted once, on its first kernel; its other kernels carry 0 so sums
    # over kernel rows give the op's FLOPs, and "not null" marks time the FLOPs cover.
    costed = pl.col("instance_flops").is_not_null() & (pl.col("operator") == pl.col("op_operator"))
    first = pl.col("query_idx") == pl.col("query_idx").min().over("op_instance")
    return k.with_columns(
        attention_type=pl.coalesce("ann_attention_type", inferred_type),
        component="ann_component",
        step=pl.coalesce("ann_step", "profiler_step"),
        op_flops=pl.when(costed).then(pl.when(first).then(pl.col("instance_flops")).otherwise(0)),
        op_bytes=pl.when(costed).then(pl.when(first).then(pl.col("instance_bytes")).otherwise(0)),
    )
