"""One write path, two writers: every shared trace ingested through SQLAlchemy's writer (on
SQLite and on PostgreSQL) and through the plain-``sqlite3`` writer gives the same rows in
every table; a failure inside the sqlite3 writer's transaction leaves the database as it was;
the CLI takes the sqlite3 writer only for a SQLite file at the schema head."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Integer

from tests.conftest import DATA, KINETO_DIR, SHARED_TRACES, Database, require_shared
from tests.test_counter_ranges import _counter_doc
from tracehouse.core.errors import DatabaseError
from tracehouse.core.meta import RunMeta
from tracehouse.ingest import rows
from tracehouse.ingest.pipeline import IngestResult, ingest_file
from tracehouse.ingest.writer import Writer
from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter
from tracehouse.ingest.writer_sqlite import SqliteWriter, open_at_head
from tracehouse.schema.memory import MemoryEvent
from tracehouse.schema.models import Base, Kernel
from tracehouse.schema.sync import SyncEdge

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")  # SQLAlchemy's SQLite DATETIME text
_STAMPS = {"created_at", "ingested_at"}
# Ids a PostgreSQL upsert may skip (ON CONFLICT DO NOTHING takes a sequence value): compared by name.
_BY_NAME = {"hardware_id": "hardware", "model_id": "model"}


def _traces(tmp: Path) -> list[tuple[Path, RunMeta | None]]:
    """Every shared Kineto and nsys trace, the test traces with manifests (model, tags), a trace
    with memory events, a CUPTI range-profiler trace, and a duplicate."""
    require_shared()
    found: list[tuple[Path, RunMeta | None]] = [(p, None) for p in sorted(KINETO_DIR.glob("*.json.gz"))]
    found += [(p, None) for p in sorted((SHARED_TRACES / "nsys").glob("*.sqlite"))]
    found += [(p, None) for p in sorted(DATA.glob("*.json.gz"))]
    found += [(p, RunMeta(model="llama-3-8b", tags={"k": "v"})) for p in sorted((DATA / "memory").glob("*.json.gz"))]
    found.append((_counter_doc(tmp / "counters.json.gz"), None))
    found.append((KINETO_DIR / "a100_alexnet_small.json.gz", RunMeta(model="other")))  # the same file again
    return found


def _ingest_all(target: Engine | Writer, traces: list[tuple[Path, RunMeta | None]], raw: Path, **kw: Any) -> list:
    out: list[IngestResult] = [ingest_file(target, p, meta, raw_dir=raw, **kw) for p, meta in traces]
    return out


def _tables(engine: Engine, names: list[str]) -> dict[str, list[tuple]]:
    """Every table's rows, values normalised across backends (booleans as 0/1, timestamps
    checked and masked, hardware and model ids as their names), sorted."""
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        lookup = {
            col: dict(conn.exec_driver_sql(f"SELECT id, name FROM {table}").all()) for col, table in _BY_NAME.items()
        }
        for table, columns in _columns(names).items():
            keep = [c for c in columns if not (table in _BY_NAME.values() and c == "id")]
            quoted = ", ".join(f'"{c}"' for c in keep)
            result = conn.exec_driver_sql(f"SELECT {quoted} FROM {table}").all()
            out[table] = sorted(
                (tuple(_value(c, v, lookup) for c, v in zip(keep, r, strict=True)) for r in result), key=repr
            )
    return out


def _columns(names: list[str]) -> dict[str, list[str]]:
    return {t: [c.name for c in Base.metadata.tables[t].columns] for t in names}


def _value(column: str, value: Any, lookup: dict[str, dict]) -> Any:
    if column in _STAMPS:
        assert value is not None and (not isinstance(value, str) or _STAMP.match(value)), value
        return "<stamp>"
    if column in _BY_NAME:
        return None if value is None else lookup[column][value]
    return int(value) if isinstance(value, bool) else value


def _written_tables() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables]


@pytest.mark.parametrize("windowed", [False, True], ids=["whole", "windowed"])
def test_both_writers_write_the_same_rows(db: Database, tmp_path: Path, windowed: bool) -> None:
    """SQLAlchemy's writer on this backend, the sqlite3 writer on a SQLite file: every table
    row for row, and the same results (run ids, kernel counts, warnings, duplicates)."""
    traces = _traces(tmp_path)
    kw: dict[str, Any] = {"window_kernels": 3000} if windowed else {}
    if windowed:  # every Kineto trace with kernels and every nsys export, a window at a time
        big = [p for p, _ in traces if p.name.startswith(("a100", "v100", "mi250", "triton")) or p.suffix == ".sqlite"]
        assert any(p.suffix == ".sqlite" for p in big)
        traces = [(p, RunMeta(model="llama-3-8b", tags={"k": str(i)})) for i, p in enumerate(big)]
    raw = tmp_path / "raw"  # one raw store: the same raw_path in both
    through_sqlalchemy = _ingest_all(db.engine, traces, raw, **kw)

    other = Database("sqlite", tmp_path / "plain").migrate()
    writer = open_at_head(other.url)
    assert isinstance(writer, SqliteWriter)
    try:
        through_sqlite = _ingest_all(writer, traces, raw, **kw)
    finally:
        writer.close()
    assert through_sqlite == through_sqlalchemy
    assert through_sqlite[-1].duplicate_of is not None
    names = _written_tables()
    mine, theirs = _tables(other.engine, names), _tables(db.engine, names)
    for table in names:
        assert mine[table] == theirs[table], table
    assert all(mine[t] for t in ("run", "trace", "kernel", "symbol", "kernel_rollup", "operator_rollup", "run_tag"))
    if not windowed:
        assert all(mine[t] for t in ("launch_rollup", "memory_event", "sync_edge", "ncu_metric", "model"))
    other.drop()


def test_the_constants_are_the_models() -> None:
    kernel = Kernel.__table__.columns
    narrow = [c.name for c in kernel if type(c.type) is Integer and not c.primary_key]
    assert list(rows.KERNEL_INT32_COLUMNS) == narrow
    assert set(rows.KERNEL_TABLE_COLUMNS) == {c.name for c in kernel if not c.primary_key}
    defaults = {
        t.name: tuple(c.name for c in t.columns if c.server_default is not None)
        for t in Base.metadata.sorted_tables
        if any(c.server_default is not None for c in t.columns)
    }
    assert defaults == rows.SERVER_DEFAULTS
    assert list(rows.MEMORY_EVENT_COLUMNS) == [c.name for c in MemoryEvent.__table__.columns]
    assert list(rows.SYNC_EDGE_COLUMNS) == [c.name for c in SyncEdge.__table__.columns]


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _written_tables()}


@pytest.mark.parametrize("error", [RuntimeError("disk full"), sqlite3.IntegrityError("constraint")])
def test_a_failure_inside_the_sqlite3_writer_leaves_everything_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    db = Database("sqlite", tmp_path).migrate()
    path = db.url.removeprefix("sqlite:///")
    writer = open_at_head(db.url)
    assert writer is not None
    raw = tmp_path / "raw"
    ingest_file(writer, DATA / "sd_tiny_cpu_baseline.json.gz", raw_dir=raw)
    before = _counts(Path(path))
    real = Writer.insert_kernels

    def insert_then_fail(self: Writer, *args: Any) -> None:
        real(self, *args)
        raise error

    monkeypatch.setattr(Writer, "insert_kernels", insert_then_fail)
    expected = DatabaseError if isinstance(error, sqlite3.Error) else RuntimeError
    with pytest.raises(expected) as caught:
        ingest_file(writer, KINETO_DIR / "a100_alexnet_small.json.gz", raw_dir=raw)
    if expected is DatabaseError:
        assert str(caught.value) == "database error: IntegrityError"
    assert _counts(Path(path)) == before
    assert len(list(raw.rglob("*.json.gz"))) == 1  # only the first trace's raw file
    monkeypatch.undo()
    assert ingest_file(writer, KINETO_DIR / "a100_alexnet_small.json.gz", raw_dir=raw).run_id == 2
    writer.close()


def test_only_a_sqlite_file_at_head_gets_the_sqlite3_writer(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path).migrate()
    path = Path(db.url.removeprefix("sqlite:///"))
    at_head = open_at_head(db.url)
    assert at_head is not None
    at_head.close()
    for url in (
        f"sqlite:///{tmp_path / 'missing.sqlite3'}",  # new: Alembic makes it
        f"sqlite:///{path}?mode=ro",
        "sqlite:///:memory:",
        "sqlite://",
        "postgresql://u@h/db",
        f"sqlite+pysqlite:///{path}",
    ):
        assert open_at_head(url) is None, url
    assert not (tmp_path / "missing.sqlite3").exists()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'older'")
    assert open_at_head(db.url) is None  # out of date: Alembic names the command
    (tmp_path / "not.sqlite3").write_text("not a database")
    assert open_at_head(f"sqlite:///{tmp_path / 'not.sqlite3'}") is None


def test_the_sqlalchemy_writer_refuses_writes_outside_a_transaction(db: Database) -> None:
    with pytest.raises(DatabaseError, match="outside"):
        SqlAlchemyWriter(db.engine).insert_rows("symbol", rows.symbol_frame({}, {}))


def _content_digests(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT content_sha256 FROM trace ORDER BY id")]


def test_the_content_digest_comes_from_the_parses_own_inflate(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip trace is inflated once: its content digest is hashed by the scan's gunzip thread
    (a second gunzip cost ~50 ms of CPU), equal to the one the file's own inflate gives, a
    two-member gzip included; a trace read another way (the reference decoder) still gets it."""
    import gzip
    import hashlib

    from tracehouse.ingest import pipeline

    rank3 = KINETO_DIR / "a100_rank3_of8_training.json.gz"
    text = gzip.decompress((DATA / "sd_tiny_cpu_flash.json.gz").read_bytes())
    two = tmp_path / "two_members.json.gz"
    two.write_bytes(gzip.compress(text[:1000]) + gzip.compress(text[1000:]))
    expected = [pipeline.gzip_content_sha256(rank3), hashlib.sha256(text).hexdigest()]

    def second_inflate(*_: object) -> str:
        raise AssertionError("inflated a second time")

    monkeypatch.setattr(pipeline, "gzip_content_sha256", second_inflate)
    for path in (rank3, two):
        ingest_file(db.engine, path, raw_dir=tmp_path / "raw")
    assert _content_digests(db) == expected
    monkeypatch.undo()
    alexnet = KINETO_DIR / "a100_alexnet_small.json.gz"
    ingest_file(db.engine, alexnet, raw_dir=tmp_path / "raw", decoder="reference")
    assert _content_digests(db)[-1] == pipeline.gzip_content_sha256(alexnet)
