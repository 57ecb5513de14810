"""Ingest one trace file: detect → parse → attribute → load, in one transaction.

A failure at any step leaves the database exactly as it was; the raw file is kept
(content-addressed by sha256) only once its run is committed, so it can be re-ingested
when the classification improves.  The same trace twice gives the existing run: the same
file, or the same content in another container (recompressed, or .json vs .json.gz).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tracehouse.core.errors import BadInput, BadTrace, DatabaseError, TooLarge
from tracehouse.core.frames import ParsedTrace, storable_text
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, INFLATED_CEILING, default_inflated_limit
from tracehouse.core.meta import RunMeta, load_manifest
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.digests import _Beside, file_sha256, is_gzip
from tracehouse.ingest.digests import gzip_content_sha256 as gzip_content_sha256  # callers import it from here
from tracehouse.ingest.kineto import Decoder, parse_kineto
from tracehouse.ingest.nsys import parse_nsys

if TYPE_CHECKING:
    from sqlalchemy import Engine

# SQLAlchemy, the models and the loader are imported where the database is written: the CLI's
# SQLite ingest (ingest/load_sqlite.py) uses this module's steps without them.

SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class IngestResult:
    run_id: int
    trace_id: int
    created: bool  # False when the same trace was already ingested
    kernel_count: int = 0
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def duplicate_of(self) -> int | None:
        """The run that already held this trace (its metadata was kept, not replaced)."""
        return None if self.created else self.run_id


# ncu prints the program's own output before its table, so its header may be well into the file.
NCU_SNIFF_BYTES = 1 << 20
_NCU_MARKS = (b'"ID","Process ID"', b"ID,Process ID", b"==PROF==")


def detect_format(path: Path) -> str:
    """kineto / nsys / ncu, from the content (the name's extension is not trusted)."""
    with path.open("rb") as fh:
        head = fh.read(NCU_SNIFF_BYTES)
    if head.startswith(b"\x1f\x8b"):
        return "kineto"
    if head.startswith(SQLITE_MAGIC):
        return "nsys"
    # Before the JSON check: ncu output starts with whatever the program printed, a dict even.
    if any(mark in head for mark in _NCU_MARKS):
        return "ncu"
    if head.lstrip()[:1] in (b"{", b"["):
        return "kineto"
    raise BadTrace(
        f"{path.name}: unrecognized trace format (expected PyTorch Profiler JSON / .json.gz, "
        "an Nsight Systems SQLite export or Nsight Compute CSV)"
    )


# One parser per timeline format (core.frames.TIMELINE_FORMATS; tests/test_layers.py checks).
PARSERS: dict[str, Callable[[Path], ParsedTrace]] = {"kineto": parse_kineto, "nsys": parse_nsys}


def parse_trace(
    path: Path, fmt: str, max_inflated_bytes: int = INFLATED_CEILING, decoder: Decoder = "auto"
) -> ParsedTrace:
    """The format's parser, then the one normalisation every format needs before storing;
    ``decoder`` picks the Kineto decoder (``kineto.Decoder``)."""
    if fmt == "kineto":
        return storable_text(parse_kineto(path, max_inflated_bytes=max_inflated_bytes, decoder=decoder))
    return storable_text(PARSERS[fmt](path))


def raw_location(raw_dir: Path, sha256: str, path: Path) -> Path:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".json.gz") else path.suffix
    return raw_dir / sha256[:2] / f"{sha256}{suffix}"


def existing_run(engine: Engine, sha256: str) -> IngestResult | None:
    """The run a trace with this digest (of its file, or of its decompressed content) was
    already ingested into, if any."""
    from sqlalchemy import or_, select

    from tracehouse.schema.db import session_scope
    from tracehouse.schema.models import Trace

    with session_scope(engine) as session:
        row = session.execute(
            select(Trace.run_id, Trace.id).where(or_(Trace.sha256 == sha256, Trace.content_sha256 == sha256)).limit(1)
        ).first()
    if row is None or row[0] is None:  # a trace outside any run is nothing to point the caller at
        return None
    return IngestResult(run_id=row[0], trace_id=row[1], created=False)


