"""Ingest one trace file: detect → parse → attribute → load, in one transaction.

A failure at any step leaves the database exactly as it was; the raw file is kept
(content-addressed by sha256) only once its run is committed, so it can be re-ingested
when the classification improves.  The same trace twice gives the existing run: the same
file, or the same content in another container (recompressed, or .json vs .json.gz).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from isal import isal_zlib
from sqlalchemy import Engine, or_, select

from tracehouse.core.errors import BadInput, BadTrace, DatabaseError, TooLarge
from tracehouse.core.frames import ParsedTrace, storable_text
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, INFLATED_CEILING, default_inflated_limit
from tracehouse.core.meta import RunMeta, load_manifest
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest import kineto_windows, nsys_windows
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.counter_ranges import store_counters
from tracehouse.ingest.kineto import GZIP_ERRORS, Decoder, parse_kineto
from tracehouse.ingest.kineto_memory import insert_memory, memory_rows
from tracehouse.ingest.kineto_sync import insert_sync, sync_rows
from tracehouse.ingest.load import insert_kernels, insert_run, insert_trace
from tracehouse.ingest.nsys import parse_nsys
from tracehouse.ingest.window_load import BIG_TRACE_TYPES, BigTrace, store_windowed
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Trace

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


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


_INFLATE_CHUNK = 1 << 18


def gzip_content_sha256(path: Path, max_inflated_bytes: int = INFLATED_CEILING) -> str:
    """sha256 of a gzip file's decompressed bytes, inflated a bounded piece at a time so the
    trace is never held in memory and a bomb stops at ``max_inflated_bytes``; every member of a
    multi-member file counts, as gunzip has it."""
    digest, total, inflater = hashlib.sha256(), 0, None
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_INFLATE_CHUNK):
                while chunk:
                    inflater = inflater or isal_zlib.decompressobj(wbits=31)
                    piece = inflater.decompress(chunk, _INFLATE_CHUNK)
                    total += len(piece)
                    if total > max_inflated_bytes:
                        raise TooLarge(f"{path.name} inflates past the {max_inflated_bytes}-byte limit")
                    digest.update(piece)
                    chunk = inflater.unconsumed_tail
                    if inflater.eof:  # the next member, if any, starts in what was left over
                        chunk, inflater = inflater.unused_data, None
        if inflater is not None and not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
    except GZIP_ERRORS as exc:
        raise BadTrace(f"{path.name}: truncated or corrupt gzip ({exc})") from None
    return digest.hexdigest()


class _Beside(threading.Thread):
    """A content digest computed on a second thread while the trace is parsed: inflate and
    sha256 release the GIL, so a gzip trace's digest costs little wall time."""

    def __init__(self, path: Path, max_inflated_bytes: int) -> None:
        super().__init__(name="tracehouse-digest", daemon=True)
        self.path, self.cap = path, max_inflated_bytes
        self.digest = ""
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.digest = gzip_content_sha256(self.path, self.cap)
        except BaseException as exc:  # noqa: BLE001  handed to the caller by result(), which raises it
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        return self.digest


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def raw_location(raw_dir: Path, sha256: str, path: Path) -> Path:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".json.gz") else path.suffix
    return raw_dir / sha256[:2] / f"{sha256}{suffix}"


