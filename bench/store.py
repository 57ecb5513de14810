"""A store of N runs, then per-run and cross-run query latency over HTTP.

    python bench/store.py --db sqlite:////tmp/store.sqlite3 --runs 1000
    python bench/store.py --db postgresql://postgres@127.0.0.1:5432/test --runs 10000 [--schema store_bench]
    ... --defer-indexes  # build the kernel indexes after the copy (big stores)
    ... --reuse          # measure a store built earlier (same --db / --schema), skip the build
    ... --build-only     # build the store and exit (measure it later with --reuse)
    ... --seeds a100_nccl_training*3 v100_ns_resolution*2 ...  # bigger runs: a seed K times over
    ... --json out.json

Build: a few real traces (``--seeds``: the four A100/V100 training traces under
../shared/traces/kineto by default) are ingested through the real ingest (``ingest_file``:
parse, attribution, rollups, one transaction each), then the store is filled to N runs by
deterministic SQL clones of those runs (on PostgreSQL with foreign-key triggers off for the
copy, ``session_replication_role = replica``, so the role must be a superuser): each clone
copies its seed's kernel rows, operator and kernel rollups row for row (``INSERT ... SELECT
... ORDER BY seq`` from a staged copy of the seed rows, so a run's rows sit together as a real
ingest writes them) under a new run and trace row whose
metadata vary with the clone's index (model, attention backend, image size, batch, host, a
``lab`` tag among 100 labs, an upload time spread over a year).  Durations are the seed's: a clone
is a copy, not a new measurement.  A seed named ``NAME*K`` is NAME's events replicated K times
one after another in time (``bench/generate.py``'s ``write_trace``: each copy a later,
identical stretch of the run), ingested as one trace of K times the kernels: runs of ~10,000
kernel rows make 10,000 runs ~100 M rows.  PostgreSQL is ANALYZEd after the build (autovacuum would);
SQLite is left as ingest leaves it.

Measure: a real ``tracehouse serve`` on the store; each query is asked ``--repeat`` times
(per-run queries on a different random run each time, fixed seed) after one warm-up, over one
keep-alive httpx client; p50 and p95 of the wall time of each request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import Engine, func, insert, select, text

if TYPE_CHECKING:
    from tracehouse.api.serve_process import ServeProcess

REPO = Path(__file__).resolve().parents[1]
KINETO = REPO.parent / "shared" / "traces" / "kineto"
SEEDS = ["a100_rank3_of8_training", "a100_record_shapes", "v100_ns_resolution", "a100_nccl_training"]
MODELS = ["llama-2-7b", "stable-diffusion", "make-a-video", "parti"]
BACKENDS = ["baseline", "flash"]
IMAGE_SIZES = [256, 512, 768, 1024]
LABS = 100
CHUNK = 25  # clones per transaction
COPIED = ("kernel", "operator_rollup", "kernel_rollup", "launch_rollup")  # a run's rows below run and trace


def _engine(url: str, schema: str | None) -> tuple[Engine, str]:
    """The engine and the URL a server is given; PostgreSQL gets a schema of its own."""
    from tracehouse.schema.db import make_engine

    if not url.startswith("postgresql") or not schema:
        return make_engine(url), url
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    admin.dispose()
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    return make_engine(scoped), scoped


def _drop(url: str, schema: str) -> None:
    from tracehouse.schema.db import make_engine

    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def ingest_seeds(engine: Engine, seeds: list[Path], raw_dir: Path) -> tuple[list[int], float, int]:
    """The seed traces through the real ingest; their run ids, wall seconds and kernel rows."""
    from tracehouse.core.meta import meta_from_mapping
    from tracehouse.ingest.pipeline import ingest_file

    started, rows, run_ids = time.perf_counter(), 0, []
    for i, path in enumerate(seeds):
        meta = meta_from_mapping({"model": MODELS[i % len(MODELS)], "attention_backend": "baseline"})
        result = ingest_file(engine, path, meta, raw_dir=raw_dir)
        run_ids.append(result.run_id)
        rows += result.kernel_count or 0
    return run_ids, time.perf_counter() - started, rows


def parse_seed(spec: str) -> tuple[Path, int]:
    """``NAME`` or ``NAME*K``: the trace file and K (checked before anything is built or dropped)."""
    name, _, times = spec.partition("*")
    source = KINETO / f"{name}.json.gz"
    copies = int(times) if times.isdigit() else 0 if times else 1
    if copies < 1 or not source.is_file():
        raise SystemExit(f"--seeds {spec}: want NAME or NAME*K (K >= 1) with {source} present")
    return source, copies


def seed_paths(specs: list[str], work: Path) -> list[Path]:
    """The seed trace files: ``NAME`` is ``KINETO/NAME.json.gz``; ``NAME*K`` is that trace
    replicated K times in time, written under ``work``."""
    paths = []
    for source, copies in map(parse_seed, specs):
        if copies == 1:
            paths.append(source)
            continue
        from generate import write_trace  # beside this file

        target = work / f"{source.name.removesuffix('.json.gz')}-x{copies}.json.gz"
        write_trace(source, target, copies=copies, gzip_it=True)
        paths.append(target)
    return paths


def _columns(engine: Engine, table: str) -> list[str]:
    from tracehouse.schema.models import Base

    return [c.name for c in Base.metadata.tables[table].columns if not (c.primary_key and c.name == "id")]


def _stage_seeds(engine: Engine, seed_runs: list[int]) -> None:
    """The seed runs' rows in small tables of their own: the copies read them there, so a copy
    never searches the growing table (nor needs its indexes while they are deferred)."""
    ids = ", ".join(str(int(r)) for r in seed_runs)
    with engine.begin() as conn:
        for table in COPIED:
            conn.execute(text(f"DROP TABLE IF EXISTS bench_seed_{table}"))
            conn.execute(text(f"CREATE TABLE bench_seed_{table} AS SELECT * FROM {table} WHERE run_id IN ({ids})"))
            conn.execute(text(f"CREATE INDEX bench_seed_{table}_run ON bench_seed_{table} (run_id)"))


def _unstage_seeds(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in COPIED:
            conn.execute(text(f"DROP TABLE IF EXISTS bench_seed_{table}"))


def _copy_statements(engine: Engine) -> dict[str, str]:
    """Per table, an INSERT ... SELECT of one seed run's rows under a new run (and trace) id."""
    out = {}
    for table in COPIED:
        cols = _columns(engine, table)
        chosen = [":new_run" if c == "run_id" else ":new_trace" if c == "trace_id" else f'"{c}"' for c in cols]
        order = " ORDER BY seq" if table == "kernel" else ""
        out[table] = (
            f"INSERT INTO {table} ({', '.join(chr(34) + c + chr(34) for c in cols)}) "
            f"SELECT {', '.join(chosen)} FROM bench_seed_{table} WHERE run_id = :seed{order}"
        )
    return out


