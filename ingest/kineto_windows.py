"""A big Kineto trace attributed in bounded memory: pieces spilled to disk, kernels in windows.

Kineto writes every host range (cpu ops, annotations, Python frames) of a profile first and
the launches and kernels after them, so no piece of the file can be attributed on its own.
The scan (``kineto_stream.scan_pieces``) hands each piece's frames to :class:`Spill`, which
writes them to Arrow IPC files in a scratch folder with what selecting them needs (each
part's time or correlation span), and keeps only small things: every kernel's start (8 bytes
a kernel), the names that occur as cpu ops, per-device kernel time and warning counts.

:meth:`Windowed.windows` then cuts the kernels, in start order, into windows of about
``WINDOW_KERNELS``; for each it reads the parts whose spans reach the window (file order),
keeps the launches of the window's kernels and the ranges around those launches, and runs
the same ``attribute`` as a whole trace.  The rows are the whole trace's: a window holds every
kernel of its start range (``seq`` is offset by the kernels before), every launch of those
kernels, and every range enclosing one of those launches.  Three things are whole-trace facts
and are carried across windows: a name is an op's when it occurs as a cpu op anywhere; an
op's FLOPs and bytes are counted on its first kernel only (``op_instance``, kept by range);
and a cross-stream wait gates the first launch after it on its thread, whichever window that
launch is in (the wait calls are kept aside as the pieces are spilled, 32 bytes each, and
:meth:`Windowed.sync_rows` gives ``kineto_sync.sync_rows``' rows once the windows are read).
Nesting depths are computed within the window: equal to the whole trace's when ranges on a
thread nest (RecordFunction scopes do); a range that partly overlaps another one which ended
before the window could shift a depth.  The profiler's memory events are attributed the same
way, a window at a time in time order, by the ranges that reach the window's time span
(:meth:`Windowed.memory_windows`).  tests/test_kineto_stream.py compares the rows with the
whole-trace ingest on every shared trace, cut into windows of a few hundred kernels.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import polars as pl

from tracehouse.core import rules
from tracehouse.core.frames import GPU_EVENT_SCHEMA, LAUNCH_SCHEMA, RANGE_SCHEMA, ParsedTrace, conform, storable_text
from tracehouse.core.limits import INFLATED_CEILING
from tracehouse.ingest import kineto, kineto_events, kineto_memory, kineto_stream
from tracehouse.ingest.attribution import attribute
from tracehouse.ingest.jsonchunks import Unsplittable
from tracehouse.ingest.kineto_memory_spill import spill_memory
from tracehouse.ingest.kineto_sync import WAIT_CALLS, WaitGates

WINDOW_KERNELS = 50_000  # kernels attributed at a time: ~150 MB of attribution's frames
WINDOW_MEMORY_EVENTS = 100_000  # memory events attributed at a time, at most
RANGE_PARTS_PER_WINDOW = 64  # and those of a stretch of time where at most this many range parts start
_KINDS = ("gpu", "launch", "range")


@dataclass(slots=True)
class _Part:
    """One piece's rows of one frame on disk; ``lo``..``hi`` (inclusive) bound its kernel starts
    (gpu), correlation ids (launch) or its ranges' extent, start to end (range)."""

    path: Path
    lo: int
    hi: int


