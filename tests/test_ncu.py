"""Nsight Compute CSV ingest, checked against an independent csv-module parse of real files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import polars as pl
import pytest

from tracehouse.core.device_specs import lookup, tensor_flops_per_inst
from tracehouse.core.errors import BadTrace
from tracehouse.core.ncu_metrics import ncu_wide, roofline_inputs
from tracehouse.ingest.ncu import parse_ncu_csv

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
NCU_DIR = TRACES / "ncu" / "v100_deepcam_fp32_O1_fw"
needs_traces = pytest.mark.skipif(not NCU_DIR.is_dir(), reason=f"real ncu CSVs not present at {NCU_DIR}")


# The factor the catalogue gives the GPU these files came from (the test's own figure is 512).
V100_FACTOR = tensor_flops_per_inst(lookup("Tesla V100-SXM2-32GB").compute_capability)


def _files() -> list[Path]:
    return sorted(NCU_DIR.glob("*.csv"))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """Independent reader: skip to the header line, then the csv module."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))
    return list(csv.DictReader(lines[start:]))


@pytest.fixture(scope="module")
def merged() -> pl.DataFrame:
    if not NCU_DIR.is_dir():
        pytest.skip(f"real ncu CSVs not present at {NCU_DIR}")
    return parse_ncu_csv(_files())


@needs_traces
def test_merged_table_has_every_kernel_and_metric(merged: pl.DataFrame) -> None:
    files = _files()
    assert len(files) == 12
    ids = None
    for path in files:
        rows = _csv_rows(path)
        file_ids = {int(r["ID"]) for r in rows}
        ids = file_ids if ids is None else ids
        assert file_ids == ids  # every one-metric run saw the same launches
        [metric] = {r["Metric Name"] for r in rows}
        got = merged.filter(pl.col("metric_name") == metric)
        assert got.height == len(file_ids)
        assert set(got["source_file"]) == {path.name}
    assert merged["kernel_id"].n_unique() == len(ids) == 797
    assert merged.height == 12 * 797
    assert merged["metric_value"].null_count() == 0


@needs_traces
@pytest.mark.parametrize("kernel_id", [0, 2, 10, 400, 744, 796])
def test_values_match_independent_parse(merged: pl.DataFrame, kernel_id: int) -> None:
    for path in _files():
        [row] = [r for r in _csv_rows(path) if int(r["ID"]) == kernel_id]
        got = merged.filter((pl.col("kernel_id") == kernel_id) & (pl.col("metric_name") == row["Metric Name"])).row(
            0, named=True
        )
        assert got["metric_value"] == float(row["Metric Value"].replace(",", ""))
        assert got["metric_unit"] == row["Metric Unit"]
        assert got["kernel_name"] == row["Kernel Name"]
        assert got["process_id"] == int(row["Process ID"])
        assert (got["context"], got["stream"]) == (int(row["Context"]), int(row["Stream"]))


def _independent_roofline(kernel_id: int) -> dict[str, float]:
    v = {}
    for path in _files():
        [row] = [r for r in _csv_rows(path) if int(r["ID"]) == kernel_id]
        v[row["Metric Name"]] = float(row["Metric Value"])
    op = lambda o: v[f"sm__sass_thread_inst_executed_op_{o}_pred_on.sum"]  # noqa: E731
    flops = (
        2 * op("ffma")
        + op("fadd")
        + op("fmul")
        + 2 * op("hfma")
        + op("hadd")
        + op("hmul")
        + 512 * v["sm__inst_executed_pipe_tensor.sum"]
    )
    time_s = v["sm__cycles_elapsed.avg"] / v["sm__cycles_elapsed.avg.per_second"]
    return {
        "flops": flops,
        "time_s": time_s,
        "ai_dram": flops / v["dram__bytes.sum"],
        "ai_l2": flops / v["lts__t_bytes.sum"],
        "ai_l1": flops / v["l1tex__t_bytes.sum"],
        "gflops_per_s": flops / time_s / 1e9,
    }


@needs_traces
@pytest.mark.parametrize("kernel_id", [2, 10, 680, 744, 764])
def test_roofline_matches_independent_computation(merged: pl.DataFrame, kernel_id: int) -> None:
    wide = ncu_wide(merged)
    assert wide.height == 797
    roof = roofline_inputs(wide, V100_FACTOR).filter(pl.col("kernel_id") == kernel_id).row(0, named=True)
    expected = _independent_roofline(kernel_id)
    assert expected["flops"] > 0
    for key, value in expected.items():
        assert math.isclose(roof[key], value, rel_tol=1e-12), key


@needs_traces
def test_tensor_core_kernels_use_the_v100_factor(merged: pl.DataFrame) -> None:
    roof = roofline_inputs(ncu_wide(merged), V100_FACTOR)
    hmma = roof.filter(pl.col("kernel_name").str.contains("884"))
    assert hmma.height > 0 and (hmma["flops_tensor"] > 0).all()
    # V100 tensor peak is 125 TFLOP/s; counters-based rates must stay below it.
    assert roof["gflops_per_s"].max() < 125_000


