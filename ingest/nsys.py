"""Nsight Systems SQLite exports (``nsys export --type sqlite``) -> :class:`ParsedTrace`.

The export is a relational dump whose shape drifts between nsys releases: a table exists
only when the capture produced rows of that kind (no ``CUPTI_ACTIVITY_KIND_MEMCPY`` without
memcpys, no ``NVTX_EVENTS`` without NVTX), and columns are added over time (schema 3.24 has
``qmd*`` / cluster columns 3.16 lacks).  So every query is built from the columns that
``PRAGMA table_info`` reports rather than from a fixed list, and enum ids are looked up in
the export's own ``ENUM_*`` tables where they exist.

Times are integer ns relative to the session start and are kept as-is; a kernel joins its
launch by ``correlationId``, which CUPTI makes unique only within one process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from tracehouse.core.errors import BadTrace
from tracehouse.core.frames import (
    GPU_EVENT_SCHEMA,
    LAUNCH_SCHEMA,
    RANGE_SCHEMA,
    DeviceInfo,
    ParsedTrace,
    SchemaLike,
    conform,
)
from tracehouse.ingest.kineto_sync import WAIT_CALLS

KERNEL = "CUPTI_ACTIVITY_KIND_KERNEL"
MEMCPY = "CUPTI_ACTIVITY_KIND_MEMCPY"
MEMSET = "CUPTI_ACTIVITY_KIND_MEMSET"
RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
NVTX = "NVTX_EVENTS"
GPU_INFO = "TARGET_INFO_GPU"
GPU_TABLES = (KERNEL, MEMCPY, MEMSET)  # read in this order: ties in start keep it

# Fallbacks for exports without ENUM_NSYS_EVENT_TYPE; the ids have been stable since 2020.
NVTX_RANGE_TYPES = {"NvtxPushPopRange": 59, "NvtxStartEndRange": 60}
SQLITE_MAGIC = b"SQLite format 3\x00"
# nsys appends the CUPTI callback version ("cudaLaunchKernel_v7000"); Kineto and users say
# "cudaLaunchKernel".  A "_v2" that is part of the API name is kept (only the last suffix goes).
_API_VERSION = r"_v\d{4,}$"
# globalTid packs (hardware id, pid, tid) as 24-bit fields; globalPid is the same with tid = 0.
PID_SQL = "(({col} >> 24) & 16777215)"
TID_SQL = "({col} & 16777215)"


def parse_nsys(path: Path) -> ParsedTrace:
    """Read an nsys SQLite export; raise :class:`BadTrace` when it is not one or is damaged."""
    path = Path(path)
    con = open_export(path)
    try:
        with damage_as_bad_trace(path):
            return _parse(con, path.name)
    finally:
        con.close()


def open_export(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """The export opened read-only; :class:`BadTrace` when it is no readable SQLite file."""
    _check_sqlite_file(path)
    try:
        # A percent-quoted URI of the real path: a raw name would let SQLite decode %2f and
        # read ? and # as the URI's query and fragment (another file, or mode=rwc).
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=check_same_thread)
    except sqlite3.Error as exc:
        raise BadTrace(f"{path.name}: cannot open as SQLite ({exc})") from None


@contextmanager
def damage_as_bad_trace(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        # Corruption usually surfaces only when a damaged page is read, mid-query.
        raise BadTrace(f"{path.name}: damaged SQLite file ({exc})") from None


def _check_sqlite_file(path: Path) -> None:
    """Reject non-SQLite and truncated files cheaply, before SQLite reads pages lazily."""
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise BadTrace(f"{path.name}: cannot read ({exc.strerror})") from None
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        raise BadTrace(f"{path.name}: not a SQLite file (expected an nsys --type sqlite export)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    page_count = int.from_bytes(header[28:32], "big")
    # The in-header page count is trustworthy only when its change counter matches.
    if header[24:28] == header[92:96] and size < page_size * page_count:
        raise BadTrace(f"{path.name}: truncated SQLite file ({size} of {page_size * page_count} bytes)")


def _parse(con: sqlite3.Connection, name: str) -> ParsedTrace:
    cols = export_columns(con, name)
    gpu = gpu_activity(con, cols)
    runtime = runtime_calls(con, cols)
    warnings: dict[str, int] = {}
    ranges, open_ended = nvtx_ranges(con, cols)
    if open_ended:
        # A range still open when the capture stopped has no extent to attribute kernels to.
        warnings["nvtx_range_without_end"] = open_ended
    pids = distinct_pids(gpu, runtime)
    if pids > 1:
        warnings["correlation_qualified_by_pid"] = pids
    gpu, launches, ranges = assembled(gpu, runtime, ranges, qualify=pids > 1)
    return ParsedTrace(
        format="nsys",
        gpu_events=gpu,
        launches=launches,
        ranges=ranges,
        devices=devices(con, cols),
        event_count=gpu.height + runtime.height + ranges.height,
        warnings=warnings,
    )


def export_columns(con: sqlite3.Connection, name: str) -> dict[str, set[str]]:
    """Each table's columns; raise :class:`BadTrace` when the file is no nsys export or has
    neither kernels nor runtime calls."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "StringIds" not in tables or not tables & {"META_DATA_EXPORT", KERNEL, RUNTIME}:
        raise BadTrace(f"{name}: not an Nsight Systems export (no StringIds / META_DATA_EXPORT)")
    if KERNEL not in tables and RUNTIME not in tables:
        raise BadTrace(f"{name}: nsys export has no CUDA kernels and no CUDA runtime calls")
    return {t: _columns(con, t) for t in tables}