@dataclass
class Spill:
    """The pieces' frames, written as they come: ``add`` runs on the scan's framing threads,
    two pieces at a time, and returns the piece's parts (``place`` puts them in file order)."""

    folder: Path
    parts: dict[str, list[_Part]] = field(default_factory=lambda: {k: [] for k in _KINDS})
    starts: list[pl.Series] = field(default_factory=list)  # every kernel's ts, for the windows
    op_names: set[str] = field(default_factory=set)
    # The wait calls of each launch part (correlation, tid, ts): the sync edges' sources.
    waits: list[tuple[_Part, pl.DataFrame]] = field(default_factory=list)
    device_ns: dict[int | None, int] = field(default_factory=dict)
    missing_duration: int = 0
    nul_in_text: int = 0
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, frames: dict[str, pl.DataFrame]) -> dict[str, _Part]:
        parts = {}
        for kind in _KINDS:
            frame = self._valid(frames[kind])
            if kind == "launch":
                frame = frame.filter(pl.col("correlation").is_not_null())
            if frame.is_empty():
                continue
            path = self.folder / f"{kind}{next(self._numbers):06d}.arrow"
            frame.write_ipc(path)
            parts[kind] = _Part(path, *self._span(kind, frame))
            if kind == "launch":
                self._keep_waits(frame, parts[kind])
        return parts

    def place(self, pieces: list[dict[str, _Part]]) -> None:
        for piece in pieces:
            for kind, part in piece.items():
                self.parts[kind].append(part)

    def _keep_waits(self, launches: pl.DataFrame, part: _Part) -> None:
        """The piece's cross-stream wait calls that are the first record of their correlation id
        within the piece, as ``kineto._launches`` keeps them (:meth:`first_waits` drops those
        an earlier piece's record came before)."""
        firsts = launches.unique("correlation", keep="first", maintain_order=True)
        waits = firsts.filter(pl.col("name").cast(pl.String).is_in(WAIT_CALLS))
        if waits.height:
            with self._lock:
                self.waits.append((part, waits.select("correlation", "pid", "tid", "ts")))

    def first_waits(self) -> pl.DataFrame:
        """Every kept wait call (``correlation, pid, tid, ts``) that is its id's first record in
        the file.  Ids repeat across pieces only where launch parts' id spans overlap, so the
        parts are read (their ids only) just when some do."""
        if not self.waits:
            return pl.DataFrame(schema={"correlation": pl.Int64, "pid": pl.Int64, "tid": pl.Int64, "ts": pl.Int64})
        launch_parts = self.parts["launch"]
        spans = sorted((part.lo, part.hi) for part in launch_parts)
        if all(hi < lo for (_, hi), (lo, _) in itertools.pairwise(spans)):
            return pl.concat([waits for _, waits in self.waits])
        ids = pl.concat([waits["correlation"] for _, waits in self.waits]).unique()
        first_part: dict[int, int] = {}  # id -> the first part (file order) holding a record of it
        for number, part in enumerate(launch_parts):
            held = pl.read_ipc(part.path.read_bytes(), columns=["correlation"])["correlation"]
            for found in held.filter(held.is_in(ids.implode())).unique().to_list():
                first_part.setdefault(found, number)
        number_of = {id(part): number for number, part in enumerate(launch_parts)}
        return pl.concat(
            [
                waits.filter(pl.col("correlation").replace_strict(first_part, default=-1) == number_of[id(part)])
                for part, waits in self.waits
            ]
        )

    def _valid(self, frame: pl.DataFrame) -> pl.DataFrame:
        """What ``kineto._timed`` keeps (the duration in ns now; the base is added when read),
        with NULs replaced as ``storable_text`` does; both counted once, here."""
        frame = frame.with_columns(dur_ns=(pl.col("dur") * 1000).round(0).cast(pl.Int64, strict=False)).drop("dur")
        valid = frame.filter(pl.col("dur_ns").is_not_null() & (pl.col("dur_ns") >= 0) & pl.col("ts").is_not_null())
        with self._lock:
            self.missing_duration += frame.height - valid.height
        for name, dtype in valid.schema.items():
            if dtype != pl.Categorical:
                continue
            if not valid[name].unique().cast(pl.String).str.contains("\x00", literal=True).any():
                continue  # the usual case, seen from the piece's distinct texts
            text = valid[name].cast(pl.String)
            hits = int(text.str.contains("\x00", literal=True).sum() or 0)
            if hits:
                with self._lock:
                    self.nul_in_text += hits
                valid = valid.with_columns(text.str.replace_all("\x00", "\ufffd", literal=True).cast(pl.Categorical))
        return valid

    def _span(self, kind: str, frame: pl.DataFrame) -> tuple[int, int]:
        if kind == "gpu":
            per_device = frame.group_by("device").agg(pl.col("dur_ns").sum()).iter_rows()
            with self._lock:
                self.starts.append(frame["ts"])
                for device, ns in per_device:
                    self.device_ns[device] = self.device_ns.get(device, 0) + ns
            return _bounds(frame["ts"])
        if kind == "launch":
            return _bounds(frame["correlation"])
        ops = frame.filter(pl.col("cat") == "cpu_op")["name"].cast(pl.String).unique().drop_nulls()
        with self._lock:
            self.op_names.update(ops.to_list())
        end = frame["ts"] + frame["dur_ns"].clip(lower_bound=1)
        return int(frame["ts"].min()), int(end.max())  # type: ignore[arg-type]


