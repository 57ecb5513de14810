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

from collections.abc import Sequence

import polars as pl

from tracehouse.core import rules
from tracehouse.core.annotation import ANNOTATION_FIELDS, PREFIX, parse_annotation
from tracehouse.core.frames import KERNEL_ROW_SCHEMA, ParsedTrace
from tracehouse.core.opcost import op_cost
from tracehouse.ingest.nesting import enclosing_ranges, top_level
from tracehouse.ingest.shapes import SHAPE_COLUMNS, qk_shapes

# The exported row and what only the store keeps: the CUDA-graph flag and which rule and op
# decided the operator (``explain`` reads those).
KERNEL_ROW_COLUMNS = (*KERNEL_ROW_SCHEMA, "graph", "rule", "deciding_op")
COMM_ANNOTATION_PATTERN = r"^(?:gloo|nccl|ucc|mpi):"


def attribute(
    parsed: ParsedTrace,
    name_rules: Sequence[rules.NameRule] = rules.NAME_RULES,
    *,
    op_names: pl.Series | None = None,
    with_instance: bool = False,
) -> pl.DataFrame:
    """Kernel rows (``KERNEL_ROW_COLUMNS``) in execution order.  ``name_rules``: the kernel-name
    rules, a lab's own (``user_rules.py``) first.  For a window of a bigger trace
    (``kineto_windows``): ``op_names``, the names the whole trace has as cpu ops (a name is an
    op's wherever it occurs), and ``with_instance`` adds ``op_instance``, the row in
    ``parsed.ranges`` of each kernel's best-ranked op (its cost is counted once per trace)."""
    ranges = parsed.ranges.with_row_index("range_idx")
    units = _cpu_units(ranges) if parsed.cpu_only else _gpu_units(parsed)
    units = units.sort("start_ns", "device", "stream", maintain_order=True).with_row_index("query_idx")
    # Both rule tables in one call: polars builds them side by side, on separate cores.
    names, kernel_names = pl.collect_all(
        [
            _name_table(ranges, op_names),
            rules.kernel_name_table(units["name"], name_rules),
        ],
        engine="in-memory",
    )
    # Row order is kept: a range's ``range_idx`` is its row, and keys are gathered by it.
    ranges = ranges.join(_with_annotations(names), on="name", how="left", maintain_order="left")
    queries = units.filter(pl.col("t_ns").is_not_null()).select("query_idx", "pid", "tid", "t_ns")
    chain = enclosing_ranges(ranges.select("range_idx", "pid", "tid", "start_ns", "dur_ns"), queries)
    keys = _chain_keys(chain, ranges, units.height)
    # The keys are one row per unit, in unit order: a side-by-side concat, not a join.  The
    # rest is one lazy plan, run by the in-memory engine (polars 2's default streaming engine
    # takes three times as long on frames this small).
    keyed = (
        pl.concat([units, keys], how="horizontal")
        .lazy()
        .join(_op_signatures(keys).lazy(), on=_COST_KEYS, how="left", nulls_equal=True, maintain_order="left")
        .join(kernel_names.lazy(), on="name", how="left", maintain_order="left")
    )
    return (
        _resolve(keyed)
        .with_columns(
            seq=pl.col("query_idx").cast(pl.Int64),
            # The host call that enqueued the kernel (none for CPU-only units): launch overhead.
            launch_ns=pl.when(pl.col("kind") != "cpu").then(pl.col("t_ns")),
        )
        .select(*KERNEL_ROW_COLUMNS, *(("op_instance",) if with_instance else ()))
        .collect(engine="in-memory")
    )


