"""Large Kineto traces for the memory and throughput benchmark, made from a real one.

``write_trace(source, target, size)`` writes about ``size`` bytes of JSON: ``source``'s header
and its events replicated, each copy's timestamps shifted past the previous copy's end and its
correlation and external ids past the previous copy's largest, so the copies neither overlap in
time nor link to each other (each replica is a later, identical stretch of the same run).
``generated_runs`` is ``bench/ingest.py --generate``: each size is written, ingested by
``tracehouse ingest`` in a fresh process (wall time, MB/s and peak RSS measured from outside),
loaded by HTA where it finishes in time, and deleted.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES

_ID_KEYS = ("correlation", "External id", "external id")


def _events_and_header(source: Path) -> tuple[list[dict], dict]:
    raw = source.read_bytes()
    doc = orjson.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    events = doc.pop("traceEvents")
    return events, doc


def _replicas(events: list[dict], span: int, id_step: int) -> Iterator[bytes]:
    """The events of copy 0, 1, 2 ... as the text between ``[`` and ``]`` (no brackets).  The
    events are shifted in place, copy by copy, from their original values (no dict is copied:
    a 1 GB trace is written in seconds, not half a minute)."""
    stamped = [(e, e["ts"]) for e in events if isinstance(e.get("ts"), (int, float))]
    ids = [
        (args, k, args[k])
        for e in events
        if isinstance(args := e.get("args"), dict)
        for k in _ID_KEYS
        if isinstance(args.get(k), int) and args[k] > 0
    ]
    # flow arrows pair by id
    flows = [(e, e["id"]) for e in events if e.get("ph") in ("s", "f") and isinstance(e.get("id"), int)]
    copy = 0
    while True:
        for e, ts in stamped:
            e["ts"] = ts + copy * span
        for args, k, value in ids:
            args[k] = value + copy * id_step
        for e, value in flows:
            e["id"] = value + copy * id_step
        yield orjson.dumps(events)[1:-1]
        copy += 1


def write_trace(
    source: Path, target: Path, size: float = float("inf"), *, copies: int | None = None, gzip_it: bool = False
) -> tuple[int, int]:
    """About ``size`` bytes of JSON at ``target`` (gzipped when ``gzip_it``), or exactly
    ``copies`` copies of ``source``'s events when given; the JSON bytes written and the events
    in them."""
    events, header = _events_and_header(source)
    times = [(e["ts"], e.get("dur") or 0) for e in events if isinstance(e.get("ts"), (int, float))]
    span = int(max(t + d for t, d in times) - min(t for t, _ in times)) + 1000
    ids = [a[k] for e in events if isinstance(a := e.get("args"), dict) for k in _ID_KEYS if isinstance(a.get(k), int)]
    id_step = max([*ids, *(e["id"] for e in events if isinstance(e.get("id"), int))]) + 1
    head = orjson.dumps(header)[:-1] + b', "traceEvents": ['  # the events last, as Kineto writes them
    written = count = 0
    opener = gzip.open if gzip_it else open
    with opener(target, "wb") as out:  # type: ignore[operator]
        out.write(head)
        written += len(head)
        for copy, text in enumerate(_replicas(events, span, id_step)):
            if (copy >= copies) if copies is not None else written >= size:
                break
            out.write(b"," + text if copy else text)
            written += len(text) + (1 if copy else 0)
            count += len(events)
        out.write(b"]}")
    return written + 2, count


_UNLIMITED = (
    "import sys; from tracehouse.ingest import pipeline; pipeline.DEFAULT_MAX_TRACE_BYTES = 1 << 62; "
    "from tracehouse.api.cli import main; sys.argv[0] = 'tracehouse'; main()"
)
_MEASURE = """import resource, subprocess, sys, time
start = time.perf_counter()
try:
    done = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=float(sys.argv[1])).returncode == 0
except subprocess.TimeoutExpired:
    done = False
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done)
"""


def measured(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, float, bool]:
    """Wall seconds, peak RSS (MB) and success of ``argv`` run in a fresh process; the peak
    is the child's own (RUSAGE_CHILDREN of a watcher that ran nothing else)."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(timeout), *argv], capture_output=True, text=True, env=env, check=True
    )
    wall, rss_kb, done = out.stdout.split()
    return float(wall), int(rss_kb) / 1024, done == "True"


def generated_runs(
    source: Path,
    sizes_gb: list[float],
    *,
    gzip_it: bool,
    hta_timeout: float,
    hta_up_to: float,
    tracehouse: list[str],
    hta_script: str,
) -> None:
    print(f"{'size':>6} {'JSON MB':>8} {'events':>9} {'contender':12} {'wall s':>8} {'MB/s':>7} {'peak RSS MB':>11}")
    for gb in sizes_gb:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TRACEHOUSE_BENCH_DIR")) as tmp:
            work = Path(tmp)
            target = work / ("big.json.gz" if gzip_it else "big.json")
            json_bytes, events = write_trace(source, target, gb * 1e9, gzip_it=gzip_it)
            env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(work / "data")}
            db = f"sqlite:///{work / 'bench.sqlite3'}"
            subprocess.run([*tracehouse, "db", "upgrade", "--db", db], env=env, check=True, stdout=subprocess.DEVNULL)
            # `tracehouse ingest` applies the default 2 GiB trace limit (it reads no size setting):
            # past it, the same CLI is run with the limit lifted.
            command = tracehouse if json_bytes < DEFAULT_MAX_TRACE_BYTES else [sys.executable, "-c", _UNLIMITED]
            rows = [("tracehouse", measured([*command, "ingest", str(target), "--db", db], 3600, env))]
            shutil.rmtree(work / "data", ignore_errors=True)  # its raw copy: disk is short
            script = work / "hta_load.py"
            script.write_text(hta_script)
            if hta_timeout > 0 and gb <= hta_up_to:
                rows.append(("HTA", measured([sys.executable, str(script), str(target.resolve())], hta_timeout)))
            for label, (wall, rss, done) in rows:
                rate = f"{json_bytes / 1e6 / wall:7.1f}" if done else "      -"
                state = "" if done else f"  (did not finish in {wall:.0f} s)"
                print(
                    f"{gb:6.1f} {json_bytes / 1e6:8.0f} {events:9d} {label:12} {wall:8.2f} {rate} {rss:11.0f}{state}",
                    flush=True,
                )
