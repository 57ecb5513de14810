"""The runs x operator matrix is paged in the database: pages cut from ``offset`` / ``limit``
concatenate to the whole matrix, which equals the matrix computed the plain way (every run x
every key, from the operator rollup); ``GET /v1/matrix`` answers 1,000 cells unless asked, with
``X-Total-Count`` and a next link; the CLI and the Python client (10,000 cells a request,
following the links) return every cell.  Real traces, cloned as bench/store.py clones runs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import func, select, text

from tests.conftest import SHARED_TRACES, Database, require_shared
from tests.fixtures import Server, run_cli
from tracehouse.analyses.history import matrix, matrix_page
from tracehouse.analyses.runs import list_runs
from tracehouse.api.routes.experiments import MATRIX_PAGE
from tracehouse.client import Client
from tracehouse.core.errors import BadInput
from tracehouse.core.meta import meta_from_mapping
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import OperatorRollup, Run

# Two training traces with different operator sets (a run lacks some keys: 0 cells), and a
# CPU-only trace of another model (filtered out by model).
TRACES = {"a100_record_shapes": "m", "a100_nccl_training": "m", "cpu_only": "other"}
CLONES = 120  # copies of each "m" run: 242 runs, several thousand cells


def _clone(db: Database, like: int, count: int) -> None:
    """``count`` copies of run ``like``'s row and its operator-rollup rows under new run ids."""
    runs = ", ".join(f'"{c.name}"' for c in Run.__table__.columns if c.name != "id")
    rolled = [c.name for c in OperatorRollup.__table__.columns if c.name not in ("id", "run_id")]
    names = ", ".join(f'"{c}"' for c in rolled)
    with db.engine.begin() as conn:
        for _ in range(count):
            conn.execute(text(f"INSERT INTO run ({runs}) SELECT {runs} FROM run WHERE id = :like"), {"like": like})
            new = conn.execute(select(func.max(Run.id))).scalar_one()
            conn.execute(
                text(
                    f"INSERT INTO operator_rollup (run_id, {names}) SELECT :new, {names} FROM operator_rollup WHERE run_id = :like"
                ),
                {"new": new, "like": like},
            )


@pytest.fixture
def store(db: Database, raw_dir: Path) -> Database:
    require_shared()
    for name, model in TRACES.items():
        meta = meta_from_mapping({"model": model, "attention_backend": "flash" if "nccl" in name else "baseline"})
        run = ingest_file(db.engine, SHARED_TRACES / "kineto" / f"{name}.json.gz", meta, raw_dir=raw_dir).run_id
        if model == "m":
            _clone(db, run, CLONES)
    return db


def _plain(session, metric: str, **filters: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    """The whole matrix the plain way: every listed run x every key any of them has."""
    runs = list_runs(session, **filters).select("run_id", "model", "attention_backend", "experiment", "total_ns")
    rows = session.execute(
        select(OperatorRollup.run_id, OperatorRollup.operator, func.sum(OperatorRollup.total_ns))
        .where(OperatorRollup.run_id.in_(runs["run_id"].to_list()), OperatorRollup.operator.is_not(None))
        .group_by(OperatorRollup.run_id, OperatorRollup.operator)
    ).all()
    ns = {(r, k): float(v) for r, k, v in rows}
    keys = sorted({k for _, k in ns})
    out = [
        {
            **{c: run[c] for c in ("run_id", "model", "attention_backend", "experiment")},
            "key": key,
            "value": 0.0
            if not run["total_ns"]
            else ns.get((run["run_id"], key), 0.0) / (1 if metric == "time" else run["total_ns"]),
        }
        for run in runs.iter_rows(named=True)
        for key in keys
    ]
    schema = {"run_id": pl.Int64, "model": pl.String, "attention_backend": pl.String, "experiment": pl.String}
    return pl.DataFrame(out, schema={**schema, "key": pl.String, "value": pl.Float64})


def test_pages_concatenate_to_the_whole_matrix(store: Database) -> None:
    with session_scope(store.engine, read_only=True) as s:
        for metric in ("share", "time"):
            whole = matrix(s, metric, model="m")
            assert_frame_equal(whole, _plain(s, metric, model="m"))
            keys = whole["key"].n_unique()
            assert whole.height == 2 * (CLONES + 1) * keys and keys > 10
            assert whole.filter(pl.col("value") == 0).height > 0  # keys one trace lacks
            for size in (keys - 1, keys, 97, 1000) if metric == "time" else (1000,):  # pages cut inside runs
                pages = [matrix_page(s, metric, model="m", offset=o, limit=size) for o in range(0, whole.height, size)]
                assert {total for _, total in pages} == {whole.height}
                assert_frame_equal(pl.concat([page for page, _ in pages]), whole)
            assert matrix(s, metric, model="m", offset=whole.height, limit=5).is_empty()
            assert_frame_equal(matrix(s, metric, model="m", offset=keys + 1, limit=1), whole.slice(keys + 1, 1))
            assert matrix(s, metric, model="m", offset=whole.height - 2, limit=5).height == 2
        everything = matrix(s)
        assert set(everything["model"]) == {"m", "other"}
        assert_frame_equal(everything, _plain(s, "share"))
        nothing, total = matrix_page(s, model="nobody")
        assert nothing.is_empty() and total == 0 and nothing.schema == whole.schema
        with pytest.raises(BadInput):
            matrix(s, offset=-1)


def test_rest_cli_and_client_agree(store: Database, tmp_path: Path) -> None:
    with session_scope(store.engine, read_only=True) as s:
        whole = matrix(s, "time", model="m")
    assert whole.height > 2 * MATRIX_PAGE
    # The server's row cap under the client's 10,000-cell request: the client follows pages too.
    srv = Server(store, tmp_path / "data", TRACEHOUSE_MAX_ROWS=str(whole.height // 2)).start()
    try:
        read = srv.token("read")
        params = {"model": "m", "metric": "time"}
        first = srv.http.get(f"{srv.url}/v1/matrix", params=params, headers=read)
        assert first.status_code == 200, first.text
        assert len(first.json()) == MATRIX_PAGE and first.headers["x-total-count"] == str(whole.height)
        assert first.headers["x-truncated"] == "true" and f"offset={MATRIX_PAGE}" in first.headers["link"]
        cells, reply = first.json(), first
        while reply.headers["x-truncated"] == "true":
            reply = srv.http.get(str(reply.url.join(reply.headers["link"].split(">")[0].lstrip("<"))), headers=read)
            cells += reply.json()
        assert cells == json.loads(whole.write_json())
        asked = srv.http.get(f"{srv.url}/v1/matrix", params={**params, "limit": 5, "offset": 3}, headers=read)
        assert asked.json() == json.loads(whole.slice(3, 5).write_json())
        with Client(srv.url, read["Authorization"].split()[1]) as client:
            assert_frame_equal(client.matrix("time", model="m"), whole)
    finally:
        srv.stop()
    shown = run_cli("matrix", "--metric", "time", "--model", "m", "--format", "json", "--db", store.url)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(whole.write_json())
