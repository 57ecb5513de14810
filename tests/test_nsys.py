"""Nsight Systems SQLite ingest, checked against direct SQL on real exports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

from tracehouse.core.errors import BadTrace
from tracehouse.core.frames import GPU_EVENT_SCHEMA, LAUNCH_SCHEMA, RANGE_SCHEMA
from tracehouse.ingest.nsys import parse_nsys

NSYS_DIR = Path(__file__).resolve().parents[2] / "shared" / "traces" / "nsys"
NVTX_FILE = NSYS_DIR / "rtx4060ti_nvtx_layers.sqlite"  # nsys 2024.6, schema 3.16.1
MEMCPY_FILE = NSYS_DIR / "rtx3060_vecadd_2025.sqlite"  # nsys 2025.5, schema 3.24.0
REAL_FILES = [NVTX_FILE, MEMCPY_FILE]

needs_traces = pytest.mark.skipif(not NSYS_DIR.is_dir(), reason=f"real nsys exports not present at {NSYS_DIR}")


def _sql(path: Path, query: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


@needs_traces
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_kernel_count_and_time_match_sql(path: Path) -> None:
    trace = parse_nsys(path)
    kernels = trace.gpu_events.filter(pl.col("kind") == "kernel")
    [(count, total)] = _sql(path, 'SELECT COUNT(*), SUM("end" - start) FROM CUPTI_ACTIVITY_KIND_KERNEL')
    assert kernels.height == count
    assert kernels["dur_ns"].sum() == total
    assert kernels["name"].null_count() == 0
    assert trace.format == "nsys"
    assert dict(trace.gpu_events.schema) == GPU_EVENT_SCHEMA
    assert dict(trace.launches.schema) == LAUNCH_SCHEMA
    assert dict(trace.ranges.schema) == RANGE_SCHEMA
    # Every kernel has exactly one launch (the runtime call with its correlation id).
    joined = kernels.join(trace.launches, on="correlation", how="left", suffix="_launch")
    assert joined.height == kernels.height
    assert joined["name_launch"].null_count() == 0


@needs_traces
def test_memcpys_and_launch_names_2025() -> None:
    trace = parse_nsys(MEMCPY_FILE)
    memcpys = trace.gpu_events.filter(pl.col("kind") == "memcpy")
    [(count, nbytes)] = _sql(MEMCPY_FILE, "SELECT COUNT(*), SUM(bytes) FROM CUPTI_ACTIVITY_KIND_MEMCPY")
    assert (memcpys.height, memcpys["bytes"].sum()) == (count, nbytes) == (3, 3 * 4194304)
    assert sorted(memcpys["name"]) == [
        "Memcpy Device-to-Host",
        "Memcpy Host-to-Device",
        "Memcpy Host-to-Device",
    ]
    # The "_v7000" callback-version suffix is dropped so names match the Kineto path.
    assert sorted(trace.launches["name"]) == ["cudaLaunchKernel"] + ["cudaMemcpy"] * 3
    kernel = trace.gpu_events.filter(pl.col("kind") == "kernel").row(0, named=True)
    assert (kernel["grid_x"], kernel["block_x"], kernel["stream"]) == (4096, 256, 7)


@needs_traces
def test_memsets_2024() -> None:
    trace = parse_nsys(NVTX_FILE)
    memsets = trace.gpu_events.filter(pl.col("kind") == "memset")
    [(count,)] = _sql(NVTX_FILE, "SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_MEMSET")
    assert memsets.height == count == 512
    assert set(memsets["name"]) == {"Memset (Device)"}


@needs_traces
@pytest.mark.parametrize(
    ("path", "gpu", "sms"),
    [(NVTX_FILE, "4060", 34), (MEMCPY_FILE, "3060", 28)],
    ids=["2024", "2025"],
)
def test_devices(path: Path, gpu: str, sms: int) -> None:
    [device] = parse_nsys(path).devices
    assert gpu in device.name
    assert device.sm_count == sms
    assert device.memory_bytes and device.memory_bytes > 4 * 2**30
    assert device.memory_bandwidth_bytes_s and device.memory_bandwidth_bytes_s > 1e11
    assert device.clock_hz and device.clock_hz > 1e9
    assert device.compute_capability in {"8.6", "8.9"}


# nsys's projection rule: a kernel belongs to the NVTX ranges open on the launching thread
# when its runtime call started; the innermost (latest-starting) one wins.
EXPECTED_PROJECTION = """
SELECT correlationId, text, start FROM (
  SELECT k.correlationId, n.text, n.start,
         ROW_NUMBER() OVER (PARTITION BY k.rowid ORDER BY n.start DESC, n."end" ASC) AS rank
  FROM CUPTI_ACTIVITY_KIND_KERNEL k
  JOIN CUPTI_ACTIVITY_KIND_RUNTIME r
    ON r.correlationId = k.correlationId AND (r.globalTid >> 24) = (k.globalPid >> 24)
  JOIN NVTX_EVENTS n
    ON n.globalTid = r.globalTid AND n.eventType = 59
   AND n.start <= r.start AND r.start <= n."end"
) WHERE rank = 1
"""


def _innermost_from_frames(trace) -> pl.DataFrame:
    kernels = trace.gpu_events.filter(pl.col("kind") == "kernel").select("correlation")
    launches = trace.launches.join(kernels, on="correlation", how="semi")
    ranges = trace.ranges.select(
        "pid",
        "tid",
        pl.col("start_ns").alias("r_start"),
        (pl.col("start_ns") + pl.col("dur_ns")).alias("r_end"),
        pl.col("name").alias("range"),
    )
    return (
        launches.join(ranges, on=["pid", "tid"])
        .filter((pl.col("r_start") <= pl.col("start_ns")) & (pl.col("start_ns") <= pl.col("r_end")))
        .sort(["correlation", "r_start", "r_end"], descending=[False, True, False])
        .group_by("correlation", maintain_order=True)
        .first()
        .select("correlation", "range", "r_start")
    )


@needs_traces
def test_nvtx_projection_matches_sql() -> None:
    trace = parse_nsys(NVTX_FILE)
    [(n_ranges,)] = _sql(NVTX_FILE, "SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59")
    assert trace.ranges.height == n_ranges == 1601
    assert set(trace.ranges["cat"]) == {"annotation"}
    expected = pl.DataFrame(
        _sql(NVTX_FILE, EXPECTED_PROJECTION),
        schema={"correlation": pl.Int64, "range": pl.String, "r_start": pl.Int64},
        orient="row",
    )
    got = _innermost_from_frames(trace)
    assert expected.height > 1000  # most kernels sit in a layer range
    assert got.sort("correlation").equals(expected.sort("correlation"))
    # The innermost names are the leaf ranges, not the enclosing token / simulation ranges.
    assert "layer_processing_simulation" not in set(got["range"])


def _synthetic_export(path: Path) -> None:
    """A minimal export from an older/leaner schema: no grid/block, no demangledName, two
    processes that reuse correlation id 1, an NVTX range with textId, one never closed."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT);
        CREATE TABLE META_DATA_EXPORT (name TEXT, value TEXT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT, "end" INT, deviceId INT,
            streamId INT, correlationId INT, globalPid INT, shortName INT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INT, "end" INT, globalTid INT,
            correlationId INT, nameId INT);
        CREATE TABLE NVTX_EVENTS (start INT, "end" INT, eventType INT, text TEXT,
            globalTid INT, textId INT);
        INSERT INTO StringIds VALUES (1, 'kern_a'), (2, 'kern_b'),
            (3, 'cudaLaunchKernel_v7000'), (4, 'th|op=attention|attn=self');
    """)
    pid_a, pid_b = (1 << 48) | (100 << 24), (1 << 48) | (200 << 24)
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?,?,?,?,?,?,?)",
        [
            (1000, 1500, 0, 7, 1, pid_a, 1),
            (2000, 2600, 1, 7, 1, pid_b, 2),
        ],
    )
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?,?,?,?,?)",
        [
            (900, 950, pid_a | 101, 1, 3),
            (1900, 1950, pid_b | 201, 1, 3),
        ],
    )
    con.executemany(
        "INSERT INTO NVTX_EVENTS VALUES (?,?,?,?,?,?)",
        [
            (800, 1000, 59, None, pid_a | 101, 4),
            (1800, None, 59, "open", pid_b | 201, None),
            (10, 20, 34, "a mark, not a range", pid_a | 101, None),
        ],
    )
    con.commit()
    con.close()


def test_lean_schema_two_processes_and_nvtx_text_ids(tmp_path: Path) -> None:
    path = tmp_path / "lean.sqlite"
    _synthetic_export(path)
    trace = parse_nsys(path)
    kernels = trace.gpu_events.sort("start_ns")
    assert kernels["name"].to_list() == ["kern_a", "kern_b"]
    assert kernels["grid_x"].null_count() == 2
    # Correlation ids collide across processes; they must still join one-to-one.
    joined = kernels.join(trace.launches, on="correlation")
    assert joined.select("name", "pid").rows() == [("kern_a", 100), ("kern_b", 200)]
    assert set(trace.launches["tid"]) == {101, 201}
    assert trace.ranges.select("name", "dur_ns", "pid", "tid").rows() == [("th|op=attention|attn=self", 200, 100, 101)]
    assert trace.warnings.get("nvtx_range_without_end") == 1


def test_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "trace.sqlite"
    path.write_text('{"traceEvents": []}')
    with pytest.raises(BadTrace, match="not a SQLite file"):
        parse_nsys(path)


def test_empty_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 1")  # forces a valid header with no tables
    con.commit()
    con.close()
    with pytest.raises(BadTrace, match="not an Nsight Systems export"):
        parse_nsys(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.sqlite"
    path.write_bytes(b"")
    with pytest.raises(BadTrace):
        parse_nsys(path)


def test_other_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(BadTrace, match="not an Nsight Systems export"):
        parse_nsys(path)


def test_export_without_kernels_or_runtime(tmp_path: Path) -> None:
    path = tmp_path / "nocuda.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE StringIds (id INT, value TEXT);CREATE TABLE META_DATA_EXPORT (name TEXT, value TEXT);"
    )
    con.close()
    with pytest.raises(BadTrace, match="no CUDA kernels and no CUDA runtime calls"):
        parse_nsys(path)


@needs_traces
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_copy(tmp_path: Path, fraction: float) -> None:
    data = NVTX_FILE.read_bytes()
    path = tmp_path / "truncated.sqlite"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(BadTrace) as info:
        parse_nsys(path)
    assert "\n" not in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadTrace):
        parse_nsys(tmp_path / "absent.sqlite")