@needs_traces
def test_unknown_tensor_factor_leaves_tensor_kernels_unknown(merged: pl.DataFrame) -> None:
    known, unknown = (roofline_inputs(ncu_wide(merged), f) for f in (V100_FACTOR, None))
    tensor = pl.col("tensor_inst") > 0
    assert unknown.filter(tensor)["flops"].null_count() == unknown.filter(tensor).height > 0
    # Launches without tensor instructions keep their FLOPs either way.
    assert unknown.filter(~tensor)["flops"].equals(known.filter(~tensor)["flops"])


LONG_HEADER = (
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
    '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
    '"Metric Value"'
)


def _long_row(kid: int, name: str, metric: str, unit: str, value: str) -> str:
    return (
        f'"{kid}","4242","app","127.0.0.1","{name}","1","7","(256, 1, 1)","(16385, 2, 1)",'
        f'"0","8.9","Command line profiler metrics","{metric}","{unit}","{value}"'
    )


def test_newer_long_format_with_separators_and_na(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text(
        "\n".join(
            [
                "some program output",
                "==PROF== Connected to process 4242 (/bin/app)",
                '==PROF== Profiling "k" - 0: 0%....50%....100% - 9 passes',
                LONG_HEADER,
                _long_row(0, "k(float*)", "dram__bytes.sum", "byte", "1,234,567"),
                _long_row(0, "k(float*)", "gpu__time_duration.sum", "nsecond", "2,048.50"),
                "program output printed between rows",
                _long_row(1, "k(float*)", "dram__bytes.sum", "byte", "n/a"),
                "==PROF== Disconnected from process 4242",
            ]
        )
        + "\n"
    )
    df = parse_ncu_csv([path])
    assert df.select("kernel_id", "metric_name", "metric_value").rows() == [
        (0, "dram__bytes.sum", 1234567.0),
        (0, "gpu__time_duration.sum", 2048.5),
        (1, "dram__bytes.sum", None),
    ]
    row = df.row(0, named=True)
    assert (row["grid_x"], row["grid_y"], row["block_x"], row["device"]) == (16385, 2, 256, 0)


def test_raw_page_melts_to_the_same_long_rows(tmp_path: Path) -> None:
    cols = (
        '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
        '"Block Size","Grid Size","Device","CC"'
    )
    wide = tmp_path / "raw.csv"
    wide.write_text(
        "\n".join(
            [
                "==PROF== Disconnected from process 4242",
                cols + ',"dram__bytes.sum","gpu__time_duration.sum"',
                '"","","","","","","","","","","","byte","nsecond"',
                (
                    '"0","4242","app","127.0.0.1","k(float*)","1","7","(256, 1, 1)","(16385, 2, 1)","0","8.9",'
                    '"1,234,567","2,048.50"'
                ),
                ('"1","4242","app","127.0.0.1","k(float*)","1","7","(256, 1, 1)","(16385, 2, 1)","0","8.9","n/a","10"'),
            ]
        )
        + "\n"
    )
    long = tmp_path / "long.csv"
    long.write_text(
        "\n".join(
            [
                LONG_HEADER,
                _long_row(0, "k(float*)", "dram__bytes.sum", "byte", "1,234,567"),
                _long_row(0, "k(float*)", "gpu__time_duration.sum", "nsecond", "2,048.50"),
                _long_row(1, "k(float*)", "dram__bytes.sum", "byte", "n/a"),
                _long_row(1, "k(float*)", "gpu__time_duration.sum", "nsecond", "10"),
            ]
        )
        + "\n"
    )
    got = parse_ncu_csv([wide]).drop("source_file")
    expected = parse_ncu_csv([long]).drop("source_file")
    assert got.equals(expected)
    assert ncu_wide(parse_ncu_csv([wide]))["gpu__time_duration.sum"].to_list() == [2048.5, 10.0]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world\nno table here\n",
        '{"traceEvents": []}',
        "==PROF== Connected to process 1\n==PROF== Disconnected from process 1\n",
        LONG_HEADER + "\n",  # header, no kernels
    ],
)
def test_not_ncu_output(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BadTrace) as info:
        parse_ncu_csv([path])
    assert "\n" not in info.value.message


def test_files_from_different_runs_are_rejected(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(LONG_HEADER + "\n" + _long_row(0, "k1", "dram__bytes.sum", "byte", "1") + "\n")
    b.write_text(LONG_HEADER + "\n" + _long_row(0, "k2", "lts__t_bytes.sum", "byte", "1") + "\n")
    with pytest.raises(BadTrace, match="not from the same run"):
        parse_ncu_csv([a, b])


def test_no_files() -> None:
    with pytest.raises(BadTrace):
        parse_ncu_csv([])


def test_unquoted_table(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text(
        "ID,Kernel Name,Metric Name,Metric Unit,Metric Value\n"
        "==PROF== Disconnected from process 1\n"
        '3,"k(int, int)",dram__bytes.sum,byte,"1,024"\n'
    )
    assert parse_ncu_csv(path).select("kernel_id", "kernel_name", "metric_value").rows() == [(3, "k(int, int)", 1024.0)]