def _name_table(ranges: pl.DataFrame, op_names: pl.Series | None = None) -> pl.LazyFrame:
    """Per distinct range name: its op rule (for names that occur as cpu ops), whether it is
    one of our annotations, and its attention-scope and profiler-step matches; every rule runs
    once per name."""
    ops = rules.op_rule_columns(pl.col("name"))
    names = ranges.lazy().group_by("name").agg(is_op=(pl.col("cat") == "cpu_op").any())
    if op_names is not None:  # a window of a bigger trace: an op's name elsewhere in it counts
        names = names.with_columns(is_op=pl.col("is_op") | pl.col("name").is_in(op_names.implode()).fill_null(False))
    return names.with_columns(
        is_ours=pl.col("name").str.starts_with(PREFIX) | (pl.col("name") == PREFIX.rstrip("|")),
        op_operator=pl.when("is_op").then(ops["op_operator"]),
        op_priority=pl.when("is_op").then(ops["op_priority"]),
        scope_name=pl.col("name").str.contains(f"(?i){rules.ATTENTION_SCOPE_PATTERN}"),
        # A step number past int64 is no step (strict=False): it must not fail the ingest.
        profiler_step=pl.col("name").str.extract(rules.PROFILER_STEP_PATTERN).cast(pl.Int64, strict=False),
    ).drop("is_op")


def _with_annotations(names: pl.DataFrame) -> pl.DataFrame:
    """The name table plus the keys of our annotations (``ann_<field>``, null elsewhere)."""
    parsed = [parse_annotation(n) if n is not None else None for n in names["name"].to_list()]
    return names.with_columns(
        **{
            f"ann_{f}": pl.Series(
                [getattr(a, f) if a else None for a in parsed], dtype=pl.Int64 if f in _INT_KEYS else pl.String
            )
            for f in ANNOTATION_FIELDS
        }
    )


_INT_KEYS = {"seq_q", "seq_kv", "batch", "heads", "head_dim", "step"}
_COST_KEYS = ["op_name", "input_dims", "concrete_inputs", "input_types", "op_operator"]


def _gpu_units(parsed: ParsedTrace) -> pl.DataFrame:
    launches = parsed.launches.select(
        "correlation",
        "pid",
        "tid",
        t_ns="start_ns",
        launch_dur_ns="dur_ns",
        graph=pl.col("name").str.contains(rules.GRAPH_LAUNCH_PATTERN),
    )
    gpu = parsed.gpu_events
    # Correlation ids are unique within a process; a Kineto trace is one process, and the
    # nsys parser qualifies ids with the pid when an export holds several.  The kernels of a
    # CUDA graph all carry their graph launch's id: they join that one call.
    return gpu.join(launches, on="correlation", how="left").with_columns(pl.col("graph").fill_null(False))


def _cpu_units(ranges: pl.DataFrame) -> pl.DataFrame:
    """CPU-only trace: top-level host ops (and collective annotations) are the execution units."""
    ops = ranges.filter(pl.col("cat") == "cpu_op")
    ops = ops.filter(top_level(ops))
    comms = ranges.filter((pl.col("cat") == "annotation") & pl.col("name").str.contains(COMM_ANNOTATION_PATTERN))
    units = pl.concat([ops, comms])
    return units.select(
        kind=pl.lit("cpu"),
        name="name",
        device=pl.lit(None, pl.Int64),
        stream="tid",
        start_ns="start_ns",
        dur_ns="dur_ns",
        correlation=pl.lit(None, pl.Int64),
        external_id=pl.lit(None, pl.Int64),
        **{c: pl.lit(None, pl.Int64) for c in ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "bytes")},
        pid="pid",
        tid="tid",
        t_ns="start_ns",
        launch_dur_ns=pl.lit(None, pl.Int64),
        graph=pl.lit(False),
    )


