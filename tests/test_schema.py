"""Migrations are the only way the schema changes: models and the migrated database agree,
and a database that is not at head refuses to be used, naming the command that fixes it."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from tests.conftest import Database
from tracehouse.core.errors import SchemaOutOfDate
from tracehouse.schema.migrate import alembic_config, current_revision, ensure_schema, head_revision, upgrade
from tracehouse.schema.models import Base


def test_models_match_migrated_database(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    assert current_revision(db.engine) == head_revision()


def test_empty_database_is_created_on_first_use(empty_db: Database) -> None:
    ensure_schema(empty_db.engine, empty_db.url)
    assert current_revision(empty_db.engine) == head_revision()


def test_unmigrated_database_refuses_with_upgrade_command(empty_db: Database) -> None:
    with pytest.raises(SchemaOutOfDate, match="tracehouse db upgrade --db"):
        ensure_schema(empty_db.engine, empty_db.url, create_if_empty=False)


def test_database_at_older_revision_refuses_with_upgrade_command(empty_db: Database) -> None:
    upgrade(empty_db.engine, "0001")
    with pytest.raises(SchemaOutOfDate, match=r"0001 is out of date.*tracehouse db upgrade --db"):
        ensure_schema(empty_db.engine, empty_db.url)
    upgrade(empty_db.engine)
    ensure_schema(empty_db.engine, empty_db.url)


def test_database_at_unknown_revision_refuses(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffff'"))
    with pytest.raises(SchemaOutOfDate, match="newer than this tracehouse"):
        ensure_schema(db.engine, db.url)


def test_foreign_tables_are_not_touched(empty_db: Database) -> None:
    with empty_db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id integer)"))
    with pytest.raises(SchemaOutOfDate, match="no tracehouse schema version"):
        ensure_schema(empty_db.engine, empty_db.url)


def test_upgrading_a_filled_store_keeps_every_child_row(empty_db: Database) -> None:
    """SQLite's batch mode rebuilds ``run`` by DROP TABLE; with foreign keys on, that cascades
    and empties every table hanging off it. Rows stored at 0008 must all be there at head."""
    upgrade(empty_db.engine, "0008")
    children = ("run_tag", "operator_rollup", "trace")
    with empty_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run (id, device_kind, kernel_count, total_ns, span_ns, created_at) "
                "VALUES (1, 'gpu', 1, 10, 10, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(text("INSERT INTO run_tag (run_id, key, value) VALUES (1, 'lab', 'a')"))
        conn.execute(
            text("INSERT INTO operator_rollup (run_id, operator, kernel_count, total_ns) VALUES (1, 'conv', 1, 10)")
        )
        conn.execute(
            text(
                "INSERT INTO trace (run_id, format, sha256, size_bytes, event_count, original_name, "
                "raw_path, status, warning_count, ingested_at) VALUES "
                "(1, 'kineto', 'ab', 1, 1, 't.json', 'r', 'ingested', 0, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(empty_db.engine)
    with empty_db.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t} WHERE run_id = 1")).scalar() for t in children}
    assert counts == dict.fromkeys(children, 1)


def test_run_kind_counts_are_backfilled_from_the_kernel_rollup(empty_db: Database) -> None:
    """0015 keeps each run's memcpy / memset counts on the run row; runs stored before it get
    theirs from their kernel rollup rows, and a run without any gets 0.  Down and up again
    keeps every run and its children."""
    upgrade(empty_db.engine, "0014_sync_edges")
    with empty_db.engine.begin() as conn:
        for run_id in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO run (id, device_kind, kernel_count, total_ns, span_ns, created_at) "
                    f"VALUES ({run_id}, 'gpu', 9, 10, 10, CURRENT_TIMESTAMP)"
                )
            )
        conn.execute(text("INSERT INTO symbol (id, digest, text) VALUES (1, 'a', 'k'), (2, 'b', 'c'), (3, 'c', 's')"))
        rollup = [(1, 1, "gemm", "kernel", 4), (1, 2, "memcpy", "memcpy", 3), (1, 3, "memset", "memset", 2)]
        for run_id, name_id, operator, kind, count in [*rollup, (2, 1, "gemm", "kernel", 9)]:
            conn.execute(
                text(
                    "INSERT INTO kernel_rollup (run_id, name_id, operator, kind, kernel_count, total_ns, min_ns, "
                    f"max_ns) VALUES ({run_id}, {name_id}, '{operator}', '{kind}', {count}, 1, 1, 1)"
                )
            )
    upgrade(empty_db.engine)
    counts = "SELECT id, memcpy_count, memset_count FROM run ORDER BY id"
    with empty_db.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(counts))] == [(1, 3, 2), (2, 0, 0)]
    cfg = alembic_config()
    with empty_db.engine.begin() as conn:  # foreign keys on: the downgrade must not rebuild run
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014_sync_edges")
    upgrade(empty_db.engine)
    with empty_db.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(counts))] == [(1, 3, 2), (2, 0, 0)]
        assert conn.execute(text("SELECT count(*) FROM kernel_rollup")).scalar() == 4
