"""Two ingests writing to PostgreSQL at once (a team server's workers, two lab machines'
``tracehouse ingest``): new kernel names that both add in one call are inserted in one order
by every ingest, so neither deadlocks; a transaction PostgreSQL does roll back for a
concurrent one's sake is reported as a conflict to retry, not as a database that is down;
and an ingest so rolled back writes itself again.

SQLite has one writer at a time, so there is nothing to race there."""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import polars as pl
import pytest
from sqlalchemy import func, select, text

from tests import independent
from tests.conftest import KINETO_DIR, PG_ENV, Database, require_shared
from tracehouse.core.errors import DatabaseConflict
from tracehouse.ingest import rows
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.pipeline import ingest_file, parse_trace
from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Kernel, Run, Symbol


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Database]:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"concurrent writers need the PostgreSQL server; {PG_ENV} not set")
    db = Database("postgresql", tmp_path).migrate()
    yield db
    db.drop()


def _kernel_names() -> list[str]:
    """Every shared Kineto trace's GPU activity names, in the order the traces first use them
    (341 names; two A100 traces share up to 42 of their kernels, in other orders)."""
    require_shared()
    names: dict[str, None] = {}
    for path in sorted(KINETO_DIR.glob("*.json.gz")):
        doc = orjson.loads(gzip.decompress(path.read_bytes()))
        events = doc["traceEvents"] if isinstance(doc, dict) else doc
        names.update(dict.fromkeys(e["name"] for e in events if e.get("cat") in independent.GPU_CATS))
    return list(names)


def _at_once(*work: Callable[[], None]) -> list[BaseException | None]:
    """Run each callable in its own thread; what each raised (None: it returned)."""
    with ThreadPoolExecutor(len(work)) as pool:
        futures = [pool.submit(w) for w in work]
        return [f.exception(timeout=60) for f in futures]


def test_two_ingests_adding_the_same_new_kernel_names_both_land(pg: Database) -> None:
    """Each round, two writers start their transactions together and add the same new names,
    one in the traces' order and one in reverse (as two traces that share kernels would).
    Inserted in those orders, most rounds deadlocked (8 of 10 when this test was written)."""
    names = _kernel_names()
    assert len(names) > 300
    for round_ in range(10):
        mine = [f"{name} #{round_}" for name in names]
        start = threading.Barrier(2, timeout=30)
        found: list[pl.DataFrame] = []

        def add(order: list[str], start: threading.Barrier = start, found: list[pl.DataFrame] = found) -> None:
            writer = SqlAlchemyWriter(pg.engine)
            with writer.transaction():
                start.wait()
                found.append(writer.symbol_ids(pl.Series(order)))

        raised = _at_once(lambda m=mine: add(m), lambda m=mine: add(m[::-1]))
        assert raised == [None, None], f"round {round_}: {raised}"
        # Both writers got an id for every name, the same ids, each stored once.
        first, second = (f.sort("text") for f in found)
        assert first.equals(second) and first["text"].to_list() == sorted(mine)
        with session_scope(pg.engine) as s:
            stored = s.scalar(select(func.count()).select_from(Symbol).where(Symbol.text.like(f"% #{round_}")))
        assert stored == len(mine)


def test_a_deadlock_is_a_conflict_to_retry_and_the_other_write_lands(pg: Database) -> None:
    """Two sessions each insert a symbol, then the other's: PostgreSQL rolls one back.  That
    one says so (``database_conflict``, not "database unavailable"), and the other commits."""
    holds_first = [threading.Event(), threading.Event()]
    texts = [("deadlock-a", "deadlock-b"), ("deadlock-b", "deadlock-a")]

    def write(i: int) -> None:
        with session_scope(pg.engine) as s:
            s.add(Symbol(digest=texts[i][0], text=texts[i][0]))
            s.flush()
            holds_first[i].set()
            assert holds_first[1 - i].wait(30)
            time.sleep(0.2 * i)  # the second waits once the first is waiting: the cycle closes
            s.add(Symbol(digest=texts[i][1], text=texts[i][1]))
            s.flush()

    raised = _at_once(lambda: write(0), lambda: write(1))
    conflicts = [e for e in raised if isinstance(e, DatabaseConflict)]
    assert len(conflicts) == 1 and raised.count(None) == 1, raised
    assert conflicts[0].code == "database_conflict" and "try again" in conflicts[0].message
    with session_scope(pg.engine) as s:
        stored = set(s.scalars(select(Symbol.text).where(Symbol.text.like("deadlock-%"))))
    assert stored == {"deadlock-a", "deadlock-b"}  # the winner's two rows, and only those


def _wait_for_a_lock_wait(pg: Database, seconds: float = 30) -> None:
    """Until another session of this database waits on a lock (the ingest, on the held name)."""
    deadline = time.monotonic() + seconds
    # Autocommit: a backend reads pg_stat_activity once per transaction, so polling inside one
    # transaction never sees a wait that began after the first look.
    with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while time.monotonic() < deadline:
            waiting = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the ingest never waited on the held name")


def test_an_ingest_rolled_back_for_a_deadlock_is_written_again(
    pg: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another transaction holds the last of the trace's new names (in the order the ingest
    inserts them) and, once the ingest waits for it, asks for the first: a deadlock, which
    PostgreSQL ends by rolling the ingest back (the other session waits 10 s before it would
    look).  The ingest writes itself again from the parse in hand, and lands once."""
    require_shared()
    trace = KINETO_DIR / "a100_alexnet_small.json.gz"
    names = rows.symbol_digests(rows.kernel_names(attribute(parse_trace(trace, "kineto"))))
    first, last = min(names), max(names)
    holding = threading.Event()

    def hold_last_then_want_first() -> None:
        with session_scope(pg.engine) as s:
            s.execute(text("SET LOCAL deadlock_timeout = '10s'"))  # so the ingest is the one rolled back
            s.add(Symbol(digest=last, text=names[last]))
            s.flush()
            holding.set()
            _wait_for_a_lock_wait(pg)
            s.add(Symbol(digest=first, text=names[first]))
            s.flush()

    with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.INFO, logger="tracehouse.ingest.pipeline"):
        holder = pool.submit(hold_last_then_want_first)
        assert holding.wait(30)
        result = ingest_file(pg.engine, trace, raw_dir=tmp_path / "raw")
        holder.result(timeout=60)
    assert any("writing it again" in r.getMessage() for r in caplog.records), "the ingest was not rolled back"
    with session_scope(pg.engine) as s:
        runs = s.scalars(select(Run.id)).all()
        kernels = s.scalar(select(func.count()).select_from(Kernel).where(Kernel.run_id == result.run_id))
    assert result.created and runs == [result.run_id] and kernels == result.kernel_count > 0
