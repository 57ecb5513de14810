"""One engine factory and one session scope, used by the CLI, the service and the tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tracehouse.core.errors import DatabaseConflict, DatabaseError, DatabaseUnavailable, TracehouseError

log = logging.getLogger(__name__)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # The text may hold a password, so it is not repeated.
        raise DatabaseUnavailable(
            "cannot parse the database URL; expected e.g. sqlite:///path/to/file.sqlite3 "
            "or postgresql://user@host:5432/name"
        ) from None


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and map it to the psycopg 3 driver we ship."""
    parsed = _parse(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str | URL) -> str:
    """The URL as it may be shown to a user or written to a log: the password masked."""
    parsed = _parse(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    # Foreign keys are off by default in SQLite; WAL lets readers run during an ingest.
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
            event.listen(engine, "connect", _sqlite_pragmas)
            # A read-only session's query_only pragma outlives its transaction on the pooled
            # connection: the pool turns it off again as the connection comes back, before
            # anyone else can check it out.
            event.listen(engine, "checkin", _sqlite_writable)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except OSError as exc:  # the SQLite file's folder cannot be made
        raise DatabaseUnavailable(
            f"cannot open the database {safe_url(parsed)}: its folder cannot be "
            f"created ({exc.strerror or exc.__class__.__name__})"
        ) from None
    except ArgumentError:  # e.g. sqlite://host/path, which the driver refuses
        raise DatabaseUnavailable(
            f"invalid database URL {safe_url(parsed)}; use sqlite:///relative/path, "
            "sqlite:////absolute/path or postgresql://user@host:5432/name"
        ) from None
    except (NoSuchModuleError, ImportError):
        raise DatabaseUnavailable(
            f"no driver for the database {safe_url(parsed)}; tracehouse speaks sqlite:// and postgresql://"
        ) from None


def unavailable(engine: Engine, exc: BaseException) -> DatabaseUnavailable:
    """The one-line error for a database that cannot be reached: its URL (no password) and the
    driver's first line, which for a local user names what to fix."""
    orig = getattr(exc, "orig", None) or exc
    reason = " ".join(str(orig).split("\n")[0].split()) or orig.__class__.__name__
    shown = engine.url.set(drivername=engine.url.get_backend_name())  # as the user wrote it, no +psycopg
    return DatabaseUnavailable(f"cannot connect to the database {safe_url(shown)}: {reason}")


@contextmanager
def first_connect(engine: Engine) -> Iterator[None]:
    """Wrap the first use of an engine: a database that cannot be reached is one clear line."""
    try:
        yield
    except OperationalError as exc:  # refused, down, unopenable file, bad credentials
        raise unavailable(engine, exc) from None


# SQLSTATEs of a transaction PostgreSQL rolled back for a concurrent one's sake: deadlock_detected,
# serialization_failure.  The database is there; the request may be tried again.
_CONFLICTS = frozenset({"40P01", "40001"})


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """Commit on success, roll back on any error.  Database errors become one message that names
    no host, file or value (a REST client may read it); the driver's text goes to the log.

    ``read_only``: the database itself refuses any write in the session (SQLite's
    ``query_only``, PostgreSQL's ``SET TRANSACTION READ ONLY``), so an analysis that writes
    fails loudly instead of changing what it reads (MLflow's read-only session maker)."""
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    try:
        if read_only:
            _refuse_writes(session)
        yield session
        if read_only:
            session.rollback()  # nothing to keep; ends the read-only transaction
        else:
            session.commit()
    except TracehouseError:
        session.rollback()
        raise
    except SQLAlchemyError as exc:  # OperationalError included
        session.rollback()
        if read_only and _is_refused_write(exc):
            raise _refused_write(exc) from exc
        orig = getattr(exc, "orig", None)
        if getattr(orig, "sqlstate", None) in _CONFLICTS:
            log.info("transaction rolled back by the database (%s): %s", safe_url(engine.url), orig)
            raise DatabaseConflict(
                "database conflict: the database rolled this write back for a concurrent one "
                "(a deadlock or a serialization failure); nothing was written, try again"
            ) from exc
        if isinstance(exc, OperationalError):
            log.info("database unavailable (%s): %s", safe_url(engine.url), exc.orig)
            raise DatabaseUnavailable("database unavailable") from exc
        log.info("database error (%s): %s", safe_url(engine.url), exc)
        raise DatabaseError(f"database error: {exc.__class__.__name__}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _refuse_writes(session: Session) -> None:
    conn = session.connection()  # begins the transaction the setting applies to
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only=ON")  # make_engine's checkin hook turns it off
    else:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")  # the transaction's first statement; ends with it


def _sqlite_writable(dbapi_conn: DBAPIConnection | None, _record: ConnectionPoolEntry) -> None:
    if dbapi_conn is None:  # the connection was invalidated: nothing to reset
        return
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=OFF")
    cur.close()


def _is_refused_write(exc: SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "25006":  # PostgreSQL: read_only_sql_transaction
        return True
    return "readonly database" in str(orig)  # SQLite: SQLITE_READONLY under query_only


def _refused_write(exc: SQLAlchemyError) -> DatabaseError:
    log.info("a read-only session attempted a write: %s", exc)
    return DatabaseError("database error: a read-only query attempted a write")


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())