def assembled(
    gpu: pl.DataFrame, runtime: pl.DataFrame, ranges: pl.DataFrame, *, qualify: bool
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The GPU events, launches and ranges as attribution reads them, each in start order
    (ties in the order read: the same in a window as in the whole export)."""
    gpu, runtime = _qualify_correlation(gpu, runtime, qualify)
    # A launch is a call that enqueued GPU work; the other runtime calls (cuGetProcAddress,
    # cudaStreamIsCapturing ...) would only dilute attribution.  Cross-stream waits stay too:
    # ``kineto_sync.sync_rows`` reads them from here, as from a Kineto trace's launches.
    enqueued = pl.col("correlation").is_in(gpu["correlation"].drop_nulls().unique().implode())
    launches = runtime.filter(enqueued | pl.col("name").is_in(WAIT_CALLS))
    return (
        conform(gpu.sort("start_ns", maintain_order=True), GPU_EVENT_SCHEMA),
        conform(launches.sort("start_ns", maintain_order=True), LAUNCH_SCHEMA),
        conform(ranges.sort("start_ns", maintain_order=True), RANGE_SCHEMA),
    )


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}


Where = Callable[[str], str]  # a GPU activity table -> the WHERE clause that picks its rows
Params = Sequence[int | str]  # the values of a clause's ``?``

_BATCH_ROWS = 65_536  # rows fetched at a time: as Python tuples a row is ~10x its frame's size


def _frame(con: sqlite3.Connection, sql: str, schema: SchemaLike, params: Params = ()) -> pl.DataFrame:
    """Run ``sql`` into a frame with an explicit schema (no type guessing on sparse columns),
    a batch of rows at a time: a several-GB export never has all its rows as Python tuples."""
    cursor = con.execute(sql, params)
    parts = [
        pl.DataFrame(rows, schema=schema, orient="row") for rows in iter(lambda: cursor.fetchmany(_BATCH_ROWS), [])
    ]
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _opt(table_cols: set[str], col: str, alias: str | None = None) -> str:
    """``col`` if the table has it, else NULL: columns come and go between schema versions."""
    return f"{col if col in table_cols else 'NULL'} AS {alias or col}"


def _string(table_cols: set[str], *id_cols: str) -> str:
    """SQL for the first non-null StringIds value among ``id_cols`` that the table has."""
    present = [c for c in id_cols if c in table_cols]
    if not present:
        return "NULL"
    lookups = [f"(SELECT value FROM StringIds WHERE id = t.{c})" for c in present]
    return lookups[0] if len(lookups) == 1 else f"COALESCE({', '.join(lookups)})"


GPU_RAW = {
    "kind": pl.String,
    "name": pl.String,
    "device": pl.Int64,
    "stream": pl.Int64,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "correlation": pl.Int64,
    "pid": pl.Int64,
    "grid_x": pl.Int64,
    "grid_y": pl.Int64,
    "grid_z": pl.Int64,
    "block_x": pl.Int64,
    "block_y": pl.Int64,
    "block_z": pl.Int64,
    "bytes": pl.Int64,
}


def _everything(table: str) -> str:
    return ""


def gpu_activity(
    con: sqlite3.Connection, cols: dict[str, set[str]], where: Where = _everything, params: Params = ()
) -> pl.DataFrame:
    """Kernels, memcpys and memsets (``GPU_RAW``, end times not yet durations), table after
    table in row order; ``where(table)``: the clause that picks the rows (all by default)."""
    frames = [_frame(con, f"{sql} {where(table)}", GPU_RAW, params) for table, sql in gpu_queries(cols).items()]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=GPU_RAW)


def gpu_queries(cols: dict[str, set[str]]) -> dict[str, str]:
    """The SELECT of each GPU activity table the export has (``... FROM table AS t``)."""
    c = cols.get(KERNEL, set())
    # The demangled name is what Kineto reports; shortName drops the template arguments.
    names = {KERNEL: ("kernel", _string(c, "demangledName", "shortName", "mangledName"))}
    name = "'Memcpy'"
    if "ENUM_CUDA_MEMCPY_OPER" in cols and "copyKind" in cols.get(MEMCPY, set()):
        label = "(SELECT label FROM ENUM_CUDA_MEMCPY_OPER WHERE id = t.copyKind)"
        name = f"COALESCE('Memcpy ' || {label}, 'Memcpy')"
    names[MEMCPY] = ("memcpy", name)
    name = "'Memset'"
    if "ENUM_CUDA_MEM_KIND" in cols and "memKind" in cols.get(MEMSET, set()):
        label = "(SELECT label FROM ENUM_CUDA_MEM_KIND WHERE id = t.memKind)"
        name = f"COALESCE('Memset (' || {label} || ')', 'Memset')"
    names[MEMSET] = ("memset", name)
    return {table: _gpu_sql(cols[table], table, *names[table]) for table in GPU_TABLES if table in cols}


def _gpu_sql(c: set[str], table: str, kind: str, name_sql: str) -> str:
    dims = [_opt(c, f"{g}{a}", f"{g.lower()}_{a.lower()}") for g in ("grid", "block") for a in "XYZ"]
    return (
        f"SELECT '{kind}', {name_sql} AS name, {_opt(c, 'deviceId')}, {_opt(c, 'streamId')}, "
        f't.start, t."end", {_opt(c, "correlationId")}, '
        f"{PID_SQL.format(col='t.globalPid') if 'globalPid' in c else 'NULL'}, "
        f"{', '.join(dims)}, {_opt(c, 'bytes')} FROM {table} AS t"
    )


RUNTIME_RAW = {
    "pid": pl.Int64,
    "tid": pl.Int64,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "correlation": pl.Int64,
    "name": pl.String,
}


def runtime_calls(
    con: sqlite3.Connection, cols: dict[str, set[str]], where: str = "", params: Params = ()
) -> pl.DataFrame:
    """CUDA runtime and driver calls (``RUNTIME_RAW``); ``where`` picks them (all by default)."""
    sql = runtime_sql(cols)
    if sql is None:
        return pl.DataFrame(schema=RUNTIME_RAW)
    df = _frame(con, f"{sql} {where}", RUNTIME_RAW, params)
    return df.with_columns(pl.col("name").str.replace(_API_VERSION, ""))


def wait_calls(con: sqlite3.Connection, cols: dict[str, set[str]]) -> pl.DataFrame:
    """The cross-stream wait call records (``kineto_sync.WAIT_CALLS``), ``pid, tid, correlation,
    call_ns``: found by their names' ids first, so a big export's other calls are not read."""
    if RUNTIME not in cols or "nameId" not in cols[RUNTIME]:
        return pl.DataFrame(schema={"pid": pl.Int64, "tid": pl.Int64, "correlation": pl.Int64, "call_ns": pl.Int64})
    names = " OR ".join("value GLOB ?" for _ in WAIT_CALLS)
    where = f"WHERE t.nameId IN (SELECT id FROM StringIds WHERE {names})"
    calls = runtime_calls(con, cols, where, [f"{call}*" for call in WAIT_CALLS])
    return calls.filter(pl.col("name").is_in(WAIT_CALLS)).select("pid", "tid", "correlation", call_ns="start_ns")


def runtime_sql(cols: dict[str, set[str]]) -> str | None:
    """The SELECT of the runtime calls (``... FROM table AS t``), None when there are none."""
    if RUNTIME not in cols:
        return None
    c = cols[RUNTIME]
    return (
        f"SELECT {PID_SQL.format(col='t.globalTid')}, {TID_SQL.format(col='t.globalTid')}, "
        f't.start, t."end", {_opt(c, "correlationId")}, {_string(c, "nameId")} AS name '
        f"FROM {RUNTIME} AS t"
    )


def nvtx_type_ids(con: sqlite3.Connection, cols: dict[str, set[str]]) -> list[int]:
    if "ENUM_NSYS_EVENT_TYPE" in cols:
        names = ", ".join(f"'{n}'" for n in NVTX_RANGE_TYPES)
        rows = con.execute(f"SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name IN ({names})")
        ids = [r[0] for r in rows]
        if ids:
            return ids
    return list(NVTX_RANGE_TYPES.values())


NVTX_RAW = {"pid": pl.Int64, "tid": pl.Int64, "start_ns": pl.Int64, "end_ns": pl.Int64, "name": pl.String}


def nvtx_query(con: sqlite3.Connection, cols: dict[str, set[str]]) -> str | None:
    """The SELECT of the NVTX push/pop and start/end ranges (``... WHERE t.eventType IN ...``,
    so a caller adds ``AND``), None when the export has no NVTX."""
    if NVTX not in cols:
        return None
    c = cols[NVTX]
    # Registered strings (nvtxDomainRegisterString) leave text NULL and set textId.
    text = "t.text" if "text" in c else "NULL"
    if "textId" in c:
        text = f"COALESCE({text}, (SELECT value FROM StringIds WHERE id = t.textId))"
    types = ", ".join(str(i) for i in nvtx_type_ids(con, cols))
    return (
        f"SELECT {PID_SQL.format(col='t.globalTid')}, {TID_SQL.format(col='t.globalTid')}, "
        f't.start, t."end", {text} AS name FROM {NVTX} AS t WHERE t.eventType IN ({types})'
    )


def nvtx_ranges(
    con: sqlite3.Connection, cols: dict[str, set[str]], where: str = "", params: Params = ()
) -> tuple[pl.DataFrame, int]:
    """The NVTX ranges with an end (``where``: ``AND ...`` to pick some), and how many had none."""
    sql = nvtx_query(con, cols)
    if sql is None:
        return pl.DataFrame(schema=NVTX_RAW).with_columns(cat=pl.lit("annotation")), 0
    df = _frame(con, f"{sql} {where}", NVTX_RAW, params)
    open_ended = df.filter(pl.col("end_ns").is_null()).height
    ended = df.filter(pl.col("end_ns").is_not_null()).with_columns(
        dur_ns=pl.col("end_ns") - pl.col("start_ns"), cat=pl.lit("annotation")
    )
    return ended, open_ended


def distinct_pids(gpu: pl.DataFrame, runtime: pl.DataFrame) -> int:
    """How many processes the GPU events and runtime calls come from."""
    return pl.concat([gpu["pid"], runtime["pid"]]).drop_nulls().n_unique()


def _qualify_correlation(gpu: pl.DataFrame, runtime: pl.DataFrame, qualify: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Make correlation ids unique across processes and turn end times into durations.

    CUPTI numbers correlations per process, and the frames carry no pid on GPU events, so
    with several processes (``qualify``) the id becomes ``pid << 32 | correlationId`` on
    both sides.
    """
    if qualify:
        qualified = (pl.col("pid") * (1 << 32) + pl.col("correlation")).alias("correlation")
        gpu, runtime = gpu.with_columns(qualified), runtime.with_columns(qualified)
    dur = (pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns")
    return gpu.with_columns(dur), runtime.with_columns(dur)


def devices(con: sqlite3.Connection, cols: dict[str, set[str]]) -> list[DeviceInfo]:
    if GPU_INFO not in cols:
        return []
    c = cols[GPU_INFO]
    # cuDevice is the CUDA ordinal that CUPTI's deviceId uses; older exports only have id.
    device = "COALESCE(cuDevice, id)" if "cuDevice" in c else "id"
    sql = (
        f"SELECT {device}, name, {_opt(c, 'totalMemory')}, {_opt(c, 'smCount')}, "
        f"{_opt(c, 'computeMajor')}, {_opt(c, 'computeMinor')}, "
        f"{_opt(c, 'memoryBandwidth')}, {_opt(c, 'clockRate')} FROM {GPU_INFO}"
    )
    devices = []
    for dev, name, mem, sms, major, minor, bandwidth, clock in con.execute(sql):
        devices.append(
            DeviceInfo(
                device=int(dev or 0),
                name=str(name),
                memory_bytes=mem,
                sm_count=sms,
                compute_capability=f"{major}.{minor}" if major is not None else None,
                vendor="NVIDIA",
                memory_bandwidth_bytes_s=float(bandwidth) if bandwidth else None,
                clock_hz=float(clock) if clock else None,
            )
        )
    return devices
