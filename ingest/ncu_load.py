"""Ingest one Nsight Compute run: its CSV files (often one per metric) become one run whose
counters are stored per kernel launch, in one transaction, like a timeline trace.

Given ``run_id``, the counters join that existing run instead (typically one ingested from a
Kineto or nsys trace of the same workload), and each launch is linked to the run's timeline
kernel of the same name and order (``ncu_link``), so counters aggregate by operator and
attention type."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.orm import Session

from tracehouse.core.errors import BadInput, NotFound
from tracehouse.core.frames import ParsedTrace, empty_frame
from tracehouse.core.meta import RunMeta
from tracehouse.core.ncu_metrics import ncu_wide, roofline_inputs
from tracehouse.ingest.load import bulk_insert, insert_run, insert_trace, symbol_ids
from tracehouse.ingest.ncu import parse_ncu_csv
from tracehouse.ingest.ncu_link import link_launches
from tracehouse.ingest.pipeline import IngestResult, file_sha256, keep_raw, raw_location
from tracehouse.ingest.rows import counter_table_rows
from tracehouse.schema.db import session_scope
from tracehouse.schema.lookups import get_run
from tracehouse.schema.models import Kernel, NcuMetric, Run, Symbol, Trace
from tracehouse.schema.ncu_counters import has_counters, stored_metrics

_NO_KERNELS = {"start_ns": pl.Int64, "dur_ns": pl.Int64, "device": pl.Int64}


def _already_ingested(engine: Engine, digests: list[str], run_id: int | None) -> IngestResult | None:
    with session_scope(engine) as session:
        rows = session.execute(select(Trace.run_id, Trace.id).where(Trace.sha256.in_(digests))).all()
    if not rows:
        return None
    runs = {r[0] for r in rows}
    first_run, first_trace = rows[0]
    if len(rows) == len(digests) and len(runs) == 1 and first_run is not None and run_id in (None, first_run):
        return IngestResult(run_id=first_run, trace_id=first_trace, created=False)
    raise BadInput(
        f"some of these files already belong to run(s) {sorted(r for r in runs if r is not None)}; "
        "ingest exactly the files of one ncu run together"
    )


def ingest_ncu(
    engine: Engine, paths: list[Path], meta: RunMeta | None = None, *, raw_dir: Path, run_id: int | None = None
) -> IngestResult:
    """Ingest the CSV files of one ncu run (``--hardware`` names the GPU: old CSVs don't).

    With ``run_id`` the counters are attached to that existing run (``meta`` is then unused)."""
    paths = sorted(Path(p) for p in paths)
    sums = [file_sha256(p) for p in paths]
    seen: dict[str, Path] = {}
    for path, (digest, _) in zip(paths, sums, strict=True):
        if digest in seen:
            raise BadInput(f"{seen[digest].name} and {path.name} are the same file; give it once")
        seen[digest] = path
    found = _already_ingested(engine, [d for d, _ in sums], run_id)
    if found is not None:
        return found
    long = parse_ncu_csv(paths)
    kernels = roofline_inputs(ncu_wide(long), tensor_flops_per_inst=None)
    parsed = ParsedTrace(
        format="ncu",
        gpu_events=empty_frame(_NO_KERNELS),
        launches=empty_frame({}),
        ranges=empty_frame({}),
        event_count=long.height,
    )
    kept: list[Path] = []
    try:
        with session_scope(engine) as session:
            if run_id is None:
                run_id = insert_run(session, parsed, empty_frame(_NO_KERNELS), meta or RunMeta())
            links, timeline_count = _link_to_timeline(session, run_id, kernels)
            run = get_run(session, run_id)
            if not run.kernel_count:  # an ncu-only run: its size is the profiled launches'
                run.kernel_count = kernels.height
                run.total_ns = int(kernels["time_ns"].fill_null(0).sum())
            trace_id = 0
            for path, (sha, size) in zip(paths, sums, strict=True):
                target = raw_location(raw_dir, sha, path)
                trace_id = insert_trace(
                    session, run_id, parsed, sha256=sha, size=size, original_name=path.name, raw_path=str(target)
                )
                if keep_raw(path, target):
                    kept.append(target)
            _insert_metrics(session, run_id, long, links)
    except BaseException:
        for target in kept:
            target.unlink(missing_ok=True)
        raise
    unmatched = kernels.height - links.height
    warnings = {"ncu_launches_unmatched": unmatched} if unmatched and timeline_count else {}
    return IngestResult(run_id=run_id, trace_id=trace_id, created=True, kernel_count=kernels.height, warnings=warnings)


def _link_to_timeline(session: Session, run_id: int, launches: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Check the run can take counters and match its timeline kernels: (links, how many
    timeline kernels there were).  Counters that match none of a timeline are refused: they
    profile some other workload, and attaching them would only mislabel them."""
    # FOR UPDATE (PostgreSQL): two concurrent attaches to one run queue here, not both pass.
    if session.get(Run, run_id, with_for_update=True) is None:
        raise NotFound(f"run {run_id} does not exist")
    if has_counters(session, run_id):
        raise BadInput(f"run {run_id} already has Nsight Compute counters")
    timeline = timeline_kernels(session, run_id)
    links = link_launches(launches.select("kernel_id", "kernel_name"), timeline)
    if timeline.height and launches.height and links.is_empty():
        raise BadInput(
            f"none of the {launches.height} profiled launches matches a kernel of run {run_id} "
            "by name; are they from the same workload?"
        )
    return links, timeline.height


def timeline_kernels(session: Session, run_id: int) -> pl.DataFrame:
    """``kernel_ref, name`` of the run's GPU kernels in *launch* order (correlation ids grow
    with each launch), which is ncu's order; start order differs across streams."""
    rows = session.execute(
        select(Kernel.id, Symbol.text)
        .join(Symbol, Symbol.id == Kernel.name_id)
        .where(Kernel.run_id == run_id, Kernel.kind == "kernel")
        .order_by(Kernel.correlation.is_(None), Kernel.correlation, Kernel.seq)
    ).all()
    return pl.DataFrame([tuple(r) for r in rows], schema={"kernel_ref": pl.Int64, "name": pl.String}, orient="row")


def _insert_metrics(session: Session, run_id: int, long: pl.DataFrame, links: pl.DataFrame) -> None:
    rows = counter_table_rows(long, symbol_ids(session, long["kernel_name"]), run_id)
    rows = rows.join(links.select("kernel_id", "kernel_ref"), on="kernel_id", how="left")
    bulk_insert(session, NcuMetric.__tablename__, rows)


def relink(session: Session, run_id: int) -> int:
    """Match a run's stored counters to its (new) timeline kernels again; returns how many
    launches found a kernel.  Used when the run's kernels were re-ingested."""
    launches = stored_metrics(session, run_id).select("kernel_id", "kernel_name").unique("kernel_id")
    if launches.is_empty():
        return 0
    links = link_launches(launches, timeline_kernels(session, run_id))
    session.execute(update(NcuMetric).where(NcuMetric.run_id == run_id).values(kernel_ref=None))
    if links.height:  # Core table, not the ORM class: a plain executemany, not a bulk-by-key update
        table = NcuMetric.core_table()
        session.execute(
            update(table)
            .where(table.c.run_id == run_id, table.c.kernel_id == bindparam("launch"))
            .values(kernel_ref=bindparam("ref")),
            [{"launch": k, "ref": r} for k, r in links.iter_rows()],
        )
    return links.height
