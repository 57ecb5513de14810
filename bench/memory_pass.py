"""What the memory-event pass (``ingest/kineto_memory.py``) adds to an ingest: best of
``--rounds`` ingests of each file into a fresh SQLite database, with the pass and with it
left out, interleaved so a slow stretch of the machine falls on both alike.

    python bench/memory_pass.py TRACE.json.gz [...] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tracehouse.ingest import pipeline
from tracehouse.schema.db import make_engine
from tracehouse.schema.migrate import upgrade


def _no_memory_rows(*_args: object, **_kwargs: object) -> None:
    return None


def ingest_seconds(path: Path, with_pass: bool) -> float:
    memory_rows = pipeline.memory_rows
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/store.sqlite3")
        upgrade(engine)
        if not with_pass:  # the ingest as it was before the pass: pipeline's one call left out
            pipeline.memory_rows = _no_memory_rows  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            pipeline.ingest_file(engine, path, raw_dir=Path(tmp) / "raw")
            return time.perf_counter() - start
        finally:
            pipeline.memory_rows = memory_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for path in args.traces:
        ingest_seconds(path, True)  # first calls (imports, polars plans) paid outside the rounds
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for with_pass in (False, True):
                best[with_pass] = min(best[with_pass], ingest_seconds(path, with_pass))
        print(f"{path.name}: without the pass {best[False]:.3f} s, with it {best[True]:.3f} s")


if __name__ == "__main__":
    main()