def _clone_rows(
    i: int, seed_run: dict, seed_trace: dict, model_ids: list[int], when: datetime, run_id: int, trace_id: int
) -> tuple[dict, dict, list[dict]]:
    """Clone ``i``'s run, trace and tag rows: deterministic in ``i``."""
    n = len(model_ids)
    run = {
        **seed_run,
        "id": run_id,
        "model_id": model_ids[i % n],
        "attention_backend": BACKENDS[(i // n) % 2],
        "image_size": IMAGE_SIZES[(i // (2 * n)) % 4],
        "batch": 1 << ((i // (8 * n)) % 4),
        "host": f"node-{i % 64:02d}",
        "created_at": when,
        "uploaded_by_token_id": None,
    }
    digest = hashlib.sha256(f"{seed_trace['sha256']}:{i}".encode()).hexdigest()
    trace = {
        **seed_trace,
        "id": trace_id,
        "run_id": run_id,
        "sha256": digest,
        "content_sha256": hashlib.sha256(digest.encode()).hexdigest(),
        "original_name": f"clone{i}-{seed_trace['original_name']}",
        "ingested_at": run["created_at"],
    }
    tags = [
        {"run_id": run_id, "key": "lab", "value": f"lab-{i % LABS:02d}"},
        {"run_id": run_id, "key": "commit", "value": digest[:8]},
    ]
    return run, trace, tags


def clone_runs(engine: Engine, seed_runs: list[int], total: int, defer_indexes: bool = False) -> float:
    """Fill the store to ``total`` runs with clones of ``seed_runs``; wall seconds.
    ``defer_indexes``: drop the kernel table's secondary indexes for the copy and build them
    again after it (as a restore does), instead of maintaining them row by row."""
    from tracehouse.schema.db import session_scope
    from tracehouse.schema.models import Kernel, Run, RunTag, Trace

    started = time.perf_counter()
    _stage_seeds(engine, seed_runs)
    if defer_indexes:
        with engine.begin() as conn:
            for index in Kernel.__table__.indexes:
                index.drop(conn)
    copy = _copy_statements(engine)
    with session_scope(engine) as s:
        runs = {
            r.id: {c.name: getattr(r, c.name) for c in Run.__table__.columns}
            for r in s.scalars(select(Run).where(Run.id.in_(seed_runs)))
        }
        traces = {
            t.run_id: {c.name: getattr(t, c.name) for c in Trace.__table__.columns}
            for t in s.scalars(select(Trace).where(Trace.run_id.in_(seed_runs)))
        }
        model_ids = sorted({r["model_id"] for r in runs.values()})
        next_run = (s.scalar(select(func.max(Run.id))) or 0) + 1
        next_trace = (s.scalar(select(func.max(Trace.id))) or 0) + 1
    base = datetime(2026, 1, 1, tzinfo=UTC)
    clones = total - len(seed_runs)
    for first in range(0, clones, CHUNK):
        with session_scope(engine) as s:
            if engine.dialect.name == "postgresql":
                # Copies of valid rows under ids made here: foreign-key triggers are skipped for
                # this transaction (superuser only), as a bulk restore would.
                s.execute(text("SET LOCAL session_replication_role = replica"))
            for i in range(first, min(first + CHUNK, clones)):
                seed = seed_runs[i % len(seed_runs)]
                when = base + timedelta(seconds=365 * 86400 * i // clones)  # a year of uploads
                run, trace, tags = _clone_rows(
                    i, runs[seed], traces[seed], model_ids, when, next_run + i, next_trace + i
                )
                s.execute(insert(Run), [run])
                s.execute(insert(Trace), [trace])
                s.execute(insert(RunTag), tags)
                for table in COPIED:
                    s.execute(text(copy[table]), {"new_run": run["id"], "new_trace": trace["id"], "seed": seed})
        print(
            f"\r  cloned {min(first + CHUNK, clones)}/{clones} runs ({time.perf_counter() - started:.0f} s)",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(file=sys.stderr)
    _unstage_seeds(engine)
    if defer_indexes:
        with engine.begin() as conn:
            for index in Kernel.__table__.indexes:
                index.create(conn)
        print(f"  kernel indexes built again ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    _after_build(engine)
    return time.perf_counter() - started


def _after_build(engine: Engine) -> None:
    """Explicit ids were written: PostgreSQL's sequences are moved past them, and it is analyzed."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("run", "trace"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def storage(engine: Engine) -> dict[str, object]:
    """Kernel rows and bytes on disk: the kernel table with its indexes, and the whole store."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM kernel")).scalar_one()
        runs = conn.execute(text("SELECT count(*) FROM run")).scalar_one()
        if engine.dialect.name == "postgresql":
            kernel = conn.execute(text("SELECT pg_total_relation_size('kernel')")).scalar_one()
            total = conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN "
                    "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
                    "current_schema() AND c.relkind = 'r'"
                )
            ).scalar_one()
        else:
            kernel = conn.execute(
                text(
                    "SELECT sum(pgsize) FROM dbstat WHERE name = 'kernel' OR name IN "
                    "(SELECT name FROM sqlite_master WHERE tbl_name = 'kernel')"
                )
            ).scalar()
            page = conn.execute(text("PRAGMA page_size")).scalar_one()
            total = page * conn.execute(text("PRAGMA page_count")).scalar_one()
    return {
        "runs": runs,
        "kernel_rows": rows,
        "kernel_bytes": int(kernel or 0),
        "store_bytes": int(total or 0),
        "kernel_bytes_per_row": round(int(kernel or 0) / rows, 1) if rows else None,
    }


def queries(run_ids: list[int], rng: random.Random) -> dict[str, tuple[str, object]]:
    """name -> (kind, a callable giving the next request's path and params)."""

    def one(path: str, **params: object):  # type: ignore[no-untyped-def]
        def pick() -> tuple[str, dict[str, object]]:
            run, other = rng.choice(run_ids), rng.choice(run_ids)
            fill = lambda v: v.format(run=run, other=other) if isinstance(v, str) else v  # noqa: E731
            return fill(path), {k: fill(v) for k, v in params.items()}

        return pick

    return {
        "run metadata": ("per-run", one("/v1/runs/{run}")),
        "breakdown by operator": ("per-run", one("/v1/runs/{run}/breakdown", by="operator")),
        "breakdown by kernel": ("per-run", one("/v1/runs/{run}/breakdown", by="kernel", limit=100)),
        "kernels page (100 rows)": ("per-run", one("/v1/runs/{run}/kernels", limit=100)),
        "launches": ("per-run", one("/v1/runs/{run}/launches", limit=100)),
        "compare two runs (Table II row)": ("per-run", one("/v1/compare", baseline="{run}", other="{other}")),
        "runs list, all": ("cross-run", one("/v1/runs")),  # the first page: 100 runs unless asked
        "runs list, 1,000 a page": ("cross-run", one("/v1/runs", limit=1000)),  # the client's page
        "runs list, model+backend+lab tag": (
            "cross-run",
            one("/v1/runs", model="parti", attention_backend="flash", tag="lab=lab-07"),
        ),
        "runs list, since a date": ("cross-run", one("/v1/runs", since="2026-11-01T00:00:00")),
        "speedups (Table II)": ("cross-run", one("/v1/speedups")),
        "sweep image_size": (
            "cross-run",
            one("/v1/sweep", model="stable-diffusion", knob="image_size", operator=["attention", "total"]),
        ),
        "across hardware": (
            "cross-run",
            one("/v1/hardware", model="llama-2-7b", filter=["attention_backend=flash", "image_size=512", "batch=1"]),
        ),
        "runs x operator matrix, one model": ("cross-run", one("/v1/matrix", model="stable-diffusion")),
        "runs x operator matrix, 10,000 a page": (  # the client's page
            "cross-run",
            one("/v1/matrix", model="stable-diffusion", limit=10_000),
        ),
        "history of attention time, one model": (
            "cross-run",
            one("/v1/history", model="stable-diffusion", key="attention", filter=["attention_backend=flash"]),
        ),
    }


def measure(server: ServeProcess, token: str, run_ids: list[int], repeat: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    results = []
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as client:
        for name, (kind, pick) in queries(run_ids, rng).items():
            times, rows = [], None
            for attempt in range(repeat + 1):  # the first is a warm-up
                path, params = pick()
                started = time.perf_counter()
                reply = client.get(path, params=params)
                elapsed = time.perf_counter() - started
                if reply.status_code != 200:
                    raise RuntimeError(f"{name}: {reply.status_code} {reply.text[:300]}")
                if attempt:
                    times.append(elapsed * 1000)
                rows = len(reply.json()) if isinstance(reply.json(), list) else 1
            times.sort()
            results.append(
                {
                    "query": name,
                    "kind": kind,
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
                    "rows": rows,
                    "n": len(times),
                }
            )
            print(
                f"  {kind:9} {name:36} p50 {results[-1]['p50_ms']:8.1f} ms  p95 {results[-1]['p95_ms']:8.1f} ms"
                f"  ({rows} rows)",
                file=sys.stderr,
                flush=True,
            )
    return results


def build(engine: Engine, runs: int, seeds: list[Path], raw_dir: Path, defer_indexes: bool) -> dict[str, object]:
    from tracehouse.schema.migrate import upgrade

    upgrade(engine)
    seed_runs, seed_s, seed_rows = ingest_seeds(engine, seeds, raw_dir)
    print(f"  ingested {len(seeds)} seed traces ({seed_rows} kernel rows) in {seed_s:.1f} s", file=sys.stderr)
    clone_s = clone_runs(engine, seed_runs, runs, defer_indexes)
    return {
        "seed_traces": len(seeds),
        "seed_kernel_rows": seed_rows,
        "seed_ingest_s": round(seed_s, 2),
        "clone_s": round(clone_s, 1),
        "deferred_indexes": defer_indexes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://...")
    ap.add_argument("--schema", default="store_bench", help="PostgreSQL schema the store is built in")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument(
        "--seeds",
        nargs="*",
        default=SEEDS,
        help="kineto trace names under ../shared/traces/kineto; NAME*K replicates one K times in time",
    )
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument(
        "--defer-indexes",
        action="store_true",
        help="Build the kernel indexes after the clones instead of during (big stores)",
    )
    ap.add_argument("--reuse", action="store_true", help="Measure the store already there; build nothing")
    ap.add_argument("--build-only", action="store_true", help="Build the store, print its storage, measure nothing")
    ap.add_argument("--json", type=Path, help="Write the figures here")
    args = ap.parse_args()
    from tracehouse.api.auth import create_token
    from tracehouse.api.serve_process import ServeProcess
    from tracehouse.schema.db import session_scope
    from tracehouse.schema.models import Run

    for spec in args.seeds:  # a bad --seeds stops here, before a store is dropped
        parse_seed(spec)
    pg = args.db.startswith("postgresql")
    if pg and not args.reuse:
        _drop(args.db, args.schema)
    elif not pg and not args.reuse:
        Path(args.db.removeprefix("sqlite:///")).unlink(missing_ok=True)
    engine, url = _engine(args.db, args.schema)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        report: dict[str, object] = {"backend": engine.dialect.name, "runs_requested": args.runs}
        if not args.reuse:
            started = time.perf_counter()
            seeds = seed_paths(args.seeds, data)
            report["build"] = build(engine, args.runs, seeds, data / "raw", args.defer_indexes)
            report["build"]["seeds"] = args.seeds  # type: ignore[index]
            report["build"]["total_s"] = round(time.perf_counter() - started, 1)  # type: ignore[index]
        report["storage"] = storage(engine)
        print(f"  store: {report['storage']}", file=sys.stderr)
        if args.build_only:
            _finish(engine, report, args.json)
            return
        with session_scope(engine) as s:
            run_ids = list(s.scalars(select(Run.id)))
            token = create_token(s, f"bench-{time.time_ns()}", "read")
        # Start-up housekeeping off: what is measured is the queries.
        env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(data), "TRACEHOUSE_GC_ON_START": "false"}
        server = ServeProcess(url, data / "serve.log", env)
        server.start(timeout_s=120)
        try:
            report["load_average_before"] = os.getloadavg()  # a shared machine: how busy it was
            report["queries"] = measure(server, token, run_ids, args.repeat)
            report["load_average_after"] = os.getloadavg()
        finally:
            server.stop(timeout_s=60)
    _finish(engine, report, args.json)


def _finish(engine: Engine, report: dict[str, object], out: Path | None) -> None:
    engine.dispose()
    print(json.dumps(report, indent=1, default=str))
    if out:
        out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
