"""A big Nsight Systems export attributed in bounded memory: its kernels read by window.

The export is already a database, so nothing is spilled: what a window needs is queried from
it.  It has no index on the columns a window selects by (kernel start, launch correlation id,
NVTX range extent), so :func:`indexed` first copies those keys, with each row's rowid, into a
scratch SQLite file beside the ingest and indexes them (one pass over the export, disk not
memory).  :meth:`NsysWindowed.windows` then cuts the GPU activity (kernels, memcpys, memsets),
in start order, into windows of about ``WINDOW_KERNELS``, and for each reads by rowid:

* the window's GPU rows (those starting in ``[lo, hi)``: rows that start together stay
  together, as ``kineto_windows`` cuts them);
* the runtime calls with one of their correlation ids; with several processes the id is
  qualified by the pid (``nsys._qualify_correlation``) for the whole export or for none, so a
  window's join is the whole export's;
* the NVTX ranges overlapping the span of those launches (not of the kernels: a kernel nests
  under the host ranges enclosing its *launch*, which can be long before it runs).  A range
  is looked up by its start within its duration's decimal order of magnitude (``lvl``), so a
  window reads the ranges near its span plus the few long ones, never all of them.

and runs the same ``nsys.assembled`` and ``attribute`` as the whole export.  The rows are the
whole export's: a window holds every GPU row of its start range (``seq`` offset by the rows
before), all their launches, and every range enclosing one of those launches.  NVTX ranges
are annotations, never cpu ops, so no op cost is carried across windows.  The cross-stream wait
calls are read by name before the windows, and each is paired with the launch it gates as the
windows pass (``kineto_sync.WaitGates``).  Nesting depths are
computed within the window: the whole export's where a thread's ranges nest (push/pop ranges
do); start/end ranges that overlap without nesting could order differently.  The warnings and
the event count are whole-export facts, counted once in SQL before the windows (a range read
by several windows is not counted twice).  tests/test_nsys_windows.py compares the rows with
the whole-export ingest on every shared export, and on an annotated copy, in small windows.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from tracehouse.core import rules
from tracehouse.core.frames import GPU_EVENT_SCHEMA, LAUNCH_SCHEMA, RANGE_SCHEMA, ParsedTrace, conform, storable_text
from tracehouse.ingest import nsys
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.kineto_sync import WaitGates

WINDOW_KERNELS = 50_000  # GPU rows attributed at a time, as kineto_windows
INDEX_FILE = "nsys-index.sqlite"
_FIRST, _LAST = -(2**63), 2**63 - 1
_NUL = "instr(CAST({} AS BLOB), x'00') > 0"


@dataclass
class NsysWindowed:
    """An indexed export: its header as a ParsedTrace with empty frames (devices, event count,
    warnings: what the run and trace rows need), and its kernels' rows by window."""

    header: ParsedTrace
    path: Path
    index: Path
    kernel_count: int
    device_ns: dict[int | None, int]
    qualify: bool  # correlation ids qualified by pid (several processes)
    levels: list[int]  # the NVTX ranges' duration orders of magnitude
    window_kernels: int = WINDOW_KERNELS
    _gates: WaitGates | None = field(default=None, init=False, repr=False, compare=False)

    def stand_in_kernels(self) -> pl.DataFrame:
        """One row per device with its GPU time: what ``load.insert_run`` reads to pick the
        run's hardware (its totals are replaced once the windows are in)."""
        return pl.DataFrame(
            {"device": list(self.device_ns), "dur_ns": list(self.device_ns.values())},
            schema={"device": pl.Int64, "dur_ns": pl.Int64},
        ).with_columns(start_ns=pl.lit(0, pl.Int64), operator=pl.lit("other"), graph=pl.lit(False))

    def sync_rows(self) -> pl.DataFrame:
        """``kineto_sync.sync_rows`` of the whole export, once :meth:`windows` has run through:
        its wait calls (read by name), each paired with the launch it gates among the windows'
        launches (``kineto_sync.WaitGates``)."""
        if self._gates is None:
            raise RuntimeError("sync_rows() before windows() has run")
        return self._gates.rows()

    def memory_windows(self) -> Iterator[pl.DataFrame]:
        """Nothing to insert: we read no allocator events from Nsight Systems exports."""
        return iter(())

    def windows(self, name_rules: Sequence[rules.NameRule] = rules.NAME_RULES) -> Iterator[pl.DataFrame]:
        """Kernel rows (``attribution.KERNEL_ROW_COLUMNS``), window by window in ``seq`` order."""
        # Read on the thread that runs the generator (store_windowed prefetches a window ahead).
        con = _connect(self.path, self.index)
        try:
            with nsys.damage_as_bad_trace(self.path):
                cols = nsys.export_columns(con, self.path.name)
                con.execute("CREATE TEMP TABLE want (corr INTEGER PRIMARY KEY)")
                # Local: a retried ingest's second run of this generator must not share the first's.
                gates = self._gates = WaitGates.of(nsys.wait_calls(con, cols))
                seq = 0
                for lo, hi in self._bounds(con):
                    trace = storable_text(self._window(con, cols, lo, hi))  # its count is the header's
                    gates.see(trace)
                    rows = attribute(trace, name_rules)
                    yield rows.with_columns(seq=pl.col("seq") + seq)
                    seq += rows.height
        finally:
            con.close()

    def _bounds(self, con: sqlite3.Connection) -> list[tuple[int, int]]:
        """Start ranges ``[lo, hi)`` of about ``window_kernels`` GPU rows each: the starts of
        rows ``n``, ``2n`` ... (in start order) cut them, as ``kineto_windows`` does."""
        n = self.window_kernels
        rows = con.execute(
            "SELECT DISTINCT start FROM (SELECT start, row_number() OVER (ORDER BY start) - 1 AS i "
            "FROM ix.gpu) WHERE i > 0 AND i % ? = 0 ORDER BY start",
            (n,),
        )
        edges = [_FIRST, *(r[0] for r in rows), _LAST]
        return list(itertools.pairwise(edges))

    def _window(self, con: sqlite3.Connection, cols: dict[str, set[str]], lo: int, hi: int) -> ParsedTrace:
        source = {table: i for i, table in enumerate(nsys.GPU_TABLES)}

        def in_window(table: str) -> str:
            return f"WHERE t.rowid IN (SELECT rid FROM ix.gpu WHERE start >= ? AND start < ? AND src = {source[table]})"

        gpu = nsys.gpu_activity(con, cols, in_window, (lo, hi))
        con.execute("DELETE FROM want")
        con.executemany("INSERT INTO want VALUES (?)", ((c,) for c in gpu["correlation"].drop_nulls().unique()))
        runtime = nsys.runtime_calls(
            con, cols, "WHERE t.rowid IN (SELECT r.rid FROM ix.rt AS r WHERE r.corr IN (SELECT corr FROM want))"
        )
        gpu, launches, _ = nsys.assembled(gpu, runtime, _no_ranges(), qualify=self.qualify)
        ranges = _no_ranges()
        if launches.height and self.levels:
            t_lo, t_hi = int(launches["start_ns"].min()), int(launches["start_ns"].max())  # type: ignore[arg-type]
            ranges = _overlapping(con, cols, self.levels, t_lo, t_hi)
        return ParsedTrace(
            format="nsys",
            gpu_events=gpu,
            launches=launches,
            ranges=conform(ranges.sort("start_ns", maintain_order=True), RANGE_SCHEMA),
            devices=self.header.devices,
        )


