"""The CLI's SQLite ingest (``ingest/load_sqlite.py``, plain ``sqlite3``) writes exactly the rows
the SQLAlchemy ingest (``pipeline.ingest_file``) writes, keeps its one-transaction guarantee,
and is used only where it applies."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Integer, text

from tests.conftest import DATA, KINETO_DIR, SHARED_TRACES, Database, kineto_traces, require_shared
from tests.test_counter_ranges import _counter_doc
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES
from tracehouse.core.meta import RunMeta
from tracehouse.ingest import load_sqlite
from tracehouse.ingest.digests import Early, file_sha256, gzip_content_sha256
from tracehouse.ingest.load_sqlite import ingest_file as sqlite_ingest_file
from tracehouse.ingest.load_sqlite import open_at_head
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.rows import KERNEL_INT32_COLUMNS, SERVER_DEFAULTS
from tracehouse.schema.models import Base, Kernel

# Columns holding a symbol id: compared as the symbol's text (ids follow insertion order,
# which polars' unique() does not fix).
_SYMBOL_REFS = {
    "kernel": ("name_id", "cpu_op_id", "annotation_id", "deciding_op_id"),
    "kernel_rollup": ("name_id",),
    "ncu_metric": ("name_id",),
}
_WHEN = {"created_at", "ingested_at"}  # the moment of the ingest
_UNORDERED_IDS = {"symbol", "operator_rollup", "kernel", "ncu_metric"}  # ids follow polars' group order
_TABLES = ("hardware", "model", "run", "run_tag", "trace", "symbol", "kernel", "operator_rollup", "kernel_rollup")


def test_the_constants_are_the_models() -> None:
    narrow = tuple(c.name for c in Kernel.__table__.columns if type(c.type) is Integer and not c.primary_key)
    assert narrow == KERNEL_INT32_COLUMNS
    for table, defaults in SERVER_DEFAULTS.items():
        assert defaults == {c.name for c in Base.metadata.tables[table].c if c.server_default is not None}


def _dump(db: Database, raw_dir: Path) -> dict[str, list[tuple]]:
    """Every table's rows, comparable across two databases."""
    out: dict[str, list[tuple]] = {}
    with db.engine.connect() as conn:
        symbols = dict(conn.execute(text("SELECT id, text FROM symbol")).all())
        for table in (*_TABLES, "ncu_metric"):
            result = conn.execute(text(f"SELECT * FROM {table}"))
            columns = list(result.keys())
            rows = []
            for row in result:
                values = dict(zip(columns, row, strict=True))
                for ref in _SYMBOL_REFS.get(table, ()):
                    values[ref] = symbols.get(values[ref])
                if table in _UNORDERED_IDS:
                    values.pop("id")
                if table == "trace":
                    values["raw_path"] = str(Path(values["raw_path"]).relative_to(raw_dir))
                rows.append(tuple((k, v) for k, v in values.items() if k not in _WHEN))
            out[table] = sorted(rows, key=repr)
    return out


def _pair(tmp_path: Path) -> tuple[Database, Database]:
    return Database("sqlite", tmp_path / "orm").migrate(), Database("sqlite", tmp_path / "plain").migrate()


def _ingest_both(orm: Database, plain: Database, path: Path, meta: RunMeta | None = None) -> None:
    a = ingest_file(orm.engine, path, meta, raw_dir=orm.raw_dir)
    conn = open_at_head(plain.url)
    assert conn is not None
    try:
        b = sqlite_ingest_file(conn, path, meta, raw_dir=plain.raw_dir)
    finally:
        conn.close()
    assert (a.run_id, a.trace_id, a.created, a.kernel_count, a.warnings) == (
        b.run_id,
        b.trace_id,
        b.created,
        b.kernel_count,
        b.warnings,
    )


