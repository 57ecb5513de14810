"""What the paths of one ingest become: directories are expanded, each file's format is told
from its content, timeline traces (Kineto, nsys) are one run each, and the Nsight Compute
CSVs among them are one run together (ncu writes one file per metric pass)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracehouse.core.errors import BadInput, BadTrace, TooLarge
from tracehouse.core.meta import RunMeta
from tracehouse.core.rules import NAME_RULES, NameRule
from tracehouse.ingest.pipeline import IngestResult, detect_format, ingest_file
from tracehouse.ingest.writer import Writer, engine_of

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass(frozen=True, slots=True)
class IngestUnit:
    format: str  # kineto / nsys / ncu
    paths: tuple[Path, ...]

    @property
    def label(self) -> str:
        if len(self.paths) <= 2:
            return ", ".join(str(p) for p in self.paths)
        folders = sorted({str(p.parent) for p in self.paths})
        return f"{', '.join(folders)} ({len(self.paths)} {self.format} files)"


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a directory's files (not recursing, hidden files and manifests skipped)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".manifest.json")
            )
            if not found:
                raise BadTrace(f"{path}: directory has no files to ingest")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BadTrace(f"{path}: no such file or directory")
    return files


def plan_units(paths: list[Path]) -> list[IngestUnit]:
    """One unit per timeline trace, plus one for all the ncu CSVs, in the order given."""
    units: list[IngestUnit] = []
    ncu: list[Path] = []
    for path in expand(paths):
        fmt = detect_format(path)
        if fmt == "ncu":
            ncu.append(path)
        else:
            units.append(IngestUnit(fmt, (path,)))
    if ncu:
        units.append(IngestUnit("ncu", tuple(ncu)))
    return units


def ingest_unit(
    target: Engine | Writer,
    unit: IngestUnit,
    meta: RunMeta | None = None,
    *,
    raw_dir: Path,
    run_id: int | None = None,
    max_bytes: int | None = None,
    original_name: str | None = None,
    max_inflated_bytes: int | None = None,
    name_rules: Sequence[NameRule] = NAME_RULES,
) -> IngestResult:
    """Ingest one unit in one transaction through ``target`` (an engine, or a ``Writer``; ncu
    CSVs always go through SQLAlchemy); ``run_id`` attaches ncu counters to that run;
    ``name_rules``: the kernel-name rules in effect."""
    if unit.format == "ncu":
        from tracehouse.ingest.ncu_load import ingest_ncu  # its imports cost more than a small trace's parse

        for path in unit.paths:
            if max_bytes is not None and path.stat().st_size > max_bytes:
                raise TooLarge(f"{path.name}: {path.stat().st_size} bytes exceeds the {max_bytes}-byte limit")
        return ingest_ncu(engine_of(target), list(unit.paths), meta, raw_dir=raw_dir, run_id=run_id)
    if run_id is not None:
        raise BadInput(
            f"{unit.paths[0].name}: only Nsight Compute counters attach to an existing run; "
            "a timeline trace makes its own run"
        )
    return ingest_file(
        target,
        unit.paths[0],
        meta,
        raw_dir=raw_dir,
        max_bytes=max_bytes,
        original_name=original_name,
        max_inflated_bytes=max_inflated_bytes,
        name_rules=name_rules,
    )


def attach_plan(units: list[IngestUnit], run_id: int | None) -> tuple[list[IngestUnit], IngestUnit | None]:
    """The units timelines first, and the timeline unit whose run the ncu counters join.

    Counters profile a workload a timeline trace also recorded, so when the paths hold exactly
    one timeline trace and some ncu CSVs (one folder per experiment), the counters join that
    trace's run; ``run_id`` names the run explicitly instead, and then no timeline may come
    along (it would make a run of its own, not the one named)."""
    timelines = [u for u in units if u.format != "ncu"]
    if run_id is not None and timelines:
        raise BadInput(
            f"{timelines[0].paths[0].name}: only Nsight Compute counters attach to an "
            "existing run; a timeline trace makes its own run"
        )
    has_counters = len(timelines) < len(units)
    host = timelines[0] if run_id is None and len(timelines) == 1 and has_counters else None
    return timelines + [u for u in units if u.format == "ncu"], host


def ingest_all(
    target: Engine | Writer,
    units: list[IngestUnit],
    meta: RunMeta | None = None,
    *,
    raw_dir: Path,
    run_id: int | None = None,
    max_bytes: int | None = None,
    max_inflated_bytes: int | None = None,
    name_rules: Sequence[NameRule] = NAME_RULES,
) -> Iterator[tuple[IngestUnit, IngestResult]]:
    """Ingest units in order (see :func:`attach_plan`), yielding each result as it lands."""
    ordered, host = attach_plan(units, run_id)
    for unit in ordered:
        attach = run_id if unit.format == "ncu" else None
        result = ingest_unit(
            target,
            unit,
            meta,
            raw_dir=raw_dir,
            run_id=attach,
            max_bytes=max_bytes,
            max_inflated_bytes=max_inflated_bytes,
            name_rules=name_rules,
        )
        if unit is host:
            run_id = result.run_id
        yield unit, result
