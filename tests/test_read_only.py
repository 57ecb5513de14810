"""Analyses run in read-only sessions: the database itself refuses a write (SQLite's
``query_only``, PostgreSQL's ``SET TRANSACTION READ ONLY``), from Python, from a REST read route
and from a CLI query, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import Database
from tests.fixtures import AppServer, assert_error
from tracehouse.api.deps import SessionDep  # at module level: the routes' annotations are resolved here
from tracehouse.core.errors import DatabaseError
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Hardware


def _hardware_count(db: Database) -> int:
    with session_scope(db.engine) as s:
        return s.scalar(select(func.count()).select_from(Hardware))


def _writing_analysis(session: Session, _params: object = None) -> pl.DataFrame:
    """An analysis with a bug: it writes a row while it reads."""
    session.add(Hardware(name="written-by-a-query"))
    session.flush()
    return pl.DataFrame({"n": [session.scalar(select(func.count()).select_from(Hardware))]})


def test_an_analysis_that_writes_fails_in_a_read_only_session(db: Database) -> None:
    before = _hardware_count(db)
    with pytest.raises(DatabaseError, match="read-only"), session_scope(db.engine, read_only=True) as s:
        _writing_analysis(s)
    assert _hardware_count(db) == before
    # The same pooled connection writes again in an ordinary session, and reads in a read-only one.
    with session_scope(db.engine) as s:
        _writing_analysis(s)
    assert _hardware_count(db) == before + 1
    with session_scope(db.engine, read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Hardware)) == before + 1


def test_rest_read_routes_get_read_only_sessions(db: Database, tmp_path: Path) -> None:
    srv = AppServer(db, tmp_path / "data")
    srv.start()
    try:
        app = srv.http.app  # type: ignore[attr-defined]

        @app.get("/test/write")
        def write_on_get(session: SessionDep) -> dict[str, int]:
            return {"n": int(_writing_analysis(session)["n"][0])}

        @app.post("/test/write")
        def write_on_post(session: SessionDep) -> dict[str, int]:
            return {"n": int(_writing_analysis(session)["n"][0])}

        before = _hardware_count(db)
        body = assert_error(srv.http.get("/test/write"), 503, code="database_error", contains="read-only")
        assert "written-by-a-query" not in body["error"]
        assert _hardware_count(db) == before
        assert srv.http.post("/test/write").json() == {"n": before + 1}  # the method, not the route, decides
        assert _hardware_count(db) == before + 1
    finally:
        srv.stop()


def test_cli_queries_run_in_read_only_sessions(db: Database) -> None:
    from tracehouse.api.cli_analyses import show_frame

    before = _hardware_count(db)
    with pytest.raises(DatabaseError, match="read-only"):
        show_frame(db.url, "json", "writes", _writing_analysis)
    assert _hardware_count(db) == before


def test_no_pooled_connection_stays_read_only(db: Database) -> None:
    """SQLite's query_only outlives the transaction: a connection back in the pool must write
    again, whichever connection the next session (the ingest worker's, say) is given."""
    query = "PRAGMA query_only" if db.backend == "sqlite" else "SHOW transaction_read_only"
    for conn in [db.engine.connect() for _ in range(3)]:  # three connections into the pool
        conn.close()
    with session_scope(db.engine, read_only=True) as s:
        s.execute(select(func.count()).select_from(Hardware))
    with pytest.raises(DatabaseError), session_scope(db.engine, read_only=True) as s:
        _writing_analysis(s)
    held = [db.engine.connect() for _ in range(3)]
    try:
        assert [str(c.exec_driver_sql(query).scalar()) for c in held] == ["0" if db.backend == "sqlite" else "off"] * 3
    finally:
        for conn in held:
            conn.close()