def existing_run(engine: Engine, sha256: str) -> IngestResult | None:
    """The run a trace with this digest (of its file, or of its decompressed content) was
    already ingested into, if any."""
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
    window_kernels: int | None = None,
) -> IngestResult:
    """Ingest ``path``; metadata from its manifest (if any) overridden by ``meta``.
    ``max_inflated_bytes`` caps what a gzip trace may inflate to (default: from ``max_bytes``);
    ``name_rules``: the kernel-name rules in effect (a lab's own first, ``user_rules.py``);
    ``decoder``: which Kineto decoder reads the events (``kineto.Decoder``; tests compare them);
    ``window_kernels``: attribute a Kineto trace this many kernels at a time, whatever its size
    (by default only a big one is, ``WINDOWED_FROM_BYTES``; tests compare the two)."""
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
    with kineto_windows.scratch() as folder:
        return _parsed_and_stored(
            engine,
            path,
            fmt,
            Stored(sha256, size, raw_location(raw_dir, sha256, path), original_name or path.name),
            load_manifest(path).merged(meta or RunMeta()),
            Options(inflate_cap, name_rules, decoder, window_kernels, Path(folder)),
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """The file as the trace row records it."""

    sha256: str
    size: int
    target: Path  # where its raw bytes are kept
    original_name: str


@dataclass(frozen=True, slots=True)
class Options:
    inflate_cap: int
    name_rules: Sequence[NameRule]
    decoder: Decoder
    window_kernels: int | None
    scratch: Path


def _parsed_and_stored(
    engine: Engine, path: Path, fmt: str, file: Stored, run_meta: RunMeta, opt: Options
) -> IngestResult:
    content = _Beside(path, opt.inflate_cap) if is_gzip(path) else None
    try:
        parsed = _windowed(path, fmt, opt) or parse_trace(path, fmt, opt.inflate_cap, opt.decoder)
    except BaseException:
        if content is not None:
            content.join()  # it stops at the same cap; the parse's error is the one to report
        raise
    content_sha256 = content.result() if content is not None else file.sha256
    if content_sha256 != file.sha256:  # the same trace in another container?
        existing = existing_run(engine, content_sha256)
        if existing is not None:
            return existing
    # The profiler's [memory] events: read before the transaction (a second pass over the file,
    # only where the header says they were recorded).  A windowed (big) trace keeps no ranges
    # to attribute them by, and no launch frame for its waits: it is stored without either.
    memory = None
    if fmt == "kineto" and not isinstance(parsed, BIG_TRACE_TYPES):
        memory = memory_rows(path, parsed.ranges, opt.inflate_cap)
    trace_row: dict[str, str | int] = {
        "sha256": file.sha256,
        "size": file.size,
        "original_name": file.original_name,
        "raw_path": str(file.target),
        "content_sha256": content_sha256,
    }
    kept = False
    try:
        with session_scope(engine) as session:
            if isinstance(parsed, BIG_TRACE_TYPES):
                run_id, trace_id, count = store_windowed(session, parsed, run_meta, trace_row, opt.name_rules)
                warnings = parsed.header.warnings
            else:
                kernels = attribute(parsed, opt.name_rules)
                run_id = insert_run(session, parsed, kernels, run_meta)
                trace_id = insert_trace(session, run_id, parsed, **trace_row)  # type: ignore[arg-type]
                insert_kernels(session, run_id, trace_id, kernels)
                if memory is not None:
                    insert_memory(session, run_id, trace_id, memory)
                insert_sync(session, run_id, trace_id, sync_rows(parsed))  # cross-stream waits
                if parsed.counters is not None:  # a CUPTI range profiler trace carries its own
                    store_counters(session, run_id, parsed.counters)
                count, warnings = kernels.height, parsed.warnings
            # Keep the raw bytes before committing: a committed run always has its file.
            kept = keep_raw(path, file.target)
    except BaseException as exc:
        if kept:
            file.target.unlink(missing_ok=True)
        if isinstance(exc, DatabaseError):  # lost a race with an ingest of the same bytes?
            raced = existing_run(engine, content_sha256)
            if raced is not None:
                return raced
        raise
    return IngestResult(run_id=run_id, trace_id=trace_id, created=True, kernel_count=count, warnings=dict(warnings))


# From this size a Kineto file is attributed in windows (``kineto_windows``): below it the
# whole-trace path peaks well under the memory a window costs, and is quicker on few kernels.
WINDOWED_FROM_BYTES = 256 << 20  # plain JSON
WINDOWED_FROM_GZIP_BYTES = 24 << 20  # gzip (Kineto JSON compresses about 15-20x)
# An nsys export from this size is read by window (``nsys_windows``): the whole-export path
# peaks at about 7x the export's size (3.8 GB for 0.5 GB), the windowed one near 0.4 GB.
NSYS_WINDOWED_FROM_BYTES = 64 << 20


def _windowed(path: Path, fmt: str, opt: Options) -> BigTrace | None:
    """The trace spilled (Kineto) or indexed (nsys) for windowed attribution when it is big
    (or ``window_kernels`` asks for it); None for the whole-trace path (small, declined by the
    scanner, no GPU activity, another format, or another decoder asked for)."""
    if fmt == "nsys":
        return _nsys_windowed(path, opt)
    if fmt != "kineto" or opt.decoder != "auto":
        return None
    if opt.window_kernels is None:
        big = WINDOWED_FROM_GZIP_BYTES if is_gzip(path) else WINDOWED_FROM_BYTES
        if path.stat().st_size < big:
            return None
    found = kineto_windows.spilled(path, opt.scratch, opt.inflate_cap)
    if found is not None and opt.window_kernels is not None:
        found.window_kernels = opt.window_kernels
    return found


def _nsys_windowed(path: Path, opt: Options) -> nsys_windows.NsysWindowed | None:
    if opt.window_kernels is None and path.stat().st_size < NSYS_WINDOWED_FROM_BYTES:
        return None
    found = nsys_windows.indexed(path, opt.scratch)
    if found is not None and opt.window_kernels is not None:
        found.window_kernels = opt.window_kernels
    return found


def keep_raw(path: Path, target: Path) -> bool:
    """Copy the raw file into the content-addressed store; True when this call created it."""
    if target.exists() or path.resolve() == target.resolve():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(path, tmp)
    tmp.replace(target)
    return True
