"""An Nsight Systems export read a window of kernels at a time (``nsys_windows``) stores what
the whole-export ingest stores: every shared export, and an annotated copy made to hold what
windows could get wrong; and a generated export past the size threshold takes that path and
ingests, whole process, in bounded memory."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import REPO, SHARED_TRACES, Database, require_shared
from tests.fixtures import ingest_peak
from tests.test_kineto_stream import _stored
from tracehouse.core.annotation import format_annotation
from tracehouse.ingest import nsys_windows, pipeline
from tracehouse.ingest.load import delete_run
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope

NSYS = SHARED_TRACES / "nsys"
NVTX_EXPORT = "rtx4060ti_nvtx_layers.sqlite"
KERNEL, RUNTIME, NVTX = "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"
ANNOTATED = "annotated"  # the copy below, among the shared exports' names


def _exports() -> list[str]:
    return sorted(p.name for p in NSYS.glob("*.sqlite")) if NSYS.is_dir() else []


def _add_waits(con: sqlite3.Connection, every: int) -> list[tuple[int, int, int | None]]:
    """A wait call 2 ns before every ``every``-th kernel launch, on its thread, and one after the
    last launch (it gates nothing): ``cudaStreamWaitEvent``, its per-thread default stream's
    ``_ptsz``, or the driver's ``cuStreamWaitEvent`` in turn; every fourth runtime call also has
    the driver record of the same call (its correlation id, 1 ns later).  ``(tid, call_ns, the
    correlation of the launch it gates)`` for each call, as the sync edges must hold them."""
    name_id = con.execute("SELECT max(id) + 1 FROM StringIds").fetchone()[0]
    names = ["cudaStreamWaitEvent_v3020", "cudaStreamWaitEvent_ptsz_v7000", "cuStreamWaitEvent"]
    con.executemany("INSERT INTO StringIds (id, value) VALUES (?, ?)", [(name_id + i, n) for i, n in enumerate(names)])
    launches = con.execute(
        f"SELECT r.start, r.globalTid, r.correlationId FROM {RUNTIME} r "
        f"WHERE r.correlationId IN (SELECT correlationId FROM {KERNEL}) ORDER BY r.start"
    ).fetchall()
    waits = [(start - 2, tid, corr) for start, tid, corr in launches[::every]]
    waits.append((launches[-1][0] + 5, launches[-1][1], None))
    next_id = con.execute(f"SELECT max(correlationId) + 1 FROM {RUNTIME}").fetchone()[0]
    records = [(call, call + 1, tid, next_id + i, name_id + i % 3) for i, (call, tid, _) in enumerate(waits)]
    records += [
        (call + 1, call + 1, tid, corr, name_id + 2) for call, _, tid, corr, name in records[::4] if name != name_id + 2
    ]
    con.executemany(
        f"INSERT INTO {RUNTIME} (start, end, eventClass, globalTid, correlationId, nameId, returnValue) "
        "VALUES (?, ?, 0, ?, ?, ?, 0)",
        records,
    )
    return [(tid & 0xFFFFFF, call, corr) for call, tid, corr in waits]


def _annotated(folder: Path) -> Path:
    """A copy of the NVTX export with, on its launching thread: one of our annotations
    around every 50th launch (nested in one around every other token's range, nested in a
    range with a NUL in its name around the whole capture: ranges span many windows); a range left
    open (a warning); a kernel moved past the last one, so its window is the last and its
    launch, with the annotation around it, is in the first; a cross-stream wait before every
    40th launch (the late kernel's among them); and its first 100 kernels again, launched by a
    second process with the same correlation ids (ids qualified by pid), and a wait of that
    process whose raw id is one of the first process's kernels'."""
    path = folder / "annotated.sqlite"
    shutil.copyfile(NSYS / NVTX_EXPORT, path)
    path.chmod(0o644)
    con = sqlite3.connect(path)
    push_pop = con.execute("SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name = 'NvtxPushPopRange'").fetchone()[0]
    launches = con.execute(
        f"SELECT r.start, r.end, r.globalTid, k.rowid FROM {RUNTIME} r JOIN {KERNEL} k USING (correlationId) "
        "ORDER BY r.start, k.rowid"
    ).fetchall()
    tid = launches[0][2]
    # Around the export's ranges (push/pop ranges nest; ours must too, as the docstring of
    # nsys_windows says): the whole capture, and every other token_N_processing range.
    first, last = con.execute(f"SELECT min(start) - 10, max(end) + 10 FROM {NVTX}").fetchone()
    tokens = con.execute(f"SELECT start, end FROM {NVTX} WHERE text LIKE 'token_%_processing' ORDER BY start")
    ranges = [(first, last, "whole\x00capture")]
    ranges += [(a - 1, b + 1, format_annotation(component="block", step=i)) for i, (a, b) in enumerate(tokens) if i % 2]
    for i in range(0, len(launches), 50):
        name = format_annotation(operator="attention", attention_type="causal", seq_q=128 + i, seq_kv=256)
        ranges.append((launches[i][0] - 1, launches[i][1] + 1, name))
    ranges.append((launches[-1][0], None, "left open"))
    con.executemany(
        f"INSERT INTO {NVTX} (start, end, eventType, globalTid, text) VALUES (?, ?, ?, ?, ?)",
        [(start, end, push_pop, tid, text) for start, end, text in ranges],
    )
    _add_waits(con, 40)
    last = con.execute(f"SELECT max(end) FROM {KERNEL}").fetchone()[0]
    moved = launches[600][3]  # annotated: an attention range is around its launch
    con.execute(
        f"UPDATE {KERNEL} SET start = ? + 1000, end = ? + 1000 + (end - start) WHERE rowid = ?", (last, last, moved)
    )
    cols = ", ".join(r[1] for r in con.execute(f"PRAGMA table_info({KERNEL})") if r[1] != "globalPid")
    con.execute(
        f"INSERT INTO {KERNEL} ({cols}, globalPid) SELECT {cols}, globalPid + (1 << 24) FROM {KERNEL} WHERE rowid <= 100"
    )
    cols = ", ".join(r[1] for r in con.execute(f"PRAGMA table_info({RUNTIME})") if r[1] != "globalTid")
    con.execute(
        f"INSERT INTO {RUNTIME} ({cols}, globalTid) SELECT {cols}, globalTid + (1 << 24) FROM {RUNTIME} "
        f"WHERE correlationId IN (SELECT correlationId FROM {KERNEL} WHERE rowid <= 100)"
    )
    # Waits of the second process: one after its last launch, whose raw id is one of the first
    # process's kernels' (the window of that kernel reads it, and it gates nothing); one just
    # before its launch of kernel 41, which the first process's thread of the same number
    # launches at the same ns.
    wait = "(SELECT id FROM StringIds WHERE value = 'cudaStreamWaitEvent_v3020')"
    con.execute(
        f"INSERT INTO {RUNTIME} ({cols}, globalTid) SELECT max(r.start) + 5, max(r.start) + 6, 0, "
        f"(SELECT correlationId FROM {KERNEL} WHERE rowid = 500), {wait}, 0, NULL, r.globalTid "
        f"FROM {RUNTIME} r WHERE r.globalTid = {tid} + (1 << 24)"
    )
    con.execute(
        f"INSERT INTO {RUNTIME} ({cols}, globalTid) SELECT r.start - 3, r.start - 2, 0, NULL, {wait}, 0, NULL, "
        f"r.globalTid FROM {RUNTIME} r WHERE r.globalTid = {tid} + (1 << 24) "
        f"AND r.correlationId = (SELECT correlationId FROM {KERNEL} WHERE rowid = 41)"
    )
    con.commit()
    con.close()
    return path


def _path(name: str, tmp_path: Path) -> Path:
    require_shared()
    return _annotated(tmp_path) if name == ANNOTATED else NSYS / name


# A window costs attribution ~25 ms whatever its size: windows of 7 (300 of them) are slow.
CASES = [
    *((name, 997) for name in _exports()),
    (NVTX_EXPORT, 61),
    (ANNOTATED, 997),
    (ANNOTATED, 97),
    pytest.param(ANNOTATED, 7, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "window"), CASES)
def test_an_export_read_in_windows_stores_what_the_whole_export_does(
    name: str, window: int, db: Database, raw_dir: Path, tmp_path: Path
) -> None:
    """Kernel rows (operator, attention type, sequence lengths, annotation, names, times,
    stream ...), rollups, run and trace rows (event count, warnings) as the whole export's."""
    path = _path(name, tmp_path)
    whole = ingest_file(db.engine, path, raw_dir=raw_dir)
    expected = _stored(db.engine, whole.run_id)
    with session_scope(db.engine) as session:
        delete_run(session, whole.run_id)
    windowed = ingest_file(db.engine, path, raw_dir=raw_dir, window_kernels=window)
    assert (windowed.created, windowed.kernel_count, windowed.warnings) == (True, whole.kernel_count, whole.warnings)
    got = _stored(db.engine, windowed.run_id)
    for table, frame in expected.items():
        assert_frame_equal(got[table], frame, check_dtypes=False, check_exact=True)


def test_the_annotated_copy_has_what_windows_could_get_wrong(tmp_path: Path) -> None:
    """The comparison above is over many windows, with annotations that decide kernels, the
    late kernel under its launch's annotation, and warnings counted once."""
    path = _path(ANNOTATED, tmp_path)
    big = nsys_windows.indexed(path, tmp_path)
    assert big is not None
    big.window_kernels = 97
    windows = list(big.windows())
    assert len(windows) > 20 and sum(w.height for w in windows) == big.kernel_count == 2048 + 100
    assert big.header.warnings == {"nul_in_text": 1, "nvtx_range_without_end": 1, "correlation_qualified_by_pid": 2}
    last = windows[-1]
    late = last.filter(last["start_ns"] == last["start_ns"].max())
    assert late.height == 1 and late["seq_q"].item() == 128 + 600 and late["attention_type"].item() == "causal"
    rows = windows[0].vstack(windows[1])
    for w in windows[2:]:
        rows.vstack(w, in_place=True)
    assert rows.filter(rows["operator"] == "attention").height == len(range(0, 1536, 50))  # every 50th kernel
    assert rows["component"].drop_nulls().unique().to_list() == ["block"]
    # Every wait gates a launch of its own process (the second's shares its thread's number).
    with sqlite3.connect(path) as con:
        second = con.execute(
            f"SELECT start, (globalTid >> 24) & 16777215 AS pid FROM {RUNTIME} "
            f"WHERE pid = (SELECT max((globalTid >> 24) & 16777215) FROM {RUNTIME}) AND nameId IN "
            "(SELECT id FROM StringIds WHERE value GLOB 'cudaStreamWaitEvent*') ORDER BY start"
        ).fetchall()
    con.close()
    edges = big.sync_rows()
    gated = edges.filter(pl.col("call_ns").is_in([start for start, _ in second]))
    assert gated.height == 2 and gated["dst_correlation"].null_count() == 1
    assert (gated["dst_correlation"].drop_nulls() // (1 << 32)).to_list() == [second[0][1]]
    firsts = edges.filter(
        pl.col("dst_correlation").is_not_null() & ~pl.col("call_ns").is_in(gated["call_ns"].implode())
    )
    assert firsts.height > 30 and (firsts["dst_correlation"] // (1 << 32)).unique().to_list() == [second[0][1] - 1]


def test_cross_stream_waits_of_an_export_become_sync_edges(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    """Each ``cudaStreamWaitEvent`` call gates the next launch on its thread: the edges the
    critical path reads, for an export read whole and in windows alike (the comparison above
    has them too, on the annotated copy)."""
    require_shared()
    path = tmp_path / "waits.sqlite"
    shutil.copyfile(NSYS / NVTX_EXPORT, path)
    path.chmod(0o644)
    con = sqlite3.connect(path)
    expected = _add_waits(con, 40)
    con.commit()
    con.close()
    assert len(expected) == len(range(0, 1536, 40)) + 1  # 1,536 launches of its 2,048 kernels
    whole = ingest_file(db.engine, path, raw_dir=raw_dir)
    edges = _stored(db.engine, whole.run_id)["sync_edge"].sort("seq")
    assert edges.select("tid", "call_ns", "dst_correlation").rows() == expected
    with session_scope(db.engine) as session:
        delete_run(session, whole.run_id)
    windowed = ingest_file(db.engine, path, raw_dir=raw_dir, window_kernels=97)
    assert_frame_equal(_stored(db.engine, windowed.run_id)["sync_edge"].sort("seq"), edges)


# Measured (docs/NOTES-nsysbig2.md): the whole-export path peaks at ~880 MB on this export,
# the windowed one at ~360 MB; the windowed peak does not grow with the export.
PEAK_LIMIT_BYTES = 600 << 20


@pytest.mark.slow
def test_a_big_export_ingests_in_windows_in_bounded_memory(tmp_path: Path) -> None:
    """``tracehouse ingest`` of a generated export just past ``NSYS_WINDOWED_FROM_BYTES`` (the
    NVTX export's activity replicated, times and ids shifted) into SQLite, a whole process,
    peaks below ``PEAK_LIMIT_BYTES`` and stores every copy's kernels."""
    require_shared()
    sys.path.insert(0, str(REPO / "bench"))
    from generate_nsys import write_export

    big = tmp_path / "big.sqlite"
    size, copies = write_export(NSYS / NVTX_EXPORT, big, pipeline.NSYS_WINDOWED_FROM_BYTES + (2 << 20))
    assert size > pipeline.NSYS_WINDOWED_FROM_BYTES
    peak, stored = ingest_peak(big, tmp_path / "big.sqlite3", timeout=300)
    assert peak < PEAK_LIMIT_BYTES, peak
    assert stored == (copies * 2048, copies * 2048 - 1)