def ingest_file(
    engine: Engine,
    path: Path,
    meta: RunMeta | None = None,
    *,
    raw_dir: Path,
    original_name: str | None = None,
    max_bytes: int | None = None,
    max_inflated_bytes: int | None = None,
    name_rules: Sequence[NameRule] = NAME_RULES,
    decoder: Decoder = "auto",
) -> IngestResult:
    """Ingest ``path``; metadata from its manifest (if any) overridden by ``meta``.
    ``max_inflated_bytes`` caps what a gzip trace may inflate to (default: from ``max_bytes``);
    ``name_rules``: the kernel-name rules in effect (a lab's own first, ``user_rules.py``);
    ``decoder``: which Kineto decoder reads the events (``kineto.Decoder``; tests compare them)."""
    path = Path(path)
    if not path.is_file():
        raise BadTrace(f"{path}: no such file")
    sha256, size = file_sha256(path)
    limit = max_bytes or DEFAULT_MAX_TRACE_BYTES
    if size > limit:
        raise TooLarge(f"{path.name}: {size} bytes exceeds the {limit}-byte limit")
    existing = existing_run(engine, sha256)  # the same file again: no parse
    if existing is not None:
        return existing

    fmt = detect_format(path)
    if fmt not in PARSERS:  # ncu CSVs: several files make one run, see ingest.units
        raise BadInput(f"{path.name}: Nsight Compute CSV; ingest it with ingest.units.ingest_unit")
    inflate_cap = max_inflated_bytes or default_inflated_limit(limit)
    content = _Beside(path, inflate_cap) if is_gzip(path) else None
    try:
        parsed = parse_trace(path, fmt, inflate_cap, decoder)
    except BaseException:
        if content is not None:
            content.join()  # it stops at the same cap; the parse's error is the one to report
        raise
    content_sha256 = content.result() if content is not None else sha256
    if content_sha256 != sha256:  # the same trace in another container?
        existing = existing_run(engine, content_sha256)
        if existing is not None:
            return existing
    kernels = attribute(parsed, name_rules)
    from tracehouse.ingest.counter_ranges import store_counters
    from tracehouse.ingest.load import insert_kernels, insert_run, insert_trace
    from tracehouse.schema.db import session_scope

    run_meta = load_manifest(path).merged(meta or RunMeta())
    target = raw_location(raw_dir, sha256, path)
    kept = False
    try:
        with session_scope(engine) as session:
            run_id = insert_run(session, parsed, kernels, run_meta)
            trace_id = insert_trace(
                session,
                run_id,
                parsed,
                sha256=sha256,
                size=size,
                original_name=original_name or path.name,
                raw_path=str(target),
                content_sha256=content_sha256,
            )
            insert_kernels(session, run_id, trace_id, kernels)
            if parsed.counters is not None:  # a CUPTI range profiler trace carries its own
                store_counters(session, run_id, parsed.counters)
            # Keep the raw bytes before committing: a committed run always has its file.
            kept = keep_raw(path, target)
    except BaseException as exc:
        if kept:
            target.unlink(missing_ok=True)
        if isinstance(exc, DatabaseError):  # lost a race with an ingest of the same bytes?
            raced = existing_run(engine, content_sha256)
            if raced is not None:
                return raced
        raise
    return IngestResult(
        run_id=run_id, trace_id=trace_id, created=True, kernel_count=kernels.height, warnings=dict(parsed.warnings)
    )


def keep_raw(path: Path, target: Path) -> bool:
    """Copy the raw file into the content-addressed store; True when this call created it."""
    if target.exists() or path.resolve() == target.resolve():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(path, tmp)
    tmp.replace(target)
    return True