def _chain_keys(chain: pl.DataFrame, ranges: pl.DataFrame, units: int) -> pl.DataFrame:
    """One row per unit: each key from the range that decides it.  The innermost value of each
    annotation key; the annotation, cpu op and profiler step innermost; whether any enclosing
    Python / annotation range names attention; the best-ranked op (``_best_op``)."""
    # A null flag (a range without a name or category) counts as no match, as a filter would.
    flags = ranges.select(
        range_idx=pl.int_range(pl.len(), dtype=pl.UInt32),
        priority=pl.col("op_priority"),
        annotation=pl.col("is_ours"),
        cpu_op=pl.col("cat") == "cpu_op",
        profiler_step=pl.col("profiler_step").is_not_null(),
        scope=pl.col("cat").is_in(["python", "annotation"]) & ~pl.col("is_ours") & pl.col("scope_name"),
        op=pl.col("op_priority").is_not_null(),
        # Annotation keys are set on our ranges only.
        **{f: pl.col(f).is_not_null() & pl.col("is_ours") for f in _ANN_COLUMNS},
    ).with_columns(pl.exclude("range_idx", "priority").fill_null(False))
    # The chain is sorted by query, then depth (outermost first), and a group keeps that order.
    at = pl.col("range_idx")
    innermost = ("annotation", "cpu_op", "profiler_step", *_ANN_COLUMNS)
    best = pl.col("priority").filter(pl.col("op")).max()
    picked = (
        chain.join(flags, on="range_idx", how="left", maintain_order="left")
        .group_by("query_idx")
        .agg(
            *(at.filter(pl.col(key)).last().alias(key) for key in innermost),
            # The first (outermost) op at the highest rule priority: on ties the SDPA call, not
            # its math-backend children, carries the user-facing q/k shapes.
            at.filter(pl.col("op") & (pl.col("priority") == best)).first().alias("op"),
            in_scope=pl.col("scope").any(),
        )
    )
    pick = (
        pl.DataFrame({"query_idx": pl.int_range(units, dtype=pl.UInt32, eager=True)})
        .join(picked, on="query_idx", how="left", maintain_order="left")
        .with_columns(pl.col("in_scope").fill_null(False))
    )
    schema = ranges.schema
    return ranges.select(
        **{f: _gathered(schema, f, pick[f]) for f in _ANN_COLUMNS},
        annotation=_gathered(schema, "name", pick["annotation"]),
        cpu_op=_gathered(schema, "name", pick["cpu_op"]),
        profiler_step=_gathered(schema, "profiler_step", pick["profiler_step"]),
        **{c: _gathered(schema, c, pick["op"]) for c in _COST_KEYS if c != "op_name"},
        op_name=_gathered(schema, "name", pick["op"]),
        op_instance=pl.lit(pick["op"]),
        in_attention_scope=pl.lit(pick["in_scope"]),
    )


_ANN_COLUMNS = tuple(f"ann_{f}" for f in ANNOTATION_FIELDS)


def _gathered(schema: pl.Schema, column: str, at: pl.Series) -> pl.Expr:
    """``column`` of the range picked for each unit; null where none is (``at`` null)."""
    if at.null_count() == len(at):  # skip the gather: our annotations are absent from most traces
        return pl.repeat(None, len(at), dtype=schema[column])
    return pl.col(column).gather(at)


def _op_signatures(keys: pl.DataFrame) -> pl.DataFrame:
    """Per distinct call signature of the deciding attention / GEMM / conv ops: the q/k shapes
    of an attention call (``shapes.py``), the FLOPs and bytes of a GEMM or conv (``opcost.py``).
    One table and one join for both: an op's name fixes its operator, so a signature is only
    ever one of the two kinds, and the other kind's columns stay null."""
    distinct = keys.filter(pl.col("op_operator").is_in(["attention", "linear", "conv"])).select(_COST_KEYS).unique()
    shapes, costs = [], []
    for name, dims, concrete, types, operator in distinct.iter_rows():
        attention = operator == "attention"
        shapes.append(qk_shapes(name, dims) if attention else (None,) * len(SHAPE_COLUMNS))
        costs.append((None, None) if attention else op_cost(name, dims, concrete, types, operator))
    return distinct.with_columns(
        **{c: pl.Series([v[i] for v in shapes], dtype=pl.Int64) for i, c in enumerate(SHAPE_COLUMNS)},
        instance_flops=pl.Series([c[0] for c in costs], dtype=pl.Int64),
        instance_bytes=pl.Series([c[1] for c in costs], dtype=pl.Int64),
    )