def test_every_shared_trace_gives_the_same_rows(tmp_path: Path) -> None:
    """One database each way, every shared trace (Kineto and nsys) and the tests' own in turn,
    some twice (the duplicate answer) or with metadata (model, tags): every row alike."""
    require_shared()
    orm, plain = _pair(tmp_path)
    meta = RunMeta(model="stable-diffusion", attention_backend="flash", tags={"lab": "a", "sweep": "1"})
    traces = [
        *kineto_traces(),
        *sorted((SHARED_TRACES / "nsys").glob("*.sqlite")),
        DATA / "sd_tiny_cpu_baseline.json.gz",  # with a manifest beside it
        DATA / "sd_tiny_cpu_flash.json.gz",
    ]
    for path in traces:
        _ingest_both(orm, plain, path, meta if "alexnet" in path.name else None)
    plain_copy = tmp_path / "recompressed.json.gz"  # the same content in another container
    plain_copy.write_bytes(gzip.compress(gzip.decompress((KINETO_DIR / "triton_example.json.gz").read_bytes()), 1))
    for again in (KINETO_DIR / "cpu_only.json.gz", plain_copy):
        _ingest_both(orm, plain, again)
    assert _dump(orm, orm.raw_dir) == _dump(plain, plain.raw_dir)
    assert len(_dump(plain, plain.raw_dir)["run"]) == len(traces)


def test_a_trace_with_cupti_counters_gives_the_same_rows(tmp_path: Path) -> None:
    orm, plain = _pair(tmp_path)
    _ingest_both(orm, plain, _counter_doc(tmp_path / "ranges.json"))
    rows = _dump(plain, plain.raw_dir)
    assert rows["ncu_metric"] and rows == _dump(orm, orm.raw_dir)


def test_failure_mid_load_rolls_back_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared()
    orm, plain = _pair(tmp_path)
    _ingest_both(orm, plain, KINETO_DIR / "cpu_only.json.gz")
    before = _dump(plain, plain.raw_dir)
    real = load_sqlite.insert_kernels

    def insert_then_fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(load_sqlite, "insert_kernels", insert_then_fail)
    conn = open_at_head(plain.url)
    assert conn is not None
    with pytest.raises(RuntimeError, match="disk full"):
        sqlite_ingest_file(conn, KINETO_DIR / "a100_alexnet_small.json.gz", raw_dir=plain.raw_dir)
    assert _dump(plain, plain.raw_dir) == before
    assert len(list(plain.raw_dir.rglob("*.json.gz"))) == 1  # the first trace's, not the failed one's


def test_only_a_plain_sqlite_file_at_head_is_opened(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path / "db").migrate()
    conn = open_at_head(db.url)
    assert conn is not None and conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    conn.close()
    behind = tmp_path / "behind.sqlite3"
    shutil.copyfile(tmp_path / "db" / "tracehouse.sqlite3", behind)
    with sqlite3.connect(behind) as c:
        c.execute("UPDATE alembic_version SET version_num = '0001'")
    not_a_db = tmp_path / "notes.sqlite3"
    not_a_db.write_text("not a database")
    for url in (
        f"sqlite:///{behind}",
        f"sqlite:///{not_a_db}",
        f"sqlite:///{tmp_path / 'missing.sqlite3'}",
        f"{db.url}?timeout=5",
        "sqlite:///:memory:",
        "postgresql://user@localhost/db",
    ):
        assert open_at_head(url) is None, url


def test_early_digests_are_the_ingests_own(tmp_path: Path) -> None:
    """The digests the CLI starts before its imports equal what the ingest computes; one it
    could not compute (a truncated gzip, a missing file) is left to the ingest, which reports it."""
    require_shared()
    two_members = tmp_path / "two.json.gz"
    raw = gzip.decompress((KINETO_DIR / "cpu_only.json.gz").read_bytes())
    two_members.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes((KINETO_DIR / "cpu_only.json.gz").read_bytes()[:-20])
    plain = tmp_path / "plain.json"
    plain.write_bytes(raw)
    files = [*kineto_traces(), two_members, plain]
    early = Early([*files, truncated, tmp_path / "missing.json.gz"], DEFAULT_MAX_TRACE_BYTES, 1 << 30)
    for path in files:
        sha256, size = file_sha256(path)
        content = gzip_content_sha256(path) if path.name.endswith(".gz") else sha256
        assert early.get(path) == (sha256, size, content), path
    assert early.get(truncated) is None and early.get(tmp_path / "missing.json.gz") is None
    assert early.get(tmp_path / "never_given.json") is None
    assert early.get(two_members)[2] == early.get(plain)[2]  # type: ignore[index]  # one content, two containers
