"""CUDA graphs: one ``cudaGraphLaunch`` runs many kernels, all carrying its correlation id.
The launch is counted once, its kernels are attributed to the graph's launching op, get no
queue delay of their own and are never launch-bound; each run says how much of its GPU time
graph kernels took."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from tests.attribution_docs import Doc
from tests.conftest import SHARED_TRACES, Database
from tracehouse.analyses.launches import launch_overhead
from tracehouse.ingest.kineto import parse_kineto
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel, Run, Symbol

SHARED = Path(os.environ.get("TRACEHOUSE_SHARED_TRACES") or SHARED_TRACES)
GRAPH_TRACE = SHARED / "kineto" / "a100_record_shapes.json.gz"  # 70 cudaGraphLaunch calls


def _graph_doc(path: Path) -> Path:
    """A graph of three short kernels launched inside ``aten::mm``, then one plain launch."""
    doc = Doc()
    doc.op("aten::mm", ts=0, dur=200)
    graph = doc.launch("cudaGraphLaunch", ts=10, dur=20)
    for i in range(3):
        doc.kernel(
            "void at::native::vectorized_elementwise_kernel<4, F>(int, F)", ts=40 + 6 * i, dur=5, correlation=graph
        )
    doc.op("aten::add", ts=300, dur=50)
    plain = doc.launch("cudaLaunchKernel", ts=310, dur=5)
    doc.kernel("void at::native::vectorized_elementwise_kernel<4, F>(int, F)", ts=320, dur=2, correlation=plain)
    return doc.write(path)


def test_graph_kernels_belong_to_the_graphs_launching_op(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    run_id = ingest_file(db.engine, _graph_doc(tmp_path / "g.json.gz"), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Kernel.graph, Kernel.operator, Kernel.operator_source, Symbol.text)
            .join(Symbol, Symbol.id == Kernel.deciding_op_id, isouter=True)
            .where(Kernel.run_id == run_id)
            .order_by(Kernel.seq)
        ).all()
        run = s.get(Run, run_id)
        assert (run.graph_ns, run.total_ns) == (15_000, 17_000)
    assert [tuple(r) for r in rows] == [(True, "linear", "op", "aten::mm")] * 3 + [
        (False, "elementwise", "op", "aten::add")
    ]


def test_a_graph_launch_counts_once_and_its_kernels_are_never_launch_bound(
    db: Database, raw_dir: Path, tmp_path: Path
) -> None:
    run_id = ingest_file(db.engine, _graph_doc(tmp_path / "g.json.gz"), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        table = launch_overhead(s, run_id, "operator")
    got = {r["operator"]: r for r in table.iter_rows(named=True)}
    graph, plain = got["linear"], got["elementwise"]
    assert (graph["kernels"], graph["graph_kernels"], graph["launches"], graph["launch_ns"]) == (3, 3, 1, 20_000)
    assert graph["launch_bound"] == 0 and graph["launch_bound_share"] is None
    assert graph["delay_median_ns"] is None and graph["delay_max_ns"] is None
    assert (plain["launches"], plain["launch_ns"], plain["launch_bound"], plain["delay_max_ns"]) == (1, 5_000, 1, 5_000)


@pytest.fixture
def graph_trace() -> Path:
    if not GRAPH_TRACE.is_file():
        pytest.skip(f"shared trace not found at {GRAPH_TRACE}")
    return GRAPH_TRACE


def test_real_graph_trace_charges_each_launch_call_once(db: Database, raw_dir: Path, graph_trace: Path) -> None:
    # The reference, straight from the parsed trace: every launch call that enqueued GPU work,
    # its duration once, however many kernels it ran.
    parsed = parse_kineto(graph_trace)
    calls = parsed.launches.join(
        parsed.gpu_events.select("correlation", "dur_ns", "start_ns"), on="correlation", suffix="_gpu"
    )
    graph = calls.filter(pl.col("name") == "cudaGraphLaunch")
    per_call = calls.unique("correlation")
    run_id = ingest_file(db.engine, graph_trace, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        table = launch_overhead(s, run_id, "kernel")
        run = s.get(Run, run_id)
    assert graph.height == 345 and graph["correlation"].n_unique() > 1
    assert table["graph_kernels"].sum() == graph.height
    assert table["launches"].sum() == per_call.height
    assert table["launch_ns"].sum() == per_call["dur_ns"].sum()
    assert run.graph_ns == graph["dur_ns_gpu"].sum()
    # Graph kernels never count as launch-bound, and carry no queue delay of their own.
    only_graph = table.filter(pl.col("kernels") == pl.col("graph_kernels"))
    assert only_graph.height > 0
    assert only_graph["launch_bound"].sum() == 0 and only_graph["delay_max_ns"].null_count() == only_graph.height
