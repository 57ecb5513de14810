"""Ingest speed and memory against the obvious alternatives, measured in one run.

    python bench/ingest.py FILE [--repeat 5] [--stages]
    python bench/ingest.py FILE --whole-process [--repeat 3]
    python bench/ingest.py FILE --generate 0.8,2,4 [--gzip] [--hta-timeout 600]

Each contender runs in its own processes (so peak RSS is its own), round by round: tracehouse's ingest (file to
committed SQLite rows, migrations excluded), HTA's ``TraceAnalysis`` load, and plain
``orjson.loads`` of the already-gunzipped bytes (and with the gunzip).  Prints seconds (best
of ``--repeat``), peak RSS, and the ratios; ``--stages`` adds tracehouse's time per stage.

``--whole-process`` times what a user waits for instead, process start to exit, imports
included: ``tracehouse ingest FILE --db <fresh SQLite>`` as typed at a shell (into a database
migrated beforehand, and into a new file it migrates itself), a script that loads the file
with HTA's ``TraceAnalysis``, and ``python -c`` that gunzips (ISA-L) and ``orjson.loads`` it;
and, for the floor under ours, the interpreter's start and the libraries every ingest
imports (polars, numpy with the ``numpy.ma`` polars loads on first use, msgspec, orjson,
ISA-L).  tracehouse's bytecode is written first, as an install writes it.

``--generate SIZES`` (GB, comma-separated) writes, for each size, a valid trace of about that
many bytes of JSON by replicating FILE's events (``bench/generate.py``), then times
``tracehouse ingest`` of it whole-process with its peak RSS, and HTA's load where it finishes
within ``--hta-timeout``; each file is deleted before the next is written.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Engine

    from tracehouse.core.frames import ParsedTrace

T = TypeVar("T")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def child_tracehouse(path: Path, repeat: int) -> float:
    from tracehouse.ingest.pipeline import ingest_file
    from tracehouse.schema.db import make_engine
    from tracehouse.schema.migrate import upgrade

    def once() -> float:
        """Seconds of the ingest alone: the throwaway database's migrations are not timed."""
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.sqlite3")
            upgrade(engine)
            t = time.perf_counter()
            ingest_file(engine, path, raw_dir=Path(tmp) / "raw")
            elapsed = time.perf_counter() - t
            engine.dispose()
        return elapsed

    best = float("inf")
    for _ in range(repeat):
        best = min(best, once())
    return best


def child_hta(path: Path, repeat: int) -> float:
    import logging

    logging.disable(logging.WARNING)
    from hta.trace_analysis import TraceAnalysis

    return _best(lambda: TraceAnalysis(trace_files={0: str(path.resolve())}, trace_dir="/"), repeat)


def child_orjson(path: Path, repeat: int, *, gunzip: bool) -> float:
    import gzip

    import orjson

    data = path.read_bytes()
    if gunzip:
        return _best(lambda: orjson.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data), repeat)
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return _best(lambda: orjson.loads(raw), repeat)


def child_stages(path: Path, repeat: int) -> dict[str, float]:
    """Where tracehouse's ingest spends its time: each stage's best of ``repeat``, in seconds."""
    from tracehouse.core.meta import RunMeta
    from tracehouse.ingest import kineto, kineto_native
    from tracehouse.ingest.attribution import attribute
    from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter
    from tracehouse.schema.db import make_engine
    from tracehouse.schema.migrate import upgrade

    best: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], T]) -> T:
        t = time.perf_counter()
        out = fn()
        best[stage] = min(best.get(stage, float("inf")), time.perf_counter() - t)
        return out

    def load(engine: Engine, parsed: ParsedTrace, kernels: pl.DataFrame, i: int) -> None:
        writer = SqlAlchemyWriter(engine)
        with writer.transaction():
            run_id = writer.insert_run(parsed, kernels, RunMeta())
            trace_id = writer.insert_trace(
                run_id, parsed, sha256=f"{i:064d}", size=0, original_name=path.name, raw_path=""
            )
            writer.insert_kernels(run_id, trace_id, kernels)

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            # partial, not lambda: each stage gets this round's inputs, bound now
            raw = timed("gunzip", partial(kineto.read_bytes, path))
            timed("C scan (to polars)", partial(kineto_native.scan, raw))
            parsed = timed("parse (all of the above and the frames)", partial(kineto.parse_kineto, path))
            kernels = timed("attribute", partial(attribute, parsed))
            engine = make_engine(f"sqlite:///{tmp}/stages{i}.sqlite3")
            upgrade(engine)
            timed("load (SQLite, committed)", partial(load, engine, parsed, kernels, i))
            engine.dispose()
    return best


CONTENDERS = {
    "tracehouse ingest (file -> SQLite rows)": "tracehouse",
    "HTA TraceAnalysis load": "hta",
    "orjson.loads (gunzipped bytes)": "orjson",
    "gzip + orjson.loads": "orjson_gz",
}


