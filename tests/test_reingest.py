"""Re-ingest from the kept raw file: a run whose stored classification is stale (here: wiped to
'other' behind the store's back, as an older rule table would have left it) gets today's
classification back, keeps its id, tags and counters, and a failure changes nothing."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import delete, func, select, update

from tests.conftest import KINETO_DIR, Database
from tests.test_ncu_link import write_ncu_csv
from tracehouse.analyses.breakdown import breakdown
from tracehouse.analyses.runs import run_tags
from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.meta import RunMeta
from tracehouse.ingest.ncu_load import ingest_ncu
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.reingest import reingest_candidates, reingest_run
from tracehouse.schema.db import session_scope
from tracehouse.schema.memory import MemoryEvent
from tracehouse.schema.models import Kernel, KernelRollup, NcuMetric, OperatorRollup, Run, Symbol, Trace
from tracehouse.schema.sync import SyncEdge

TRACE = KINETO_DIR / "a100_alexnet_small.json.gz"


def _stale(db: Database, run_id: int) -> None:
    """What an older rule table would have stored: every kernel 'other', rollups to match."""
    with session_scope(db.engine) as s:
        s.execute(update(Kernel).where(Kernel.run_id == run_id).values(operator="other"))
        s.execute(update(OperatorRollup).where(OperatorRollup.run_id == run_id).values(operator="other"))


def _links(db: Database, run_id: int) -> list[tuple[int, str]]:
    """(ncu launch id, name of the kernel it is linked to)."""
    with session_scope(db.engine) as s:
        rows = s.execute(
            select(NcuMetric.kernel_id, Symbol.text)
            .join(Kernel, Kernel.id == NcuMetric.kernel_ref)
            .join(Symbol, Symbol.id == Kernel.name_id)
            .where(NcuMetric.run_id == run_id)
            .distinct()
            .order_by(NcuMetric.kernel_id)
        ).all()
    return [tuple(r) for r in rows]


def test_reingest_restores_todays_classification(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    if not TRACE.is_file():
        pytest.skip(f"shared trace not found at {TRACE}")
    run_id = ingest_file(db.engine, TRACE, RunMeta(model="alexnet", tags={"lab": "a"}), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        fresh = breakdown(s, run_id, "operator")
        names = s.scalars(
            select(Symbol.text)
            .join(Kernel, Kernel.name_id == Symbol.id)
            .where(Kernel.run_id == run_id, Kernel.kind == "kernel")
            .order_by(Kernel.seq)
        ).all()
    ingest_ncu(db.engine, [write_ncu_csv(tmp_path / "ncu.csv", list(names))], raw_dir=raw_dir, run_id=run_id)
    linked = _links(db, run_id)
    assert len(linked) == len(names)
    _stale(db, run_id)
    with session_scope(db.engine) as s:
        assert breakdown(s, run_id, "operator")["operator"].to_list() == ["other"]
    assert reingest_candidates(db.engine) == [run_id]
    result = reingest_run(db.engine, run_id)
    kernel_rows = fresh["kernel_count"].sum()
    assert (result.run_id, result.kernel_count, result.counters_linked) == (run_id, kernel_rows, len(names))
    # Every kernel today's rules do not call 'other' changed back.
    moved = fresh.filter(pl.col("operator") != "other")["kernel_count"].sum()
    assert result.reclassified == moved and result.other_ns_after < result.other_ns_before
    with session_scope(db.engine) as s:
        assert breakdown(s, run_id, "operator").equals(fresh)
        assert run_tags(s, run_id) == {"lab": "a"} and s.get(Run, run_id).model_id is not None
        assert s.scalar(select(func.count()).select_from(KernelRollup).where(KernelRollup.run_id == run_id)) > 0
    assert _links(db, run_id) == linked  # same launches, same kernels (new rows)


def test_reingest_failures_change_nothing(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    if not TRACE.is_file():
        pytest.skip(f"shared trace not found at {TRACE}")
    run_id = ingest_file(db.engine, TRACE, raw_dir=raw_dir).run_id
    with pytest.raises(NotFound):
        reingest_run(db.engine, run_id + 1)
    ncu_only = ingest_ncu(db.engine, [write_ncu_csv(tmp_path / "x.csv", ["k1", "k2"])], raw_dir=raw_dir).run_id
    with pytest.raises(BadInput, match="no timeline trace"):
        reingest_run(db.engine, ncu_only)
    _stale(db, run_id)
    with session_scope(db.engine) as s:
        raw = Path(s.scalar(select(Trace.raw_path).where(Trace.run_id == run_id)))
    raw.rename(raw.with_suffix(".moved"))
    with pytest.raises(NotFound, match="raw file is gone") as gone:
        reingest_run(db.engine, run_id)
    assert str(raw.parent) not in str(gone.value)  # the store's layout is the operator's business
    with session_scope(db.engine) as s:
        assert breakdown(s, run_id, "operator")["operator"].to_list() == ["other"]  # untouched


def test_cli_reingest_all(db: Database, raw_dir: Path) -> None:
    import json

    from tests.test_cli import _cli

    if not TRACE.is_file():
        pytest.skip(f"shared trace not found at {TRACE}")
    run_id = json.loads(_cli("ingest", str(TRACE), "--db", db.url, "--json").stdout)[0]["run_id"]
    _stale(db, run_id)
    out = _cli("reingest", "--all", "--db", db.url, "--json")
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["run_id"] == run_id and result["other_ns_after"] == 0 < result["other_ns_before"]
    nothing = _cli("reingest", "--db", db.url)
    assert nothing.returncode == 2 and "--all" in nothing.stderr


def test_reingest_backfills_memory_events(db: Database, raw_dir: Path) -> None:
    """A run stored before memory_event existed (its rows gone) gets the profiler's [memory]
    events back, the same rows a fresh ingest writes; a second re-ingest does not double them."""
    trace = Path(__file__).parent / "data" / "memory" / "dlm_tiny_cpu_baseline.json.gz"
    run_id = ingest_file(db.engine, trace, RunMeta(model="diffusion-lm"), raw_dir=raw_dir).run_id
    columns = list(MemoryEvent.__table__.columns)

    def memory() -> list[tuple]:
        with session_scope(db.engine) as s:
            return [
                tuple(r)
                for r in s.execute(select(*columns).where(MemoryEvent.run_id == run_id).order_by(MemoryEvent.seq))
            ]

    fresh = memory()
    assert len(fresh) > 100  # the trace records allocations and frees
    with session_scope(db.engine) as s:
        s.execute(delete(MemoryEvent).where(MemoryEvent.run_id == run_id))
    assert memory() == []
    reingest_run(db.engine, run_id)
    assert memory() == fresh
    reingest_run(db.engine, run_id)
    assert memory() == fresh


def _stored(db: Database, run_id: int) -> tuple[list[tuple], list[tuple], tuple]:
    """The run's kernel rows (by seq, without ids), operator rollup and totals."""
    with session_scope(db.engine) as s:
        kernels = s.execute(
            select(
                Kernel.seq,
                Kernel.start_ns,
                Kernel.dur_ns,
                Symbol.text,
                Kernel.operator,
                Kernel.operator_source,
                Kernel.attention_type,
                Kernel.seq_q,
                Kernel.op_flops,
            )
            .join(Symbol, Symbol.id == Kernel.name_id)
            .where(Kernel.run_id == run_id)
            .order_by(Kernel.seq)
        ).all()
        rollup = s.execute(
            select(OperatorRollup.operator, OperatorRollup.attention_type, OperatorRollup.total_ns)
            .where(OperatorRollup.run_id == run_id)
            .order_by(OperatorRollup.operator, OperatorRollup.attention_type, OperatorRollup.total_ns)
        ).all()
        run = s.get(Run, run_id)
        assert run is not None
        totals = (run.kernel_count, run.total_ns, run.span_ns, run.other_ns)
    return [tuple(k) for k in kernels], [tuple(r) for r in rollup], totals