def _no_ranges() -> pl.DataFrame:
    return pl.DataFrame(schema=nsys.NVTX_RAW).with_columns(dur_ns=pl.lit(None, pl.Int64), cat=pl.lit("annotation"))


def _overlapping(
    con: sqlite3.Connection, cols: dict[str, set[str]], levels: list[int], t_lo: int, t_hi: int
) -> pl.DataFrame:
    """The NVTX ranges that could enclose a time in ``t_lo``..``t_hi``: for each duration order
    of magnitude ``lvl`` (a duration under ``10**lvl`` ns), those starting from ``10**lvl``
    before ``t_lo``; then exactly (``nesting``: a zero-length range counts as 1 ns)."""
    picks = " UNION ALL ".join("SELECT rid FROM ix.nv WHERE lvl = ? AND start BETWEEN ? AND ?" for _ in levels)
    params = [v for lvl in levels for v in (lvl, max(t_lo - 10**lvl, _FIRST), t_hi)]
    ranges, _ = nsys.nvtx_ranges(con, cols, f"AND t.rowid IN ({picks})", params)
    end = pl.col("start_ns") + pl.col("dur_ns").clip(lower_bound=1)
    return ranges.filter(pl.col("start_ns") <= t_hi, end > t_lo)


def _connect(path: Path, index: Path) -> sqlite3.Connection:
    con = nsys.open_export(path, check_same_thread=False)
    con.execute("ATTACH DATABASE ? AS ix", (str(index),))
    return con


