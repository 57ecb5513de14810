"""Ingest into a SQLite file already at the schema head with the standard library's ``sqlite3``.

``tracehouse ingest`` spends more time importing SQLAlchemy and declaring the models (~0.3 s)
than parsing and attributing the largest shared trace, so the CLI's SQLite ingest writes
the same rows as ``pipeline.ingest_file`` + ``load.py`` through plain SQL: the same steps
(``pipeline``'s digest, parse and raw store; ``rows.py``'s kernel rows, rollups and batched
inserts), one transaction per trace, the same errors.  Anything else (PostgreSQL, a database
not at head, a URL with options, Nsight Compute CSVs, a trace with CUPTI counters) goes the
SQLAlchemy way.  tests/test_load_sqlite.py compares every table both ways on every shared
trace.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson
import polars as pl

from tracehouse.core.device_specs import device_row
from tracehouse.core.errors import BadInput, BadTrace, DatabaseError, DatabaseUnavailable, TooLarge, TracehouseError
from tracehouse.core.frames import ParsedTrace
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, default_inflated_limit
from tracehouse.core.meta import RunMeta, load_manifest
from tracehouse.core.model_catalog import family_and_architecture
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest import pipeline
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.digests import Early, _Beside, file_sha256, is_gzip
from tracehouse.ingest.pipeline import IngestResult
from tracehouse.ingest.rows import (
    SERVER_DEFAULTS,
    busiest_device,
    chunks,
    int32,
    kernel_rows,
    kernel_totals,
    now,
    rollups,
    sqlite_insert,
    stored_time,
    symbol_digests,
    symbol_frame,
    without_null_columns,
)
from tracehouse.schema.migrate import head_from_files

# sqlite:///relative or sqlite:////absolute, nothing else: a query string (driver options), a
# percent-escape or an in-memory database is left to SQLAlchemy's URL parsing.
_PLAIN_SQLITE_URL = re.compile(r"sqlite:///([^?#%]+)")


def open_at_head(url: str) -> sqlite3.Connection | None:
    """A connection to the SQLite file ``url`` names, configured as ``schema.db.make_engine``'s,
    when it is a plain file URL of an existing database at the schema head; else None (the
    caller goes the SQLAlchemy way, which reports or fixes whatever is off)."""
    match = _PLAIN_SQLITE_URL.fullmatch(url)
    if match is None or match[1] == ":memory:" or not Path(match[1]).is_file():
        return None
    head = head_from_files()
    if head is None:
        return None
    conn = None
    try:
        # isolation_level None: no implicit transactions, each trace's is begun and ended here.
        conn = sqlite3.connect(match[1], isolation_level=None)
        # As schema.db._sqlite_pragmas: foreign keys on, WAL (readers during an ingest).
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}").fetchall()
        stored = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.Error:
        stored = []
    if stored != [head]:
        if conn is not None:
            conn.close()
        return None
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Commit on success, roll back on any error; database errors become the messages
    ``schema.db.session_scope`` gives (no file or value named)."""
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except TracehouseError:
        conn.rollback()
        raise
    except sqlite3.OperationalError as exc:
        conn.rollback()
        raise DatabaseUnavailable("database unavailable") from exc
    except sqlite3.Error as exc:
        conn.rollback()
        raise DatabaseError(f"database error: {exc.__class__.__name__}") from exc
    except BaseException:
        conn.rollback()
        raise


def existing_run(conn: sqlite3.Connection, sha256: str) -> IngestResult | None:
    """As ``pipeline.existing_run``."""
    with transaction(conn):
        row = conn.execute(
            "SELECT run_id, id FROM trace WHERE sha256 = ? OR content_sha256 = ? LIMIT 1", (sha256, sha256)
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return IngestResult(run_id=row[0], trace_id=row[1], created=False)


def _insert(conn: sqlite3.Connection, table: str, row: Mapping[str, object], conflict: str | None = None) -> int:
    columns = ", ".join(f'"{c}"' for c in row)
    tail = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
    cur = conn.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))}){tail}", list(row.values())
    )
    return int(cur.lastrowid or 0)