def _decide(k: pl.LazyFrame) -> pl.LazyFrame:
    """``operator`` from the most specific source that has one, with that ``operator_source``,
    its ``rule`` id, the attention type the rule gives, and the deciding op's name."""
    kind_op = pl.col("kind").replace_strict(rules.KIND_OPERATORS, default=None, return_dtype=pl.String)
    scope_op = pl.when(
        pl.col("in_attention_scope") & pl.col("cpu_op").is_in(list(rules.ATTENTION_BUILDING_BLOCKS))
    ).then(pl.lit("attention"))
    no = pl.lit(None, dtype=pl.String)
    # (source, operator, rule id, attention type the rule gives), most specific first
    candidates = [
        ("kind", kind_op, no, no),
        (
            "kernel_name",
            pl.col("authoritative_operator"),
            pl.col("authoritative_rule"),
            pl.col("authoritative_attention"),
        ),
        ("annotation", pl.col("ann_operator"), no, no),
        ("op", pl.col("op_operator"), pl.concat_str(pl.lit("op."), pl.col("op_operator")), no),
        ("scope", scope_op, pl.lit("attention-scope"), no),
        ("kernel_name", pl.col("name_operator"), pl.col("name_rule"), pl.col("name_attention")),
    ]
    operator, source, rule, rule_attention = pl.lit("other"), pl.lit("none"), no, no
    for label, expr, rule_id, attention in reversed(candidates):
        hit = expr.is_not_null()
        operator = pl.when(hit).then(expr).otherwise(operator)
        source = pl.when(hit).then(pl.lit(label)).otherwise(source)
        rule = pl.when(hit).then(rule_id).otherwise(rule)
        rule_attention = pl.when(hit).then(attention).otherwise(rule_attention)
    k = k.with_columns(operator=operator, operator_source=source, rule=rule, rule_attention=rule_attention)
    # The op that decided, by name: the best-ranked enclosing op, not the innermost one.
    return k.with_columns(deciding_op=pl.when(pl.col("operator_source") == "op").then(pl.col("op_name")))


def _resolve(k: pl.LazyFrame) -> pl.LazyFrame:
    k = _decide(k)
    from_op = pl.col("operator") == "attention"
    shape = {
        f: pl.coalesce(f"ann_{f}", pl.when(from_op).then(pl.col(f"op_{f}")))
        for f in ("seq_q", "seq_kv", "batch", "heads", "head_dim")
    }
    k = k.with_columns(**shape)
    inferred_type = (
        pl.when(~from_op | pl.col("seq_q").is_null())
        .then(None)
        .when(pl.col("seq_q") == pl.col("seq_kv"))
        .then(pl.lit("self"))
        .when(pl.col("seq_q") == 1)
        .then(pl.lit("causal-decode"))
        .otherwise(pl.lit("cross"))
    )
    # An op's cost is counted once, on its first kernel; its other kernels carry 0 so sums
    # over kernel rows give the op's FLOPs, and "not null" marks time the FLOPs cover.
    costed = pl.col("instance_flops").is_not_null() & (pl.col("operator") == pl.col("op_operator"))
    first = pl.col("query_idx") == pl.col("query_idx").min().over("op_instance")
    return k.with_columns(
        attention_type=pl.coalesce("ann_attention_type", "rule_attention", inferred_type),
        component="ann_component",
        step=pl.coalesce("ann_step", "profiler_step"),
        op_flops=pl.when(costed).then(pl.when(first).then(pl.col("instance_flops")).otherwise(0)),
        op_bytes=pl.when(costed).then(pl.when(first).then(pl.col("instance_bytes")).otherwise(0)),
    )
