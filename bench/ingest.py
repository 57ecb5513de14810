"""Ingest speed and memory against the obvious alternatives, measured in one run.

    python bench/ingest.py FILE [--repeat 5]

Each contender runs in its own process (so peak RSS is its own): tracehouse's ingest (file to
committed SQLite rows, migrations excluded), HTA's ``TraceAnalysis`` load, and plain
``orjson.loads`` of the already-gunzipped bytes (and with the gunzip).  Prints seconds (best
of ``--repeat``), peak RSS, and the ratios.
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
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
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

    def once() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.sqlite3")
            upgrade(engine)
            t = time.perf_counter()
            ingest_file(engine, path, raw_dir=Path(tmp) / "raw")
            once.elapsed = time.perf_counter() - t  # type: ignore[attr-defined]
            engine.dispose()

    best = float("inf")
    for _ in range(repeat):
        once()
        best = min(best, once.elapsed)  # type: ignore[attr-defined]
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


CONTENDERS = {
    "tracehouse ingest (file -> SQLite rows)": "tracehouse",
    "HTA TraceAnalysis load": "hta",
    "orjson.loads (gunzipped bytes)": "orjson",
    "gzip + orjson.loads": "orjson_gz",
}


def run_child(kind: str, path: Path, repeat: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(path), "--repeat", str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("file", type=Path)
    # Best of 5 for every contender: a short run on a shared 2-core VM is easily disturbed.
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fn = {"tracehouse": child_tracehouse, "hta": child_hta,
              "orjson": lambda p, r: child_orjson(p, r, gunzip=False),
              "orjson_gz": lambda p, r: child_orjson(p, r, gunzip=True)}[args.child]
        seconds = fn(args.file, args.repeat)
        print(json.dumps({"seconds": seconds, "peak_rss_mb": _rss_mb()}))
        return
    size = os.path.getsize(args.file)
    print(f"file: {args.file} ({size / 1e6:.1f} MB on disk), best of {args.repeat}")
    results = {label: run_child(kind, args.file, args.repeat) for label, kind in CONTENDERS.items()}
    ours = results["tracehouse ingest (file -> SQLite rows)"]
    print(f"{'contender':42} {'seconds':>9} {'peak RSS MB':>12} {'time / ours':>12}")
    for label, r in results.items():
        print(f"{label:42} {r['seconds']:9.3f} {r['peak_rss_mb']:12.0f} {r['seconds'] / ours['seconds']:12.2f}")
    hta = results["HTA TraceAnalysis load"]
    plain = results["orjson.loads (gunzipped bytes)"]
    print(f"tracehouse is {hta['seconds'] / ours['seconds']:.1f}x faster than HTA and takes "
          f"{ours['seconds'] / plain['seconds']:.2f}x the time of orjson.loads alone; "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB vs HTA {hta['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