def indexed(path: Path, folder: Path) -> NsysWindowed | None:
    """``path`` with its window keys indexed in ``folder``; None when it has no GPU activity
    (a runtime-only export takes the whole-export path).  :class:`BadTrace` as ``parse_nsys``."""
    path = Path(path)
    index = folder / INDEX_FILE
    index.unlink(missing_ok=True)
    con = _connect(path, index)
    try:
        with nsys.damage_as_bad_trace(path):
            cols = nsys.export_columns(con, path.name)
            con.execute("PRAGMA ix.journal_mode = OFF")
            con.execute("PRAGMA ix.synchronous = OFF")
            _index_gpu(con, cols)
            kernel_count = con.execute("SELECT count(*) FROM ix.gpu").fetchone()[0]
            if not kernel_count:
                return None
            _index_runtime(con, cols)
            levels = _index_nvtx(con, cols)
            header, qualify = _header(con, cols, path)
            device_ns = dict(con.execute("SELECT device, sum(dur) FROM ix.gpu GROUP BY device").fetchall())
            con.commit()
    finally:
        con.close()
    return NsysWindowed(header, path, index, kernel_count, device_ns, qualify, levels)


# Each key table is one b-tree (WITHOUT ROWID, filled in key order): no table plus index.
def _index_gpu(con: sqlite3.Connection, cols: dict[str, set[str]]) -> None:
    con.execute(
        "CREATE TABLE ix.gpu (start INTEGER, src INTEGER, rid INTEGER, pid INTEGER, device INTEGER, dur INTEGER, "
        "PRIMARY KEY (start, src, rid)) WITHOUT ROWID"
    )
    parts = []
    for src, table in enumerate(nsys.GPU_TABLES):
        if table in cols:
            c = cols[table]
            pid = nsys.PID_SQL.format(col="t.globalPid") if "globalPid" in c else "NULL"
            device = "t.deviceId" if "deviceId" in c else "NULL"
            parts.append(f'SELECT t.start, {src}, t.rowid, {pid}, {device}, t."end" - t.start FROM {table} AS t')
    if parts:
        con.execute(f"INSERT INTO ix.gpu {' UNION ALL '.join(parts)} ORDER BY 1, 2, 3")


def _index_runtime(con: sqlite3.Connection, cols: dict[str, set[str]]) -> None:
    """The runtime calls by correlation id (-1 for none: CUPTI's ids are unsigned)."""
    con.execute("CREATE TABLE ix.rt (corr INTEGER, rid INTEGER, pid INTEGER, PRIMARY KEY (corr, rid)) WITHOUT ROWID")
    if nsys.RUNTIME in cols:
        corr = "ifnull(t.correlationId, -1)" if "correlationId" in cols[nsys.RUNTIME] else "-1"
        pid = nsys.PID_SQL.format(col="t.globalTid")
        con.execute(f"INSERT INTO ix.rt SELECT {corr}, t.rowid, {pid} FROM {nsys.RUNTIME} AS t ORDER BY 1, 2")


def _index_nvtx(con: sqlite3.Connection, cols: dict[str, set[str]]) -> list[int]:
    """The ended NVTX ranges by (duration's number of decimal digits, start)."""
    con.execute(
        "CREATE TABLE ix.nv (lvl INTEGER, start INTEGER, rid INTEGER, PRIMARY KEY (lvl, start, rid)) WITHOUT ROWID"
    )
    if nsys.NVTX not in cols:
        return []
    types = ", ".join(str(i) for i in nsys.nvtx_type_ids(con, cols))
    con.execute(
        'INSERT INTO ix.nv SELECT length(CAST(max(t."end" - t.start, 1) AS TEXT)), t.start, t.rowid '
        f'FROM {nsys.NVTX} AS t WHERE t.eventType IN ({types}) AND t."end" IS NOT NULL ORDER BY 1, 2, 3'
    )
    return [r[0] for r in con.execute("SELECT DISTINCT lvl FROM ix.nv ORDER BY lvl")]


