"""A big trace's memory events, spilled to parts and read back by rank
(``kineto_memory_spill``): every stretch of the time order is what ``in_time_order`` gives the
whole trace's events, whatever the parts, with ties on time broken by file order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from tests.kineto_docs import write_doc
from tracehouse.core.limits import INFLATED_CEILING
from tracehouse.ingest import kineto_memory, kineto_memory_spill
from tracehouse.ingest.kineto_memory import in_time_order, read_memory_events
from tracehouse.ingest.kineto_memory_spill import spill_memory

EVENTS = 41
BASE_NS = 1_700_000_000_000


def _memory(n: int, ts: float, args: dict) -> dict:
    return {"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": "[memory]", "pid": 1, "tid": n % 3, "ts": ts,
            "args": args}  # fmt: skip


def _trace_with_ties(tmp_path: Path) -> Path:
    """Memory events at five times only, in shuffled order (every time shared by about eight,
    none in time order in the file), one unreadable among them, and a kernel and an op."""
    rng = random.Random(11)
    events = [
        _memory(n, rng.choice([10.0, 10.5, 11.0, 12.25, 13.0]), {"Device Type": 1, "Bytes": n + 1, "Addr": n})
        for n in range(EVENTS)
    ]
    events.insert(17, _memory(99, 10.5, {"Bytes": "not a number"}))
    events += [
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 0, "ts": 9.0, "dur": 5.0},
        {"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 10.0, "dur": 1.0},
    ]
    return write_doc(tmp_path, {"profile_memory": 1, "baseTimeNanoseconds": BASE_NS, "traceEvents": events})


@pytest.mark.parametrize(
    ("part_events", "chunk_bytes"),
    [(3, 1 << 19), (8, 600), (1000, 600), (1000, 1 << 19)],
    ids=["parts-of-3", "parts-of-8-many-chunks", "one-part-many-chunks", "one-part-one-chunk"],
)
def test_every_stretch_of_the_time_order_reads_back_as_the_whole_traces(
    part_events: int, chunk_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _trace_with_ties(tmp_path)
    whole, unreadable = read_memory_events(path)  # the whole trace's, read in one chunk
    expected = in_time_order(whole)
    assert (expected.height, unreadable) == (EVENTS, 1)
    assert expected["ts_ns"].n_unique() == 5
    monkeypatch.setattr(kineto_memory_spill, "PART_EVENTS", part_events)
    monkeypatch.setattr(kineto_memory, "CHUNK_BYTES", chunk_bytes)  # numbered across chunks too
    frames = len(list(kineto_memory.MemoryChunks(path)))
    assert frames == 1 if chunk_bytes > len(path.read_bytes()) else frames > 4
    spilled = spill_memory(path, INFLATED_CEILING, tmp_path / "spill")
    assert len(spilled.parts) == -(-EVENTS // part_events)
    assert (spilled.times + BASE_NS).to_list() == expected["ts_ns"].to_list()
    for start in range(EVENTS):
        for size in (1, 3, EVENTS):
            end = min(start + size, EVENTS)
            assert_frame_equal(spilled.ranked(start, end), expected.slice(start, end - start))
    spilled.remove()
    assert not (tmp_path / "spill").exists()


def test_a_trace_the_pass_trips_on_spills_nothing(tmp_path: Path) -> None:
    """As ``read_memory_events``: the kernel path reads such a trace; the memory pass adds none."""
    text = _trace_with_ties(tmp_path).read_bytes()
    broken = tmp_path / "broken.json"
    broken.write_bytes(text[: len(text) // 2])  # cut inside the events array
    assert read_memory_events(broken)[0].is_empty()
    spilled = spill_memory(broken, INFLATED_CEILING, tmp_path / "spill")
    assert spilled.parts == [] and spilled.times.is_empty()
