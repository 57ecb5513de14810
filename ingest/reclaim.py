"""Reclaim the files a crash leaves in the data directory.

Two kinds of file can outlive the rows that explain them:

- a raw trace under ``raw/`` that no ``trace`` row names: an ingest copies the raw file into
  the store just before it commits, so a crash between the two leaves the copy (and an
  interrupted copy leaves a ``.part``);
- a spool folder under ``uploads/`` that no queued or running job points at: an upload that
  was streaming, or a job that had finished, when the service died.

Only files older than a grace period are touched, so an upload still streaming or an ingest
about to commit is never raced.  Raw files are matched to rows by their content-addressed
name, not their full path, so a data directory that was moved keeps every referenced file.
One database per data directory is assumed: a raw file that only another database names
looks like an orphan here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from tracehouse.core.settings import Settings
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Trace

log = logging.getLogger(__name__)
LIVE_JOB_STATES = ("queued", "running")


@dataclass
class Reclaimed:
    """What was (or, on a dry run, would be) removed."""

    raw_files: list[Path] = field(default_factory=list)
    spool_folders: list[Path] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would reclaim" if self.dry_run else "reclaimed"
        return (
            f"{verb} {len(self.raw_files)} orphan raw files and {len(self.spool_folders)} "
            f"spool folders ({self.bytes} bytes)"
        )


def _referenced_raw_names(engine: Engine) -> set[str]:
    with session_scope(engine) as session:
        return {Path(path).name for path in session.scalars(select(Trace.raw_path))}


def _live_spool_folders(engine: Engine) -> set[Path]:
    with session_scope(engine) as session:
        paths = session.scalars(select(IngestJob.upload_path).where(IngestJob.status.in_(LIVE_JOB_STATES)))
        folders = set()
        for path in paths:
            upload = Path(path)
            folders.add(upload.resolve())
            folders.add(upload.parent.resolve())  # one file is queued as itself, in its own folder
        return folders


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # gone (or going) under us: young, so left alone
        return float("inf")


def _newest_mtime(path: Path) -> float:
    """The folder's own time and its files': a spool folder is young while anything in it is."""
    times = [_mtime(path)]
    if path.is_dir():
        times += [_mtime(child) for child in path.iterdir()]
    return max(times)


def _size(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.exists())


def find_orphans(engine: Engine, settings: Settings, grace_seconds: float | None = None) -> Reclaimed:
    """The orphan raw files and spool folders older than the grace period (nothing removed)."""
    grace = settings.gc_grace_seconds if grace_seconds is None else grace_seconds
    cutoff = time.time() - grace
    found = Reclaimed(dry_run=True)
    raw_dir, spool_dir = settings.raw_dir(), settings.upload_dir()
    if raw_dir.is_dir():
        referenced = _referenced_raw_names(engine)
        for path in sorted(raw_dir.rglob("*")):
            if path.is_file() and path.name not in referenced and _mtime(path) < cutoff:
                found.raw_files.append(path)
    if spool_dir.is_dir():
        live = _live_spool_folders(engine)
        for path in sorted(spool_dir.iterdir()):
            if path.resolve() not in live and _newest_mtime(path) < cutoff:
                found.spool_folders.append(path)
    found.bytes = sum(_size(p) for p in [*found.raw_files, *found.spool_folders])
    return found


def reclaim_orphans(
    engine: Engine, settings: Settings, *, dry_run: bool = False, grace_seconds: float | None = None
) -> Reclaimed:
    """Remove (unless ``dry_run``) what ``find_orphans`` finds; empty raw shard folders go too."""
    found = find_orphans(engine, settings, grace_seconds)
    found.dry_run = dry_run
    if dry_run:
        return found
    for path in found.raw_files:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the two-hex-digit shard, once empty
    for path in found.spool_folders:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if found.raw_files or found.spool_folders:
        log.info("%s", found.summary())
    return found
