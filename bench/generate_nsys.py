"""Large Nsight Systems exports for the memory and throughput benchmark, made from a real one.

``write_export(source, target, size)`` copies ``source`` and replicates the rows of its
activity tables (kernels, memcpys, memsets, synchronizations, runtime calls, NVTX events)
until the file is about ``size`` bytes: each copy's times are shifted past the previous copy's
end and its correlation ids past the previous copy's largest, so copies neither overlap in
time nor link to each other; string ids are kept (every copy names the same strings).  The
other tables (sampling, OS runtime, scheduling ...) are left as they are.

``python bench/generate_nsys.py SIZES_GB`` writes each size, then ingests it with each given
``tracehouse`` (e.g. main's and this tree's, interleaved) into a new SQLite database in a
fresh process, and prints wall time, MB/s and peak RSS measured from outside.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from generate import _UNLIMITED, measured

from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES

ACTIVITY = (
    "CUPTI_ACTIVITY_KIND_KERNEL",
    "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET",
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION",
    "CUPTI_ACTIVITY_KIND_RUNTIME",
    "NVTX_EVENTS",
)
SOURCE = Path("/work/shared/traces/nsys/rtx4060ti_nvtx_layers.sqlite")


def _file_bytes(con: sqlite3.Connection) -> int:
    return con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]


def _copies_sql(con: sqlite3.Connection, table: str, rows: int, span: int, id_step: int) -> str:
    """INSERT of copies ``lo``..``hi`` (the statement's parameters) of the first ``rows`` rows,
    copy after copy (the copy number is the outer loop: rowids stay in time order)."""
    cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
    shifted = {"start": f"t.start + k.i * {span}", "end": f't."end" + k.i * {span}'}
    shifted["correlationId"] = f"t.correlationId + k.i * {id_step}"
    values = ", ".join(shifted.get(c, f't."{c}"') for c in cols)
    names = ", ".join(f'"{c}"' for c in cols)
    return (
        "WITH RECURSIVE k(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM k WHERE i < ?) "
        f'INSERT INTO "{table}" ({names}) SELECT {values} FROM k CROSS JOIN "{table}" AS t WHERE t.rowid <= {rows}'
    )


def write_export(source: Path, target: Path, size: float) -> tuple[int, int]:
    """About ``size`` bytes of nsys export at ``target``; its bytes and the copies in it."""
    shutil.copyfile(source, target)
    target.chmod(0o644)
    con = sqlite3.connect(target, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        tables = [t for t in ACTIVITY if con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone()]
        rows = {t: con.execute(f'SELECT max(rowid) FROM "{t}"').fetchone()[0] or 0 for t in tables}
        bounds = [con.execute(f'SELECT min(start), max(coalesce("end", start)) FROM "{t}"').fetchone() for t in tables]
        span = max(b[1] for b in bounds if b[1] is not None) - min(b[0] for b in bounds if b[0] is not None) + 1000
        with_ids = [t for t in tables if "correlationId" in {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')}]
        id_step = max(con.execute(f'SELECT coalesce(max(correlationId), 0) FROM "{t}"').fetchone()[0] for t in with_ids)
        statements = [_copies_sql(con, t, rows[t], span, id_step + 1) for t in tables]
        before = _file_bytes(con)
        for sql in statements:  # one copy first, to learn what a copy costs
            con.execute(sql, (1, 1))
        per_copy = max(_file_bytes(con) - before, 1)
        copies = max(int((size - _file_bytes(con)) / per_copy), 0) + 2
        if copies > 2:
            for sql in statements:
                con.execute(sql, (2, copies - 1))
    finally:
        con.close()
    return target.stat().st_size, copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", help="GB sizes to generate and ingest, e.g. 0.5,1,2")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument(
        "--tracehouse",
        action="append",
        help="a tracehouse executable to measure (repeatable: each size is ingested by each, in turn)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="how many times each is measured, interleaved")
    args = parser.parse_args()
    contenders = args.tracehouse or [str(Path(sys.executable).parent / "tracehouse")]
    print(f"{'size':>5} {'export MB':>9} {'copies':>6} {'contender':40} {'wall s':>7} {'MB/s':>6} {'peak RSS MB':>11}")
    for gb in (float(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TRACEHOUSE_BENCH_DIR")) as tmp:
            work = Path(tmp)
            target = work / "big.sqlite"
            size, copies = write_export(args.source, target, gb * 1e9)
            for _ in range(args.rounds):
                for exe in contenders:
                    print(_ingested(exe, target, work, size, gb, copies), flush=True)


def _ingested(exe: str, target: Path, work: Path, size: int, gb: float, copies: int) -> str:
    """One measured ``exe ingest target`` into a new database; its table row."""
    db_file, data = work / "bench.sqlite3", work / "data"
    db_file.unlink(missing_ok=True)
    shutil.rmtree(data, ignore_errors=True)
    env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(data)}
    db = f"sqlite:///{db_file}"
    subprocess.run([exe, "db", "upgrade", "--db", db], env=env, check=True, stdout=subprocess.DEVNULL)
    # Past the default 2 GiB trace limit the same CLI (its venv's Python) is run with it lifted.
    command = [exe] if size < DEFAULT_MAX_TRACE_BYTES else [str(Path(exe).parent / "python"), "-c", _UNLIMITED]
    wall, rss, done = measured([*command, "ingest", str(target), "--db", db], 3600, env)
    with sqlite3.connect(db_file) as con:
        kernels = con.execute("SELECT count(*) FROM kernel").fetchone()[0] if done else 0
    rate = f"{size / 1e6 / wall:6.1f}" if done else "     -"
    label = f"{exe} ({kernels} kernels)" if done else f"{exe} (failed)"
    return f"{gb:5.1f} {size / 1e6:9.0f} {copies:6d} {label:40} {wall:7.2f} {rate} {rss:11.0f}"


if __name__ == "__main__":
    main()