def hardware_id(conn: sqlite3.Connection, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    row = device_row(busiest_device(parsed, kernels), meta.hardware, parsed.cpu_only)
    _insert(conn, "hardware", row, "name")
    found = conn.execute("SELECT id FROM hardware WHERE name = ?", (row["name"],)).fetchone()
    if found is None:
        raise DatabaseError(f"hardware {row['name']!r} vanished while its run was being written")
    return int(found[0])


def model_id(conn: sqlite3.Connection, meta: RunMeta) -> int | None:
    if not meta.model:
        return None
    family, architecture = family_and_architecture(meta.model)
    row = {
        "name": meta.model,
        "family": meta.family or family,
        "architecture": meta.architecture or architecture,
        "param_count": meta.param_count,
    }
    _insert(conn, "model", row, "name")
    keys = ("family", "architecture", "param_count")
    found = conn.execute(f"SELECT id, {', '.join(keys)} FROM model WHERE name = ?", (meta.model,)).fetchone()
    if found is None:
        raise DatabaseError(f"model {meta.model!r} vanished while its run was being written")
    # A later run may know more (a collector computes param counts); fill gaps, never overwrite.
    for key, stored in zip(keys, found[1:], strict=True):
        if stored is None and row[key] is not None:
            conn.execute(f"UPDATE model SET {key} = ? WHERE id = ?", (row[key], found[0]))
    return int(found[0])


def symbol_ids(conn: sqlite3.Connection, names: pl.Series) -> pl.DataFrame:
    """As ``load.symbol_ids``: ``text → symbol id``, the new names inserted."""
    digests = symbol_digests(names)

    def look_up(keys: list[str]) -> None:
        for chunk in chunks(keys):
            marks = ", ".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT digest, id FROM symbol WHERE digest IN ({marks})", chunk).fetchall())

    found: dict[str, int] = {}
    look_up(list(digests))
    missing = [d for d in digests if d not in found]
    if missing:
        conn.executemany(
            "INSERT INTO symbol (digest, text) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
            [(d, digests[d]) for d in missing],
        )
        look_up(missing)
    return symbol_frame(digests, found)


def insert_run(conn: sqlite3.Connection, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
    row: dict[str, object] = {
        "model_id": model_id(conn, meta),
        "hardware_id": hardware_id(conn, parsed, kernels, meta),
        **{k: getattr(meta, k) for k in _RUN_META},
        "rank": int32(parsed.rank),
        "world_size": int32(parsed.world_size),
        "device_kind": "cpu" if parsed.cpu_only else "gpu",
        **kernel_totals(kernels),
        "created_at": stored_time(now()),
    }
    run_id = _insert(conn, "run", row)
    if meta.tags:
        conn.executemany(
            "INSERT INTO run_tag (run_id, key, value) VALUES (?, ?, ?)", [(run_id, k, v) for k, v in meta.tags.items()]
        )
    return run_id


_RUN_META = (
    "attention_backend",
    "scale",
    "batch",
    "dtype",
    "image_size",
    "frames",
    "denoising_steps",
    "decode_tokens",
    "text_length",
    "param_count",
    "peak_memory_bytes",
    "host",
    "experiment",
    "git_commit",
    "version",
)


def insert_trace(conn: sqlite3.Connection, run_id: int, parsed: ParsedTrace, **fields: object) -> int:
    """``fields``: sha256, size_bytes, content_sha256, original_name, raw_path (as ``load.insert_trace``)."""
    row = {
        "run_id": run_id,
        "format": parsed.format,
        **fields,
        "event_count": parsed.event_count,
        "status": "ingested",
        "warning_count": sum(parsed.warnings.values()),
        "warnings": orjson.dumps(parsed.warnings).decode() if parsed.warnings else None,
        "ingested_at": stored_time(now()),
    }
    return _insert(conn, "trace", row)


def bulk_insert(conn: sqlite3.Connection, table: str, rows: pl.DataFrame) -> None:
    if rows.is_empty():
        return
    sqlite_insert(conn, table, without_null_columns(rows, set(rows.columns), SERVER_DEFAULTS[table]))


def insert_kernels(conn: sqlite3.Connection, run_id: int, trace_id: int, kernels: pl.DataFrame) -> None:
    rows = kernel_rows(kernels, run_id, trace_id, lambda names: symbol_ids(conn, names))
    bulk_insert(conn, "kernel", rows)
    by_op, by_name = rollups(run_id, rows)
    bulk_insert(conn, "operator_rollup", by_op)
    bulk_insert(conn, "kernel_rollup", by_name)


def ingest_file(
    conn: sqlite3.Connection,
    path: Path,
    meta: RunMeta | None = None,
    *,
    raw_dir: Path,
    name_rules: Sequence[NameRule] = NAME_RULES,
    early: Early | None = None,
) -> IngestResult:
    """``pipeline.ingest_file`` (default limits, original name = the file's) into ``conn``;
    ``early``: the file's digests, if a thread computed them already (``digests.Early``).
    A trace that carries CUPTI counters is written by the SQLAlchemy loader instead (it owns
    the counter tables and their linking), in one transaction of its own."""
    path = Path(path)
    if not path.is_file():
        raise BadTrace(f"{path}: no such file")
    known = early.get(path) if early is not None else None
    sha256, size = known[:2] if known is not None else file_sha256(path)
    if size > DEFAULT_MAX_TRACE_BYTES:
        raise TooLarge(f"{path.name}: {size} bytes exceeds the {DEFAULT_MAX_TRACE_BYTES}-byte limit")
    existing = existing_run(conn, sha256)
    if existing is not None:
        return existing
    fmt = pipeline.detect_format(path)
    if fmt not in pipeline.PARSERS:
        raise BadInput(f"{path.name}: Nsight Compute CSV; ingest it with ingest.units.ingest_unit")
    inflate_cap = default_inflated_limit(DEFAULT_MAX_TRACE_BYTES)
    content = _Beside(path, inflate_cap) if known is None and is_gzip(path) else None
    try:
        parsed = pipeline.parse_trace(path, fmt, inflate_cap)
    except BaseException:
        if content is not None:
            content.join()
        raise
    content_sha256 = known[2] if known is not None else content.result() if content is not None else sha256
    if content_sha256 != sha256:
        existing = existing_run(conn, content_sha256)
        if existing is not None:
            return existing
    kernels = attribute(parsed, name_rules)
    run_meta = load_manifest(path).merged(meta or RunMeta())
    target = pipeline.raw_location(raw_dir, sha256, path)
    trace = {
        "sha256": sha256,
        "size_bytes": size,
        "content_sha256": content_sha256,
        "original_name": path.name,
        "raw_path": str(target),
    }
    if parsed.counters is not None:
        return _write_with_counters(conn, path, target, parsed, kernels, run_meta, trace)
    return _write(conn, path, target, parsed, kernels, run_meta, trace)


def _write(
    conn: sqlite3.Connection,
    path: Path,
    target: Path,
    parsed: ParsedTrace,
    kernels: pl.DataFrame,
    run_meta: RunMeta,
    trace: dict[str, object],
) -> IngestResult:
    kept = False
    try:
        with transaction(conn):
            run_id = insert_run(conn, parsed, kernels, run_meta)
            trace_id = insert_trace(conn, run_id, parsed, **trace)
            insert_kernels(conn, run_id, trace_id, kernels)
            # Keep the raw bytes before committing: a committed run always has its file.
            kept = pipeline.keep_raw(path, target)
    except BaseException as exc:
        if kept:
            target.unlink(missing_ok=True)
        if isinstance(exc, DatabaseError):  # lost a race with an ingest of the same bytes?
            raced = existing_run(conn, str(trace["content_sha256"]))
            if raced is not None:
                return raced
        raise
    return IngestResult(
        run_id=run_id, trace_id=trace_id, created=True, kernel_count=kernels.height, warnings=dict(parsed.warnings)
    )


def _write_with_counters(
    conn: sqlite3.Connection,
    path: Path,
    target: Path,
    parsed: ParsedTrace,
    kernels: pl.DataFrame,
    run_meta: RunMeta,
    trace: dict[str, object],
) -> IngestResult:
    """``pipeline.ingest_file``'s write, through SQLAlchemy, for a trace with CUPTI counters."""
    from tracehouse.ingest.counter_ranges import store_counters
    from tracehouse.ingest.load import insert_kernels as orm_insert_kernels
    from tracehouse.ingest.load import insert_run as orm_insert_run
    from tracehouse.ingest.load import insert_trace as orm_insert_trace
    from tracehouse.schema.db import make_engine, session_scope

    database = next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
    engine = make_engine(f"sqlite:///{database}")
    kept = False
    try:
        with session_scope(engine) as session:
            run_id = orm_insert_run(session, parsed, kernels, run_meta)
            trace_id = orm_insert_trace(
                session,
                run_id,
                parsed,
                sha256=str(trace["sha256"]),
                size=int(str(trace["size_bytes"])),
                original_name=str(trace["original_name"]),
                raw_path=str(trace["raw_path"]),
                content_sha256=str(trace["content_sha256"]),
            )
            orm_insert_kernels(session, run_id, trace_id, kernels)
            if parsed.counters is not None:
                store_counters(session, run_id, parsed.counters)
            kept = pipeline.keep_raw(path, target)
    except BaseException as exc:
        if kept:
            target.unlink(missing_ok=True)
        if isinstance(exc, DatabaseError):
            raced = existing_run(conn, str(trace["content_sha256"]))
            if raced is not None:
                return raced
        raise
    finally:
        engine.dispose()
    return IngestResult(
        run_id=run_id, trace_id=trace_id, created=True, kernel_count=kernels.height, warnings=dict(parsed.warnings)
    )
