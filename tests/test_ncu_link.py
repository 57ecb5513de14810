"""Nsight Compute counters joined to a real timeline run: launches linked to the run's kernels
by name and order, counters summed by operator and kernel, and the one roofline table that
says which numbers are counters and which analytic.

The timeline is a real A100 Kineto trace.  No ncu profile of that same workload exists, so
each test writes the ncu CSV a profile of it would give (ncu's own long layout, one row per
launch × metric, in launch order) with counter values derived from the launch index; the
expectations are recomputed here from those values and the kernel table."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select

from tests.conftest import KINETO_DIR, Database
from tracehouse.analyses.counters import counter_groups
from tracehouse.analyses.roofline import roofline_by
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import RunMeta
from tracehouse.ingest.ncu_link import kernel_base_name
from tracehouse.ingest.ncu_load import ingest_ncu
from tracehouse.ingest.units import ingest_all, plan_units
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel, NcuMetric, Run, Symbol

TRACE = KINETO_DIR / "a100_alexnet_small.json.gz"
A100_TENSOR_FACTOR = 4096  # HMMA.16816: 16·8·16 FMAs × 2
HEADER = [
    "ID",
    "Process ID",
    "Process Name",
    "Host Name",
    "Kernel Name",
    "Context",
    "Stream",
    "Block Size",
    "Grid Size",
    "Device",
    "CC",
    "Section Name",
    "Metric Name",
    "Metric Unit",
    "Metric Value",
]


def _counters(i: int) -> dict[str, tuple[str, float]]:
    dram = 100.0 * (i + 1) + 7
    return {
        "sm__sass_thread_inst_executed_op_ffma_pred_on.sum": ("inst", 1000.0 * (i + 1)),
        "sm__sass_thread_inst_executed_op_fadd_pred_on.sum": ("inst", 10.0 * i),
        "sm__sass_thread_inst_executed_op_fmul_pred_on.sum": ("inst", 3.0),
        "sm__inst_executed_pipe_tensor_op_hmma.sum": ("inst", float(i % 3)),
        "dram__bytes.sum": ("byte", dram),
        "lts__t_bytes.sum": ("byte", 2 * dram),
        "l1tex__t_bytes.sum": ("byte", 3 * dram),
        "sm__cycles_elapsed.avg": ("cycle", 1000.0 + i),
        "sm__cycles_elapsed.avg.per_second": ("cycle/second", 1.41e9),
    }


def _flops(i: int) -> float:
    v = {k: val for k, (_, val) in _counters(i).items()}
    op = lambda o: v[f"sm__sass_thread_inst_executed_op_{o}_pred_on.sum"]  # noqa: E731
    return (
        2 * op("ffma") + op("fadd") + op("fmul") + A100_TENSOR_FACTOR * v["sm__inst_executed_pipe_tensor_op_hmma.sum"]
    )


def write_ncu_csv(path: Path, names: list[str], metrics: set[str] | None = None) -> Path:
    """The long CSV ncu --csv prints for these launches (``metrics``: only those, as NERSC's
    one-metric-per-pass scripts write them), program output and all."""
    with path.open("w", newline="") as fh:
        fh.write("==PROF== Connected to process 4242 (/usr/bin/python3)\ntraining step 1\n")
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(HEADER)
        for i, name in enumerate(names):
            for metric, (unit, value) in _counters(i).items():
                if metrics is not None and metric not in metrics:
                    continue
                writer.writerow(
                    [
                        i,
                        4242,
                        "python3",
                        "127.0.0.1",
                        name,
                        1,
                        7,
                        "(256, 1, 1)",
                        "(80, 1, 1)",
                        0,
                        "8.0",
                        "Command line profiler metrics",
                        metric,
                        unit,
                        f"{value:,.2f}",
                    ]
                )
        fh.write("==PROF== Disconnected from process 4242\n")
    return path


def _timeline(db: Database, run_id: int) -> pl.DataFrame:
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Kernel.id, Symbol.text, Kernel.operator)
            .join(Symbol, Symbol.id == Kernel.name_id)
            .where(Kernel.run_id == run_id, Kernel.kind == "kernel")
            .order_by(Kernel.seq)
        ).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=["id", "name", "operator"], orient="row")


def _links(db: Database, run_id: int) -> list[int | None]:
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(NcuMetric.kernel_id, NcuMetric.kernel_ref)
            .where(NcuMetric.run_id == run_id)
            .distinct()
            .order_by(NcuMetric.kernel_id)
        ).all()
    return [r[1] for r in rows]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    if not TRACE.is_file():
        pytest.skip(f"shared trace not found at {TRACE}")
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / TRACE.name).symlink_to(TRACE)  # the shared file itself, not a copy
    return folder


def test_a_folder_of_trace_and_counters_is_one_linked_run(db: Database, raw_dir: Path, folder: Path) -> None:
    [first] = ingest_all(db.engine, plan_units([folder]), raw_dir=raw_dir)
    timeline = _timeline(db, first[1].run_id)
    # The profile of that workload, with a detour through another extension: the content decides.
    write_ncu_csv(folder / "profile.log", timeline["name"].to_list())
    units = plan_units([folder])
    assert [u.format for u in units] == ["kineto", "ncu"]
    (_, again), (_, counted) = ingest_all(db.engine, units, raw_dir=raw_dir)
    assert not again.created and counted.run_id == again.run_id and counted.created
    assert _links(db, counted.run_id) == timeline["id"].to_list()
    with session_scope(db.engine) as s:
        groups = counter_groups(s, counted.run_id, "operator")
    flops = timeline.with_row_index("i").with_columns(flops=pl.col("i").map_elements(_flops, return_dtype=pl.Float64))
    expected = flops.group_by("operator").agg(instances=pl.len(), flops=pl.col("flops").sum())
    got = groups.select("operator", "instances", "flops").sort("operator")
    assert got["operator"].to_list() == expected.sort("operator")["operator"].to_list()
    assert got["instances"].to_list() == expected.sort("operator")["instances"].to_list()
    for g, e in zip(got["flops"], expected.sort("operator")["flops"], strict=True):
        assert g == pytest.approx(e, rel=1e-12)


def test_roofline_says_counters_where_there_are_some_and_analytic_elsewhere(
    db: Database, raw_dir: Path, folder: Path
) -> None:
    [(_, run)] = ingest_all(db.engine, plan_units([folder]), raw_dir=raw_dir)
    timeline = _timeline(db, run.run_id)
    convs = timeline.filter(pl.col("operator") == "conv")
    # ncu -k regex:conv with --print-kernel-base function: only conv launches, short names.
    short = [kernel_base_name(n) for n in convs["name"]]
    assert all("(" not in n and "<" not in n for n in short)
    counted = ingest_ncu(db.engine, [write_ncu_csv(folder / "conv.csv", short)], raw_dir=raw_dir, run_id=run.run_id)
    assert counted.run_id == run.run_id and not counted.warnings
    assert _links(db, run.run_id) == convs["id"].to_list()
    with session_scope(db.engine) as s:
        table = roofline_by(s, run.run_id, "operator")
        by_kernel = roofline_by(s, run.run_id, "kernel")
    sources = dict(zip(table["operator"], table["source"], strict=True))
    assert sources.pop("conv") == "counters" and set(sources.values()) == {"analytic"}
    conv = table.filter(pl.col("operator") == "conv").row(0, named=True)
    assert conv["instances"] == convs.height
    assert conv["flops"] == pytest.approx(sum(_flops(i) for i in range(convs.height)), rel=1e-12)
    assert conv["l1_bytes"] == pytest.approx(3 * conv["dram_bytes"]) and conv["ai_l2"] == pytest.approx(
        conv["ai_dram"] / 2
    )
    # Per kernel, linked launches group under the timeline's full names: each conv kernel is
    # one counters row, never also an analytic one.
    counted_kernels = by_kernel.filter(pl.col("source") == "counters")["kernel"]
    assert set(counted_kernels) == set(convs["name"]) and counted_kernels.is_unique().all()
    assert by_kernel["kernel"].is_unique().all()
    linear = table.filter(pl.col("operator") == "linear").row(0, named=True)
    assert linear["l2_bytes"] is None and linear["instances"] == timeline.filter(pl.col("operator") == "linear").height


def test_unmatched_launches_are_reported_and_bad_targets_write_nothing(
    db: Database, raw_dir: Path, folder: Path, tmp_path: Path
) -> None:
    [(_, run)] = ingest_all(db.engine, plan_units([folder]), raw_dir=raw_dir)
    names = _timeline(db, run.run_id)["name"].to_list()
    csv_path = write_ncu_csv(tmp_path / "p.csv", [*names[:5], "my_custom_kernel(float*)"])
    with pytest.raises(NotFound):
        ingest_ncu(db.engine, [csv_path], raw_dir=raw_dir, run_id=run.run_id + 100)
    [trace_unit] = plan_units([folder])
    with pytest.raises(BadInput, match="only Nsight Compute"):
        next(ingest_all(db.engine, [trace_unit], raw_dir=raw_dir, run_id=run.run_id))
    with session_scope(db.engine) as s:
        assert s.scalar(select(NcuMetric.id).limit(1)) is None
    result = ingest_ncu(db.engine, [csv_path], RunMeta(), raw_dir=raw_dir, run_id=run.run_id)
    assert result.warnings == {"ncu_launches_unmatched": 1}
    assert _links(db, run.run_id)[:5] == _timeline(db, run.run_id)["id"].to_list()[:5]
    assert _links(db, run.run_id)[5] is None
    other = write_ncu_csv(tmp_path / "q.csv", names[:2])
    with pytest.raises(BadInput, match="already has Nsight Compute counters"):
        ingest_ncu(db.engine, [other], raw_dir=raw_dir, run_id=run.run_id)


@pytest.mark.parametrize(
    ("name", "base"),
    [
        (
            "void at::native::(anonymous namespace)::max_pool_forward_nchw<float, float>(int, float const*)",
            "max_pool_forward_nchw",
        ),
        ("cudnn::gemm::computeOffsetsKernel(cudnn::gemm::ComputeOffsetsParams)", "computeOffsetsKernel"),
        (
            "volta_fp16_s884cudnn_fp16_256x128_ldg8_relu_filter1x1_stg8_interior_nchw_nn_v1",
            "volta_fp16_s884cudnn_fp16_256x128_ldg8_relu_filter1x1_stg8_interior_nchw_nn_v1",
        ),
        (
            (
                "void at::native::modern::vectorized_elementwise_kernel<4, at::native::threshold_kernel_impl<c10::Half>"
                "(at::TensorIterator&, c10::Half, c10::Half)::{lambda(c10::Half, c10::Half)#1}, at::detail::Array<char*, 3> >"
                "(int, at::native::threshold_kernel_impl<c10::Half>(at::TensorIterator&, c10::Half, c10::Half)"
                "::{lambda(c10::Half, c10::Half)#1}, at::detail::Array<char*, 3>)"
            ),
            "vectorized_elementwise_kernel",
        ),
    ],
)
def test_kernel_base_name(name: str, base: str) -> None:
    assert kernel_base_name(name) == base


def test_a_copy_of_the_shared_ncu_folder_is_one_run(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    from tests.test_ncu_ingest import NCU

    if not NCU.is_dir():
        pytest.skip(f"shared ncu traces not found at {NCU}")
    [unit] = plan_units([NCU])
    assert unit.format == "ncu" and len(unit.paths) == len(list(NCU.glob("*.csv")))
    odd = tmp_path / "renamed.txt"  # ncu output saved under another name is still ncu
    shutil.copyfile(unit.paths[0], odd)
    assert plan_units([odd])[0].format == "ncu"


def test_cli_ingests_a_folder_and_prints_the_roofline_by_operator(db: Database, folder: Path) -> None:
    import json

    from tests.test_cli import _cli

    first = json.loads(_cli("ingest", str(folder), "--db", db.url, "--json").stdout)
    write_ncu_csv(folder / "ncu.csv", _timeline(db, first[0]["run_id"])["name"].to_list())
    out = _cli("ingest", str(folder), "--db", db.url, "--json")
    assert out.returncode == 0, out.stderr
    trace, counters = json.loads(out.stdout)
    assert (trace["format"], counters["format"]) == ("kineto", "ncu")
    assert counters["run_id"] == trace["run_id"] == first[0]["run_id"] and counters["created"]
    shown = _cli("roofline", str(trace["run_id"]), "--by", "operator", "--format", "json", "--db", db.url)
    assert shown.returncode == 0, shown.stderr
    with session_scope(db.engine) as s:
        expected = roofline_by(s, trace["run_id"], "operator")
    got = pl.DataFrame(json.loads(shown.stdout))
    assert got["operator"].to_list() == expected["operator"].to_list()
    assert got["source"].to_list() == expected["source"].to_list()
    assert set(got["source"]) == {"counters", "analytic"}  # memcpy / memset are not profiled


def test_counters_by_attention_type_temporal_vs_spatial(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    """Fig 13's question: a video UNet's spatial and temporal attention kernels, L1 / L2 side by side."""
    from tests.analysis_readings import ATTN, gpu_trace

    spatial = ATTN.format(t="spatial", sq=1024, skv=1024, b=16, h=8, d=64)
    temporal = ATTN.format(t="temporal", sq=16, skv=16, b=1024, h=8, d=64)
    calls = [(spatial, [30.0, 20.0]), ("th|op=conv", [15.0]), (temporal, [10.0, 5.0, 5.0]), (spatial, [30.0])]
    trace = gpu_trace(tmp_path / "video.json.gz", "NVIDIA A100-SXM4-80GB", calls)
    [(_, run)] = ingest_all(db.engine, plan_units([trace]), raw_dir=raw_dir)
    with session_scope(db.engine) as s:
        keys = (
            s.execute(select(Kernel.attention_type).where(Kernel.run_id == run.run_id).order_by(Kernel.seq))
            .scalars()
            .all()
        )
    names = _timeline(db, run.run_id)["name"].to_list()
    ingest_ncu(db.engine, [write_ncu_csv(tmp_path / "ncu.csv", names)], raw_dir=raw_dir, run_id=run.run_id)
    with session_scope(db.engine) as s:
        groups = counter_groups(s, run.run_id, "attention_type").sort("attention_type")
        table = roofline_by(s, run.run_id, "attention_type").sort("attention_type")
    assert groups["attention_type"].to_list() == ["spatial", "temporal"]
    for row in groups.iter_rows(named=True):
        mine = [i for i, k in enumerate(keys) if k == row["attention_type"]]
        dram = [_counters(i)["dram__bytes.sum"][1] for i in mine]
        assert row["instances"] == len(mine)
        assert row["flops"] == pytest.approx(sum(_flops(i) for i in mine), rel=1e-12)
        assert (row["l2_bytes"], row["l1_bytes"]) == pytest.approx((2 * sum(dram), 3 * sum(dram)))
        seconds = sum((1000.0 + i) / 1.41e9 for i in mine)
        assert row["l1_bytes_per_s"] == pytest.approx(3 * sum(dram) / seconds)
    assert table["source"].to_list() == ["counters", "counters"]
    assert table["instances"].to_list() == groups["instances"].to_list()


def test_launch_order_not_start_order_across_streams(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    """ncu numbers launches as they were issued; on a multi-stream trace, kernels of one name can
    *start* in another order.  The k-th launch must meet the k-th launched kernel."""
    trace = KINETO_DIR / "a100_rank3_of8_training.json.gz"
    if not trace.is_file():
        pytest.skip(f"shared trace not found at {trace}")
    run_id = ingest_file_for(db, raw_dir, trace)
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(Kernel.id, Symbol.text, Kernel.correlation, Kernel.seq)
            .join(Symbol, Symbol.id == Kernel.name_id)
            .where(Kernel.run_id == run_id, Kernel.kind == "kernel")
        ).all()
    kernels = pl.DataFrame([tuple(r) for r in rows], schema=["id", "name", "correlation", "seq"], orient="row")
    launched = kernels.sort("correlation")
    by_start = kernels.sort("seq")
    rank = pl.int_range(pl.len()).over("name")
    differ = launched.with_columns(r=rank).join(by_start.with_columns(r=rank), on=["name", "r"])
    assert (differ["id"] != differ["id_right"]).sum() > 0  # else this trace cannot tell the orders apart
    ingest_ncu(
        db.engine, [write_ncu_csv(tmp_path / "ncu.csv", launched["name"].to_list())], raw_dir=raw_dir, run_id=run_id
    )
    assert _links(db, run_id) == launched["id"].to_list()


def ingest_file_for(db: Database, raw_dir: Path, trace: Path) -> int:
    from tracehouse.ingest.pipeline import ingest_file

    return ingest_file(db.engine, trace, raw_dir=raw_dir).run_id


def test_counters_of_another_workload_are_refused(db: Database, raw_dir: Path, folder: Path, tmp_path: Path) -> None:
    [(_, run)] = ingest_all(db.engine, plan_units([folder]), raw_dir=raw_dir)
    other = write_ncu_csv(tmp_path / "other.csv", ["deepcam_kernel_a(float*)", "deepcam_kernel_b(int)"])
    with pytest.raises(BadInput, match="none of the 2 profiled launches"):
        ingest_ncu(db.engine, [other], raw_dir=raw_dir, run_id=run.run_id)
    same = write_ncu_csv(tmp_path / "copy.csv", ["x"])
    (tmp_path / "copy2.csv").write_bytes(same.read_bytes())
    with pytest.raises(BadInput, match="are the same file"):
        ingest_ncu(db.engine, [same, tmp_path / "copy2.csv"], raw_dir=raw_dir)
    with session_scope(db.engine) as s:
        assert s.scalar(select(NcuMetric.id).limit(1)) is None
        assert s.scalar(select(func.count()).select_from(Run)) == 1


def test_ncu_output_after_a_printed_dict_is_still_ncu(tmp_path: Path) -> None:
    csv_path = write_ncu_csv(tmp_path / "run.csv", ["k(int)"])
    text = csv_path.read_text()
    csv_path.write_text("{'batch_size': 8, 'lr': 0.1}\n" + text)
    assert plan_units([csv_path])[0].format == "ncu"