def run_child(kind: str, path: Path, repeat: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def interleaved(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Each contender's best time and highest peak RSS over ``repeat`` rounds, one fresh
    process per contender per round.  Round by round rather than contender by contender:
    this VM's speed drifts for seconds at a time, and a slow stretch should fall on every
    contender alike instead of on whichever ran during it.  Each process runs its contender
    twice and keeps the better: first-call setup (polars', SQLAlchemy's, HTA's own) is paid
    once per process, not once per trace."""
    results: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for label, kind in CONTENDERS.items():
            r = run_child(kind, path, 2)
            seen = results.setdefault(label, r)
            seen["seconds"] = min(seen["seconds"], r["seconds"])
            seen["peak_rss_mb"] = max(seen["peak_rss_mb"], r["peak_rss_mb"])
    return results


def _tracehouse_command() -> list[str]:
    """The installed entry point beside this interpreter, as a user runs it."""
    exe = Path(sys.executable).with_name("tracehouse")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tracehouse.api.cli"]


_HTA_SCRIPT = """import sys
from hta.trace_analysis import TraceAnalysis
TraceAnalysis(trace_files={0: sys.argv[1]}, trace_dir="/")
"""
_IMPORTS_CODE = "import polars, numpy, numpy.ma, msgspec, orjson; from isal import isal_zlib"
_ORJSON_CODE = (
    "import sys, orjson; from isal import igzip; orjson.loads(igzip.decompress(open(sys.argv[1], 'rb').read()))"
)


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process.  On a shared machine
    the CPU time is the steadier of the two (our scan uses two threads, so it is not lower)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def whole_process_round(
    path: Path, tmp: Path, round_no: int, baseline: Path | None = None
) -> dict[str, tuple[float, float]]:
    """One fresh process per contender, from spawn to exit; ``baseline``: another install's
    ``tracehouse`` (e.g. main's), timed the same way into a migrated SQLite file."""
    th = _tracehouse_command()
    seconds: dict[str, tuple[float, float]] = {
        "python -c pass (interpreter start)": _timed([sys.executable, "-c", "pass"]),
        # What any polars + numpy ingest pays before reading a byte: the floor under ours.
        "python -c import polars, numpy": _timed([sys.executable, "-c", _IMPORTS_CODE]),
    }
    for label, migrate_first in (
        ("tracehouse ingest (migrated SQLite)", True),
        ("tracehouse ingest (new SQLite file)", False),
    ):
        work = tmp / f"r{round_no}{'m' if migrate_first else 'n'}"
        env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(work)}
        db = f"sqlite:///{work / 'bench.sqlite3'}"
        if migrate_first:  # not timed: a user's database exists before their next ingest
            subprocess.run([*th, "db", "upgrade", "--db", db], env=env, check=True, stdout=subprocess.DEVNULL)
        seconds[label] = _timed([*th, "ingest", str(path), "--db", db], env)
    if baseline is not None:
        seconds[f"baseline: {baseline}"] = _timed_baseline(baseline, path, tmp / f"r{round_no}b")
    script = tmp / "hta_load.py"
    script.write_text(_HTA_SCRIPT)
    seconds["HTA TraceAnalysis load (script)"] = _timed([sys.executable, str(script), str(path.resolve())])
    seconds["python -c orjson.loads(ISA-L gunzip)"] = _timed([sys.executable, "-c", _ORJSON_CODE, str(path)])
    return seconds


def _baseline_env(work: Path) -> dict[str, str]:
    """The other install writes its bytecode to a folder of its own (``PYTHONPYCACHEPREFIX``):
    its checkout is left untouched, and its modules are not compiled in the timed process."""
    env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(work), "PYTHONPYCACHEPREFIX": str(work.parent / "baseline-pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed_baseline(exe: Path, path: Path, work: Path) -> tuple[float, float]:
    """``exe ingest`` into a SQLite file migrated beforehand (untimed), as ours is timed."""
    env, db = _baseline_env(work), f"sqlite:///{work / 'bench.sqlite3'}"
    subprocess.run([str(exe), "db", "upgrade", "--db", db], env=env, check=True, stdout=subprocess.DEVNULL)
    return _timed([str(exe), "ingest", str(path), "--db", db], env)


def compile_tracehouse() -> None:
    """Write tracehouse's bytecode, as ``pip install`` does for an installed package (HTA's is
    in site-packages): with ``PYTHONDONTWRITEBYTECODE`` set, an editable install would
    otherwise compile its modules in every process timed (~0.1 s)."""
    import compileall

    from tracehouse import api  # any package of the editable install: its folders sit side by side

    root = Path(api.__path__[0]).parent
    for package in ("core", "schema", "ingest", "analyses", "api", "client", "migrations"):
        compileall.compile_dir(root / package, quiet=1)


def whole_process(path: Path, rounds: int, baseline: Path | None = None) -> None:
    """Contenders interleaved round by round (see :func:`interleaved`); best and median kept."""
    compile_tracehouse()
    samples: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if baseline is not None:  # once, untimed: writes the baseline's bytecode
            _timed_baseline(baseline, path, Path(tmp) / "warm")
        for i in range(rounds):
            for label, timing in whole_process_round(path, Path(tmp), i, baseline).items():
                samples.setdefault(label, []).append(timing)
    hta = samples["HTA TraceAnalysis load (script)"]
    hta_wall, hta_cpu = min(w for w, _ in hta), min(c for _, c in hta)
    print(f"whole process (start to exit), {rounds} interleaved rounds, seconds")
    print(f"{'contender':42} {'wall best':>9} {'median':>7} {'CPU best':>9} {'HTA/this wall':>14} {'cpu':>6}")
    for label, timings in samples.items():
        walls, cpus = sorted(w for w, _ in timings), sorted(c for _, c in timings)
        print(
            f"{label:42} {walls[0]:9.3f} {walls[len(walls) // 2]:7.3f} {cpus[0]:9.3f} "
            f"{hta_wall / walls[0]:14.2f} {hta_cpu / cpus[0]:6.2f}"
        )
    print("command: " + " ".join(_tracehouse_command()) + f" ingest {path} --db sqlite:///<fresh file>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("file", type=Path)
    # Best of 5 for every contender: a short run on a shared 2-core VM is easily disturbed.
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stages", action="store_true", help="also print tracehouse's time per ingest stage")
    parser.add_argument(
        "--whole-process", action="store_true", help="time whole processes as a user runs them (imports included)"
    )
    parser.add_argument("--generate", help="GB sizes to generate and ingest, e.g. 0.8,2,4")
    parser.add_argument("--gzip", action="store_true", help="with --generate: write .json.gz")
    parser.add_argument("--hta-timeout", type=float, default=600, help="with --generate: seconds HTA gets")
    parser.add_argument(
        "--hta-up-to",
        type=float,
        default=1.0,
        help="with --generate: largest size (GB) HTA is run on (it needs ~10x the JSON in memory)",
    )
    parser.add_argument(
        "--baseline", type=Path, help="with --whole-process: another install's tracehouse to time too (e.g. main's)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        from generate import generated_runs  # beside this file

        generated_runs(
            args.file,
            [float(s) for s in args.generate.split(",")],
            gzip_it=args.gzip,
            hta_timeout=args.hta_timeout,
            hta_up_to=args.hta_up_to,
            tracehouse=_tracehouse_command(),
            hta_script=_HTA_SCRIPT,
        )
        return
    if args.whole_process:
        print(f"file: {args.file} ({os.path.getsize(args.file) / 1e6:.1f} MB on disk)")
        whole_process(args.file, args.repeat, args.baseline)
        return
    if args.child == "stages":
        print(json.dumps(child_stages(args.file, args.repeat)))
        return
    if args.child:
        fn = {
            "tracehouse": child_tracehouse,
            "hta": child_hta,
            "orjson": lambda p, r: child_orjson(p, r, gunzip=False),
            "orjson_gz": lambda p, r: child_orjson(p, r, gunzip=True),
        }[args.child]
        seconds = fn(args.file, args.repeat)
        print(json.dumps({"seconds": seconds, "peak_rss_mb": _rss_mb()}))
        return
    size = os.path.getsize(args.file)
    print(f"file: {args.file} ({size / 1e6:.1f} MB on disk), best of {args.repeat} interleaved rounds")
    results = interleaved(args.file, args.repeat)
    ours = results["tracehouse ingest (file -> SQLite rows)"]
    print(f"{'contender':42} {'seconds':>9} {'peak RSS MB':>12} {'time / ours':>12}")
    for label, r in results.items():
        print(f"{label:42} {r['seconds']:9.3f} {r['peak_rss_mb']:12.0f} {r['seconds'] / ours['seconds']:12.2f}")
    hta = results["HTA TraceAnalysis load"]
    plain = results["orjson.loads (gunzipped bytes)"]
    print(
        f"tracehouse is {hta['seconds'] / ours['seconds']:.1f}x faster than HTA and takes "
        f"{ours['seconds'] / plain['seconds']:.2f}x the time of orjson.loads alone; "
        f"peak RSS {ours['peak_rss_mb']:.0f} MB vs HTA {hta['peak_rss_mb']:.0f} MB"
    )
    if args.stages:
        print(f"tracehouse by stage, best of {args.repeat} each:")
        for stage, seconds in run_child("stages", args.file, args.repeat).items():
            print(f"  {stage:40} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
