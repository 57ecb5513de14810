"""Seeds for the scanner fuzzer: small slices of the shared Kineto traces (a few events of
each kind, with a trimmed header), a few documents built to fool a scanner, and the shapes it
must decline.  Deterministic; written to a folder, never committed.

    python -m tests.fuzz.seeds DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import orjson

from tests.conftest import KINETO_DIR
from tests.kineto_docs import documents, serialise
from tracehouse.ingest import kineto

# A checkout beside ../shared finds the traces there; elsewhere the variable may name them.
TRACES = Path(os.environ.get("TRACEHOUSE_TEST_KINETO_DIR", KINETO_DIR))
HEADER_KEYS = ("schemaVersion", "distributedInfo", "baseTimeNanoseconds", "displayTimeUnit", "record_shapes")
SLICES_PER_TRACE = 8
WINDOW = 10
MAX_BYTES = 12_000  # the fuzzer's inputs stay under 16 KiB


def _header(doc: object) -> dict:
    if not isinstance(doc, dict):
        return {}
    header = {k: doc[k] for k in HEADER_KEYS if k in doc}
    if isinstance(header.get("distributedInfo"), dict):  # its rank lists run to 10 KB
        header["distributedInfo"] = {k: v for k, v in header["distributedInfo"].items() if not isinstance(v, list)}
    if doc.get("deviceProperties"):
        header["deviceProperties"] = doc["deviceProperties"][:1]
    return header


def _one_of_each(events: list[dict], rnd: random.Random) -> list[dict]:
    """One event of each (ph, cat), in document order."""
    by_kind: dict[tuple, list[int]] = {}
    for i, ev in enumerate(events):
        by_kind.setdefault((ev.get("ph"), ev.get("cat")), []).append(i)
    return [events[i] for i in sorted(rnd.choice(idx) for idx in by_kind.values())]


def trace_slices(path: Path) -> list[bytes]:
    doc = orjson.loads(kineto.read_bytes(path))
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    rnd = random.Random(path.name)
    header, out = _header(doc), []
    for n in range(SLICES_PER_TRACE):
        start = rnd.randrange(max(1, len(events) - WINDOW))
        picked = _one_of_each(events, rnd) if n % 2 else events[start : start + WINDOW]
        style = ("indented", "compact")[n % 2]
        data = b""
        while picked and len(data := _doc(header, picked, n, style)) > MAX_BYTES:
            picked = picked[:-1]
        if picked:
            out.append(data)
    return out


def _doc(header: dict, events: list[dict], n: int, style: str) -> bytes:
    """Every fourth slice is a bare events array, as old traces are."""
    return serialise({**header, "traceEvents": events} if n % 4 != 3 else events, style)


def built_documents() -> list[bytes]:
    """The test suite's documents built to fool a scanner, cut to a fuzzable size."""
    out = []
    for _label, whole in documents():
        if isinstance(whole, dict):
            doc = {**whole, "traceEvents": whole["traceEvents"][:12]}
        else:
            doc = whole[:12]
        out.append(serialise(doc, "plain"))
    out.append(
        json.dumps(
            {
                "traceEvents": [
                    {
                        "ph": "X",
                        "cat": "kernel",
                        "name": "k\\u00e9\\ud83d\\ude00",
                        "pid": "3",
                        "tid": "x",
                        "ts": 1,
                        "dur": 2,
                        "args": {"stream": "0x1f", "grid": "[1, 2, 3]", "correlation": 4},
                    }
                ]
            },
            ensure_ascii=False,
        ).encode()
    )
    return out


def all_seeds() -> list[bytes]:
    seeds = built_documents()
    for path in sorted(TRACES.glob("*.json.gz")):
        seeds.extend(trace_slices(path))
    return seeds


def write(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = all_seeds()
    for data in seeds:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds)


if __name__ == "__main__":
    print(f"seeds: {write(Path(sys.argv[1]))} written to {sys.argv[1]}")