def _sync_edges(db: Database, run_id: int) -> list[tuple]:
    with session_scope(db.engine) as s:
        edges = s.execute(
            select(SyncEdge.seq, SyncEdge.tid, SyncEdge.call_ns, SyncEdge.dst_correlation)
            .where(SyncEdge.run_id == run_id)
            .order_by(SyncEdge.seq)
        ).all()
    return [tuple(e) for e in edges]


def test_a_windowed_reingest_replaces_a_window_at_a_time_as_the_whole_one_does(
    db: Database, raw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trace read in windows is re-read in windows (a multi-GB trace never parsed whole):
    the same kernel rows, rollup, totals and change report as the whole-trace re-ingest; a
    stored kernel past today's last one is deleted and reported."""
    from tracehouse.ingest import reingest

    if not TRACE.is_file():
        pytest.skip(f"shared trace not found at {TRACE}")
    run_id = ingest_file(db.engine, TRACE, raw_dir=raw_dir).run_id
    fresh, edges = _stored(db, run_id), _sync_edges(db, run_id)
    assert len(edges) == 34  # the trace's cudaStreamWaitEvent calls
    _stale(db, run_id)
    whole = reingest_run(db.engine, run_id)
    assert _stored(db, run_id) == fresh
    _stale(db, run_id)
    with session_scope(db.engine) as s:  # a kernel stored past the end, as an older parser might have left
        last = s.scalars(select(Kernel).where(Kernel.run_id == run_id).order_by(Kernel.seq.desc())).first()
        assert last is not None
        s.execute(
            Kernel.__table__.insert().values(
                run_id=run_id,
                trace_id=last.trace_id,
                seq=last.seq + 1000,
                kind="kernel",
                start_ns=last.start_ns,
                dur_ns=7,
                name_id=last.name_id,
                operator="other",
                operator_source="none",
            )
        )

    def parsed_whole(*_: object, **__: object) -> None:
        raise AssertionError("the windowed re-ingest parsed the trace whole")

    monkeypatch.setattr(reingest, "parse_trace", parsed_whole)
    windowed = reingest_run(db.engine, run_id, window_kernels=97)
    kernels, rollup, totals = _stored(db, run_id)
    assert (kernels, totals) == (fresh[0], fresh[2])
    assert rollup == fresh[1]
    assert _sync_edges(db, run_id) == edges  # the cross-stream waits, gathered across windows
    assert windowed.kernel_count == whole.kernel_count == len(kernels)
    assert windowed.reclassified == whole.reclassified + 1  # the extra kernel, gone
    assert windowed.other_ns_before == whole.other_ns_before + 7
    assert windowed.other_ns_after == whole.other_ns_after
    by_change = {(c["kernel"], c["operator_before"], c["operator_after"]): c for c in windowed.changes}
    for change in whole.changes:
        key = (change["kernel"], change["operator_before"], change["operator_after"])
        assert by_change[key]["kernels"] == change["kernels"] and by_change[key]["total_ns"] == change["total_ns"]
