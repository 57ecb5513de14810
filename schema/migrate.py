"""Schema versioning: migrations are the only way the schema changes.

An empty database is migrated on first use; a database at an older revision refuses to be
used and names the command that upgrades it (MLflow's ``_verify_schema`` habit).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tracehouse.core.errors import SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, Engine

# SQLAlchemy is imported by the functions that use it: the CLI's SQLite ingest reads the head
# from the files (``head_from_files``) without it.

# Alembic costs ~0.1 s to import, more than a small trace's whole parse: every CLI command
# checks the schema first, so the check for a database already at head uses neither Alembic
# nor its script loader (see ``head_from_files`` and ``_stored_revisions``).  Anything else
# (empty, behind, ahead, branched) goes the Alembic way.
_REVISION = re.compile(r"^(down_)?revision\s*(?::[^=]*)?=\s*(.+?)\s*(?:#.*)?$", re.MULTILINE)
_QUOTED = re.compile(r"""['"]([^'"]+)['"]""")


def migrations_dir() -> Path:
    # Found, not imported: the migrations (a layer above, they import the models) are Alembic's
    # to load; this module only tells Alembic where they are.
    spec = importlib.util.find_spec("tracehouse.migrations")
    assert spec is not None and spec.origin is not None, "tracehouse.migrations is not installed"
    return Path(spec.origin).resolve().parent


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _connect(engine: Engine) -> Connection:
    """The first connection, where a database that cannot be reached becomes one clear error."""
    from tracehouse.schema.db import first_connect

    with first_connect(engine):
        return engine.connect()


def head_from_files() -> str | None:
    """The head revision read from the migration files' ``revision`` / ``down_revision`` lines
    (the one revision no other names as its parent), without importing Alembic; None when the
    files do not name exactly one head that way.  tests/test_migrate_fast.py checks it equals
    Alembic's own head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        for down, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            names = _QUOTED.findall(value)
            if down:
                parents.update(names)
            elif len(names) == 1:
                revisions.add(names[0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stored_revisions(engine: Engine) -> list[str] | None:
    """The revisions in ``alembic_version``, read with a plain query; None when there is no
    such table (or it cannot be read that way): Alembic then looks for itself."""
    from sqlalchemy.exc import DBAPIError

    with _connect(engine) as conn:
        try:
            return [row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
        except DBAPIError:
            return None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with _connect(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config()
    with _connect(engine) as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table as copy, DROP, rename; with foreign keys on, SQLite's
            # DROP TABLE deletes the rows first and ON DELETE CASCADE empties every child table
            # (rebuilding ``run`` would wipe kernels, rollups, tags and traces).  The pragma only
            # takes effect outside a transaction, so it is set before the migration's begins.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()  # ends SQLAlchemy's autobegun transaction; SQLite itself began none
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("a migration left rows whose foreign keys point nowhere")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade_command(url: str) -> str:
    # The message is printed and may be served: the password stays out of it.
    from tracehouse.schema.db import safe_url

    return f"tracehouse db upgrade --db '{safe_url(url)}'"


def ensure_schema(engine: Engine, url_for_message: str, *, create_if_empty: bool = True) -> None:
    """Migrate an empty database; refuse an out-of-date one with the exact command to run."""
    fast_head = head_from_files()
    if fast_head is not None and _stored_revisions(engine) == [fast_head]:
        return  # at head: the common case, checked without Alembic
    from alembic.script import ScriptDirectory

    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None and create_if_empty:
        from tracehouse.schema.db import table_names

        if table_names(engine) - {"alembic_version"}:
            raise SchemaOutOfDate(
                f"database has tables but no tracehouse schema version; is it another "
                f"application's? Run {upgrade_command(url_for_message)} only if it is ours"
            )
        upgrade(engine)
        return
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutOfDate(
            f"database schema {current} is newer than this tracehouse (head {head}); upgrade tracehouse"
        )
    raise SchemaOutOfDate(
        f"database schema {current or '(none)'} is out of date (head {head}); run: {upgrade_command(url_for_message)}"
    )