def _empty(kind: str) -> pl.DataFrame:
    """A spilled part's columns, no rows."""
    frame = kineto_stream.empty_frame(kind).drop("dur")
    return frame.with_columns(dur_ns=pl.lit(None, pl.Int64), gid=pl.lit(None, pl.Int64)).clear()


def _bounds(values: pl.Series) -> tuple[int, int]:
    return int(values.min()), int(values.max())  # type: ignore[arg-type]


@dataclass
class Windowed:
    """A spilled trace: its header as a ParsedTrace with empty frames (devices, rank, event
    count, warnings: what the run and trace rows need), and its kernels' rows by window."""

    header: ParsedTrace
    spill: Spill
    base_ns: int
    source: Path  # the trace file: its memory events are read from it again
    max_inflated_bytes: int
    window_kernels: int = WINDOW_KERNELS
    # Each wait and the earliest launch after it in the windows read so far.
    _gates: WaitGates | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def kernel_count(self) -> int:
        return sum(len(s) for s in self.spill.starts)

    def stand_in_kernels(self) -> pl.DataFrame:
        """One row per device with its kernels' summed time: what ``load.insert_run`` reads to
        pick the run's hardware (its totals from these rows are replaced once the windows are in)."""
        devices = self.spill.device_ns
        return pl.DataFrame(
            {"device": list(devices), "dur_ns": list(devices.values())},
            schema={"device": pl.Int64, "dur_ns": pl.Int64},
        ).with_columns(start_ns=pl.lit(0, pl.Int64), operator=pl.lit("other"), graph=pl.lit(False))

    def windows(self, name_rules: Sequence[rules.NameRule] = rules.NAME_RULES) -> Iterator[pl.DataFrame]:
        """Kernel rows (``attribution.KERNEL_ROW_COLUMNS``), window by window in ``seq`` order."""
        op_names = pl.Series(sorted(self.spill.op_names), dtype=pl.String)
        # Ops that had a kernel in an earlier window: their cost is on that first kernel, or
        # on none when it was not one the op decided (attribution's rule, kept as it is).
        seen: set[int] = set()
        seq = 0
        # Local: a retried ingest's second run of this generator must not share the first's.
        gates = self._gates = self._waits()
        for lo, hi in self._bounds():
            trace = self._window(lo, hi)
            gates.see(trace)
            rows = attribute(trace, name_rules, op_names=op_names, with_instance=True)
            instance = trace.ranges["gid"].gather(rows["op_instance"])
            has_cost = rows["op_flops"].is_not_null()
            before = instance.is_in(pl.Series(sorted(seen), dtype=pl.Int64).implode()).fill_null(False) & has_cost
            seen.update(instance.drop_nulls().unique().to_list())
            yield rows.with_columns(
                seq=pl.col("seq") + seq,
                op_flops=pl.when(pl.Series(before)).then(0).otherwise(pl.col("op_flops")),
                op_bytes=pl.when(pl.Series(before)).then(0).otherwise(pl.col("op_bytes")),
            ).drop("op_instance")
            seq += rows.height

    def sync_rows(self) -> pl.DataFrame:
        """``kineto_sync.sync_rows`` of the whole trace, once :meth:`windows` has run through
        (``kineto_sync.WaitGates``)."""
        if self._gates is None:
            raise RuntimeError("sync_rows() before windows() has run")
        return self._gates.rows()

    def _waits(self) -> WaitGates:
        waits = self.spill.first_waits().select("pid", "tid", "correlation", call_ns=pl.col("ts") + self.base_ns)
        return WaitGates.of(waits)

    def memory_windows(self) -> Iterator[pl.DataFrame]:
        """``kineto_memory.memory_rows`` of the whole trace, a window at a time: its memory
        events, read again from the file into the spill folder (``kineto_memory_spill``: held
        are only their times and file order, 16 bytes each), attributed by the spilled ranges
        that reach each window's time span (every range enclosing one of its events).  Each
        window's rows are for the caller to insert before the next is made."""
        spilled = spill_memory(self.source, self.max_inflated_bytes, self.spill.folder / "memory")
        try:
            for start, end in self._memory_windows(spilled.times):
                window = spilled.ranked(start, end)
                yield kineto_memory.attributed(window, self._ranges_around(window["ts_ns"]))
        finally:
            spilled.remove()

    def _memory_windows(self, times: pl.Series) -> Iterator[tuple[int, int]]:
        """Ranks (start, end) into ``times`` (the events' times relative to the base, in time
        order), cut where every ``RANGE_PARTS_PER_WINDOW``-th range part starts, and into at
        most ``WINDOW_MEMORY_EVENTS``: however few the events, a window reaches the parts of a
        bounded stretch of time (and those of the ranges around it)."""
        starts = sorted(part.lo for part in self.spill.parts["range"])
        edges = pl.Series(starts[RANGE_PARTS_PER_WINDOW::RANGE_PARTS_PER_WINDOW], dtype=pl.Int64)
        cuts = times.search_sorted(edges, side="left").to_list()  # the events before each edge
        for start, end in itertools.pairwise([0, *cuts, times.len()]):
            for offset in range(start, end, WINDOW_MEMORY_EVENTS):
                yield offset, min(offset + WINDOW_MEMORY_EVENTS, end)

    def _ranges_around(self, times_ns: pl.Series) -> pl.DataFrame:
        """The host ranges that reach ``times_ns``' span, timed as the parse's are."""
        lo, hi = (bound - self.base_ns for bound in _bounds(times_ns))
        ranges = self._ranges_reaching(lo, hi)
        return conform(ranges.with_columns(start_ns=pl.col("ts") + self.base_ns), RANGE_SCHEMA)

    def _ranges_reaching(self, lo: int, hi: int) -> pl.DataFrame:
        """The spilled ranges (``ts`` relative to the base, ``gid``) that reach ``lo``..``hi``:
        every range enclosing a time in it (a zero-length range counts as 1 ns)."""
        ranges = self._read("range", lo, hi)
        return ranges.filter(pl.col("ts") <= hi, pl.col("ts") + pl.col("dur_ns").clip(lower_bound=1) > lo)

    def _bounds(self) -> list[tuple[int | None, int | None]]:
        """Start ranges ``[lo, hi)`` of about ``window_kernels`` kernels each (kernels that
        start together stay together)."""
        starts = pl.concat(self.spill.starts).sort() if self.spill.starts else pl.Series([], dtype=pl.Int64)
        cuts = starts.gather_every(self.window_kernels, offset=self.window_kernels).unique().sort().to_list()
        edges: list[int | None] = [None, *cuts, None]
        return list(itertools.pairwise(edges))

    def _read(self, kind: str, lo: int | None, hi: int | None) -> pl.DataFrame:
        """The rows of the ``kind`` parts whose spans reach ``lo``..``hi``, in file order, with
        ``gid`` (part and row: a range's identity across windows)."""
        frames = []
        for number, part in enumerate(self.spill.parts[kind]):
            if (lo is None or part.hi >= lo) and (hi is None or part.lo <= hi):
                frame = pl.read_ipc(part.path.read_bytes())  # not mapped: its pages would count as ours
                frames.append(frame.with_row_index("gid").with_columns(pl.col("gid").cast(pl.Int64) + (number << 32)))
        if not frames:
            return _empty(kind)
        return kineto_stream.expanded(pl.concat(frames))

    def _window(self, lo: int | None, hi: int | None) -> ParsedTrace:
        start = pl.col("ts")
        gpu = self._read("gpu", lo, None if hi is None else hi - 1)
        gpu = gpu.filter(
            pl.lit(True) if lo is None else start >= lo,
            pl.lit(True) if hi is None else start < hi,
        )
        ids = gpu["correlation"].drop_nulls().unique()
        launches, ranges = _empty("launch"), _empty("range")
        if len(ids):
            launches = self._read("launch", *_bounds(ids)).filter(pl.col("correlation").is_in(ids.implode()))
            # A runtime and a driver record can share an id: the first, as kineto._launches keeps.
            launches = launches.unique("correlation", keep="first", maintain_order=True)
        if launches.height:
            ranges = self._ranges_reaching(*_bounds(launches["ts"]))
        timed = pl.col("ts") + self.base_ns
        return ParsedTrace(
            format="kineto",
            gpu_events=conform(gpu.with_columns(start_ns=timed), GPU_EVENT_SCHEMA),
            launches=conform(launches.with_columns(start_ns=timed), LAUNCH_SCHEMA),
            ranges=conform(ranges.with_columns(start_ns=timed), {**RANGE_SCHEMA, "gid": pl.Int64}),
            devices=self.header.devices,
        )


