"""A Kineto trace from the CUPTI range profiler (``cuda_profiler_range`` events carrying each
kernel's counters, no ``kernel`` events) is a GPU run on the trace's device: each range becomes
the kernel it measured, joined to its launch call (and so its ops), and its counters become the
run's per-launch counter rows.  Cross-checked against HTA's ``get_cupti_counter_data_with_operators``
on HTA's own example trace (77 ranges: names, bottom-level op and every counter equal); that
file is not ours to keep, so here the shape is built small."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import func, select

from tests.attribution_docs import PID, TID, Doc
from tests.conftest import Database
from tracehouse.analyses.counters import counter_roofline
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.reingest import reingest_run
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Hardware, Kernel, NcuMetric, Run, Symbol, Trace

CONV = "void fft2d_r2c_32x32<float, false, 5u, true>(float2*, float const*, int)"
ADD = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float> >(int, F)"


def _counter_doc(path: Path, ranges: int = 2) -> Path:
    doc = Doc()
    doc.op("aten::conv2d", ts=0, dur=100)
    doc.launch("cudaLaunchKernel", ts=10, dur=5)
    doc.op("aten::add", ts=200, dur=50)
    doc.launch("cudaLaunchKernel", ts=210, dur=5)
    doc.launch("cudaMemcpyAsync", ts=300, dur=5)  # a launch call, but not of a kernel
    for i, (name, ffma) in enumerate([(CONV, 1000), (ADD, 0), (ADD, 7)][:ranges]):
        doc.events.append(
            {
                "ph": "X",
                "cat": "cuda_profiler_range",
                "name": name,
                "pid": 0,
                "tid": 0,
                "ts": 1000 + 500 * i,
                "dur": 400,
                "args": {
                    "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum": ffma,
                    "smsp__sass_thread_inst_executed_op_fadd_pred_on.sum": 10 * (i + 1),
                },
            }
        )
    assert (PID, TID) != (0, 0)  # ranges sit on the device's row, launches on the host's
    return doc.write(path)


def test_counter_trace_is_a_gpu_run_with_linked_counters(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    run_id = ingest_file(db.engine, _counter_doc(tmp_path / "c.json.gz"), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        run = s.get(Run, run_id)
        hardware = s.get(Hardware, run.hardware_id).name
        warnings = orjson.loads(s.scalar(select(Trace.warnings).where(Trace.run_id == run_id)))
        kernels = s.execute(
            select(Symbol.text, Kernel.operator, Kernel.start_ns, Kernel.dur_ns, Kernel.launch_ns)
            .join(Symbol, Symbol.id == Kernel.name_id)
            .where(Kernel.run_id == run_id)
            .order_by(Kernel.seq)
        ).all()
        points = counter_roofline(s, run_id).sort("kernel_id")
    assert (run.device_kind, run.kernel_count) == ("gpu", 2) and "A100" in hardware
    assert warnings == {"cupti_range_profiler_ranges": 2}
    assert [tuple(k) for k in kernels] == [
        (CONV, "conv", 1_000_000, 400_000, 10_000),
        (ADD, "elementwise", 1_500_000, 400_000, 210_000),
    ]
    assert points["operator"].to_list() == ["conv", "elementwise"]
    assert points["flops_fp32"].to_list() == [2 * 1000 + 10, 20.0]  # 2·fma + add


def test_reingest_keeps_the_counters_linked_once(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    run_id = ingest_file(db.engine, _counter_doc(tmp_path / "c.json.gz"), raw_dir=raw_dir).run_id
    result = reingest_run(db.engine, run_id)
    with session_scope(db.engine) as s:
        rows = s.scalar(select(func.count()).select_from(NcuMetric).where(NcuMetric.run_id == run_id))
        unlinked = s.scalar(
            select(func.count())
            .select_from(NcuMetric)
            .where(NcuMetric.run_id == run_id, NcuMetric.kernel_ref.is_(None))
        )
    assert (result.counters_linked, rows, unlinked) == (2, 4, 0)


def test_ranges_that_do_not_pair_with_launches_still_make_a_gpu_run(
    db: Database, raw_dir: Path, tmp_path: Path
) -> None:
    run_id = ingest_file(db.engine, _counter_doc(tmp_path / "c.json.gz", ranges=3), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        run = s.get(Run, run_id)
        warnings = orjson.loads(s.scalar(select(Trace.warnings).where(Trace.run_id == run_id)))
        launched = s.scalar(
            select(func.count()).select_from(Kernel).where(Kernel.run_id == run_id, Kernel.launch_ns.is_not(None))
        )
    assert (run.device_kind, run.kernel_count, launched) == ("gpu", 3, 0)
    assert warnings == {"counter_ranges_without_launch": 3, "cupti_range_profiler_ranges": 3}