def _header(con: sqlite3.Connection, cols: dict[str, set[str]], path: Path) -> tuple[ParsedTrace, bool]:
    """The whole export's event count, warnings and devices, as ``parse_nsys`` has them."""
    count = con.execute(
        "SELECT (SELECT count(*) FROM ix.gpu) + (SELECT count(*) FROM ix.rt) + (SELECT count(*) FROM ix.nv)"
    )
    event_count = count.fetchone()[0]
    warnings: dict[str, int] = {}
    nvtx = nsys.nvtx_query(con, cols)
    if nvtx is not None:
        open_ended = con.execute(f'SELECT count(*) FROM ({nvtx} AND t."end" IS NULL)').fetchone()[0]
        if open_ended:
            warnings["nvtx_range_without_end"] = open_ended
    pids = con.execute(
        "SELECT count(*) FROM (SELECT pid FROM ix.gpu WHERE pid IS NOT NULL "
        "UNION SELECT pid FROM ix.rt WHERE pid IS NOT NULL)"
    ).fetchone()[0]
    if pids > 1:
        warnings["correlation_qualified_by_pid"] = pids
    nul = _nul_in_text(con, cols, nvtx)
    header = ParsedTrace(
        format="nsys",
        gpu_events=conform(pl.DataFrame(), GPU_EVENT_SCHEMA),
        launches=conform(pl.DataFrame(), LAUNCH_SCHEMA),
        ranges=conform(pl.DataFrame(), RANGE_SCHEMA),
        devices=nsys.devices(con, cols),
        event_count=event_count,
        warnings=warnings,
    )
    header = storable_text(header)  # the devices' names
    if nul:
        header.warnings["nul_in_text"] = header.warnings.get("nul_in_text", 0) + nul
    return header, pids > 1


def _nul_in_text(con: sqlite3.Connection, cols: dict[str, set[str]], nvtx: str | None) -> int:
    """The text values with a NUL that ``storable_text`` counts in the whole export: GPU
    rows' names, launches' names and ended ranges' names.  NVTX text may be inline; kernel
    and call names are StringIds, where only a few strings (the processes' environment
    blocks) have a NUL: only rows naming one of those are looked at."""
    count = 0
    if nvtx is not None:
        ended = f'{nvtx} AND t."end" IS NOT NULL'
        count += con.execute(f"SELECT count(*) FROM ({ended}) WHERE {_NUL.format('name')}").fetchone()[0]
    ids = ", ".join(str(r[0]) for r in con.execute(f"SELECT id FROM StringIds WHERE {_NUL.format('value')}"))
    if not ids:
        return count
    kernel_ids = [c for c in ("demangledName", "shortName", "mangledName") if c in cols.get(nsys.KERNEL, set())]
    if kernel_ids:  # memcpy and memset names are nsys's own labels
        naming = " OR ".join(f"t.{c} IN ({ids})" for c in kernel_ids)
        kernels = f"{nsys.gpu_queries(cols)[nsys.KERNEL]} WHERE {naming}"
        count += con.execute(f"SELECT count(*) FROM ({kernels}) WHERE {_NUL.format('name')}").fetchone()[0]
    calls = nsys.runtime_sql(cols)
    if calls is not None and {"correlationId", "nameId"} <= cols[nsys.RUNTIME]:
        # A launch is a call whose id a GPU row carries (ids are not qualified here: a NUL in
        # a CUDA API name of one process sharing an id with another's kernel is not a case).
        launched = " UNION ".join(f"SELECT correlationId FROM {table}" for table in nsys.gpu_queries(cols))
        calls = f"{calls} WHERE t.nameId IN ({ids}) AND t.correlationId IN ({launched})"
        count += con.execute(f"SELECT count(*) FROM ({calls}) WHERE {_NUL.format('name')}").fetchone()[0]
    return count