def spilled(
    path: Path, folder: Path, max_inflated_bytes: int = INFLATED_CEILING, piece_bytes: int | None = None
) -> Windowed | None:
    """``path`` scanned into ``folder``; None where the scanner declines it or is not built,
    or the trace has no GPU activity (CPU-only and counter traces take the whole-trace path)."""
    spill = Spill(folder)
    try:
        found = kineto_stream.scan_pieces(path, spill.add, max_inflated_bytes, piece_bytes)
        if found is None or not spill.starts:
            return None
        spill.place(found[0])
        header = kineto_events.decode_document(found[2])
    except (kineto_stream.Declined, Unsplittable, zlib.error):
        return None  # as kineto._decode_native: the reference path decides
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    warnings = {"missing_or_negative_duration": spill.missing_duration} if spill.missing_duration else {}
    parsed = ParsedTrace(
        format="kineto",
        gpu_events=conform(pl.DataFrame(), GPU_EVENT_SCHEMA),
        launches=conform(pl.DataFrame(), LAUNCH_SCHEMA),
        ranges=conform(pl.DataFrame(), RANGE_SCHEMA),
        devices=kineto.device_infos(header.deviceProperties or []),
        event_count=found[1],
        warnings=warnings,
    )
    if header.distributedInfo is not None:
        parsed.rank, parsed.world_size = header.distributedInfo.rank, header.distributedInfo.world_size
    parsed = storable_text(parsed)  # the devices' names; the frames' NULs were counted per piece
    if spill.nul_in_text:
        parsed.warnings["nul_in_text"] = parsed.warnings.get("nul_in_text", 0) + spill.nul_in_text
    return Windowed(parsed, spill, header.baseTimeNanoseconds or 0, path, max_inflated_bytes)


def scratch(near: Path | None = None) -> tempfile.TemporaryDirectory[str]:
    """A folder for a trace's spilled parts (about a third of its JSON's size)."""
    return tempfile.TemporaryDirectory(prefix="tracehouse-spill-", dir=near)
