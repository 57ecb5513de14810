"""Ingest one trace file: detect → parse → attribute → load, in one transaction.

A failure at any step leaves the database exactly as it was; the raw file is kept
(content-addressed by sha256) only once its run is committed, so it can be re-ingested
when the classification improves.  The same trace twice gives the existing run: the same
file, or the same content in another container (recompressed, or .json vs .json.gz).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from isal import isal_zlib

from tracehouse.core.errors import BadInput, BadTrace, DatabaseConflict, DatabaseError, TooLarge
from tracehouse.core.frames import ParsedTrace, storable_text
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, INFLATED_CEILING, default_inflated_limit
from tracehouse.core.meta import RunMeta, load_manifest
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest import kineto_windows, nsys_windows
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.jsonchunks import CONTENT_DIGESTS
from tracehouse.ingest.kineto import GZIP_ERRORS, Decoder, parse_kineto
from tracehouse.ingest.kineto_memory import memory_rows
from tracehouse.ingest.kineto_sync import sync_rows
from tracehouse.ingest.nsys import parse_nsys
from tracehouse.ingest.window_load import store_windowed
from tracehouse.ingest.writer import Writer, as_writer

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Engine

    from tracehouse.ingest.window_load import BigTrace

log = logging.getLogger(__name__)

# A trace stored by windows (``window_load.store_windowed``) rather than attributed whole.
BIG_TRACE_TYPES = (kineto_windows.Windowed, nsys_windows.NsysWindowed)

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


def _content_sha256(path: Path, key: tuple[int, ...] | None, max_inflated_bytes: int) -> str | None:
    """A gzip trace's content digest: the one its parse's inflate took (``CONTENT_DIGESTS``),
    else computed here (a trace the scanner declined is read another way); None for a plain file."""
    if key is None:
        return None
    return CONTENT_DIGESTS.take(key) or gzip_content_sha256(path, max_inflated_bytes)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def raw_location(raw_dir: Path, sha256: str, path: Path) -> Path:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".json.gz") else path.suffix
    return raw_dir / sha256[:2] / f"{sha256}{suffix}"


def existing_run(target: Engine | Writer, sha256: str) -> IngestResult | None:
    """The run a trace with this digest (of its file, or of its decompressed content) was
    already ingested into, if any (a trace outside any run is nothing to point the caller at)."""
    found = as_writer(target).existing(sha256)
    return None if found is None else IngestResult(run_id=found[0], trace_id=found[1], created=False)


def ingest_file(
    target: Engine | Writer,
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
    """Ingest ``path`` through ``target`` (an engine: SQLAlchemy's writer; or a ``Writer``);
    metadata from its manifest (if any) overridden by ``meta``.
    ``max_inflated_bytes`` caps what a gzip trace may inflate to (default: from ``max_bytes``);
    ``name_rules``: the kernel-name rules in effect (a lab's own first, ``user_rules.py``);
    ``decoder``: which Kineto decoder reads the events (``kineto.Decoder``; tests compare them);
    ``window_kernels``: attribute a Kineto trace this many kernels at a time, whatever its size
    (by default only a big one is, ``WINDOWED_FROM_BYTES``; tests compare the two)."""
    path = Path(path)
    writer = as_writer(target)
    if not path.is_file():
        raise BadTrace(f"{path}: no such file")
    sha256, size = file_sha256(path)
    limit = max_bytes or DEFAULT_MAX_TRACE_BYTES
    if size > limit:
        raise TooLarge(f"{path.name}: {size} bytes exceeds the {limit}-byte limit")
    existing = existing_run(writer, sha256)  # the same file again: no parse
    if existing is not None:
        return existing

    fmt = detect_format(path)
    if fmt not in PARSERS:  # ncu CSVs: several files make one run, see ingest.units
        raise BadInput(f"{path.name}: Nsight Compute CSV; ingest it with ingest.units.ingest_unit")
    inflate_cap = max_inflated_bytes or default_inflated_limit(limit)
    with kineto_windows.scratch() as folder:
        return _parsed_and_stored(
            writer,
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
    writer: Writer, path: Path, fmt: str, file: Stored, run_meta: RunMeta, opt: Options
) -> IngestResult:
    digest_key = CONTENT_DIGESTS.want(path) if is_gzip(path) else None
    try:
        parsed = _windowed(path, fmt, opt) or parse_trace(path, fmt, opt.inflate_cap, opt.decoder)
    except BaseException:
        if digest_key is not None:
            CONTENT_DIGESTS.take(digest_key)
        raise
    content_sha256 = _content_sha256(path, digest_key, opt.inflate_cap) or file.sha256
    if content_sha256 != file.sha256:  # the same trace in another container?
        existing = existing_run(writer, content_sha256)
        if existing is not None:
            return existing
    # The profiler's [memory] events: read before the transaction (a second pass over the file,
    # only where the header says they were recorded); a windowed (big) trace stores them a
    # window at a time (``store_windowed``).
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
    attempt = 1
    while True:
        try:
            return _stored(writer, parsed, path, file, run_meta, opt.name_rules, trace_row, memory)
        except DatabaseConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            attempt += 1
            log.info("ingest of %s rolled back for a concurrent write; writing it again", file.original_name)


# A transaction PostgreSQL rolled back for a concurrent one's sake (``DatabaseConflict``) is
# written again from the parse in hand: two ingests that add the same new kernel names over
# several calls (a windowed trace's windows) can still deadlock, and one of them then goes on.
CONFLICT_ATTEMPTS = 3


def _stored(
    writer: Writer,
    parsed: ParsedTrace | BigTrace,
    path: Path,
    file: Stored,
    run_meta: RunMeta,
    name_rules: Sequence[NameRule],
    trace_row: dict[str, str | int],
    memory: pl.DataFrame | None,
) -> IngestResult:
    """The run's rows in one transaction, the raw file kept before it commits."""
    kept = False
    try:
        with writer.transaction():
            if isinstance(parsed, BIG_TRACE_TYPES):
                run_id, trace_id, count = store_windowed(writer, parsed, run_meta, trace_row, name_rules)
                warnings = parsed.header.warnings
            else:
                kernels = attribute(parsed, name_rules)
                run_id = writer.insert_run(parsed, kernels, run_meta)
                trace_id = writer.insert_trace(run_id, parsed, **trace_row)
                writer.insert_kernels(run_id, trace_id, kernels)
                if memory is not None:
                    writer.insert_memory(run_id, trace_id, memory)
                writer.insert_sync(run_id, trace_id, sync_rows(parsed))  # cross-stream waits
                if parsed.counters is not None:  # a CUPTI range profiler trace carries its own
                    writer.store_counters(run_id, parsed.counters)
                count, warnings = kernels.height, parsed.warnings
            # Keep the raw bytes before committing: a committed run always has its file.
            kept = keep_raw(path, file.target)
    except BaseException as exc:
        if kept:
            file.target.unlink(missing_ok=True)
        if isinstance(exc, DatabaseError):  # lost a race with an ingest of the same bytes?
            raced = existing_run(writer, str(trace_row["content_sha256"]))
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


def big_trace(path: Path, fmt: str, scratch: Path, *, window_kernels: int | None = None) -> BigTrace | None:
    """``path`` spilled or indexed in ``scratch`` for windowed attribution where the ingest
    would read it so (big, or ``window_kernels`` asked for), else None: ``reingest`` reads a
    stored trace as its ingest did, in bounded memory."""
    inflate_cap = default_inflated_limit(DEFAULT_MAX_TRACE_BYTES)
    return _windowed(path, fmt, Options(inflate_cap, NAME_RULES, "auto", window_kernels, scratch))


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
