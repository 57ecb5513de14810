"""The memory timeline and the live-at-peak breakdown, from the profiler's ``[memory]`` events
of a trace our collector recorded (Diffusion-LM, tiny, CPU), checked against the raw JSON read
here on its own; CLI == REST == Python (the client's half is in test_client)."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import DATA, Database
from tests.fixtures import run_cli
from tests.test_suite import _rest
from tracehouse.analyses.memory_peak import memory_peak
from tracehouse.analyses.memory_timeline import BEFORE_TRACE, memory_peak_live, memory_timeline
from tracehouse.core.errors import BadInput
from tracehouse.ingest.kineto_memory import read_memory_events, records_memory
from tracehouse.ingest.load import delete_run
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope

TRACE = DATA / "memory" / "dlm_tiny_cpu_baseline.json.gz"
NO_MEMORY = DATA / "sd_tiny_cpu_baseline.json.gz"  # recorded when the collector dropped the events


def _raw_memory(path: Path) -> tuple[list[dict], int]:
    """The trace's ``[memory]`` events in time order (file order on ties), numbers exact, and
    the base ns; read with the standard library, not with anything ingest uses."""
    doc = json.loads(gzip.decompress(path.read_bytes()), parse_float=Decimal)
    events = [e for e in doc["traceEvents"] if e.get("name") == "[memory]"]
    order = sorted(range(len(events)), key=lambda i: (Decimal(events[i]["ts"]), i))
    return [events[i] for i in order], int(doc.get("baseTimeNanoseconds", 0))


def _cli(db: Database, *args: str) -> object:
    shown = run_cli(*args, "--format", "json", "--db", db.url)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_stored_events_are_the_traces_exactly(db: Database, raw_dir: Path) -> None:
    raw, base = _raw_memory(TRACE)
    run = ingest_file(db.engine, TRACE, raw_dir=raw_dir).run_id
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT ts_ns, bytes, total_allocated, total_reserved, addr, device_type, device_id"
                " FROM memory_event WHERE run_id = :r ORDER BY seq"
            ),
            {"r": run},
        ).all()
    assert len(rows) == len(raw) > 1000
    for row, e in zip(rows, raw, strict=True):
        a = e["args"]
        ns = base + int(Decimal(e["ts"]) * 1000)  # µs with three decimals: exact ns
        expected = (
            ns,
            a["Bytes"],
            a["Total Allocated"],
            a["Total Reserved"],
            a["Addr"],
            a["Device Type"],
            a["Device Id"],
        )
        assert tuple(row) == expected
    # The deltas' running sum is the allocator's total after every event.
    total = rows[0][2] - rows[0][1]
    for _, delta, allocated, *_ in rows:
        total += delta
        assert total == allocated
    # Each event's component is the innermost ``comp=`` annotation around it on its thread.
    doc = json.loads(gzip.decompress(TRACE.read_bytes()), parse_float=Decimal)
    spans = [
        (e["tid"], Decimal(e["ts"]), Decimal(e["ts"]) + Decimal(e["dur"]), part.split("=", 1)[1])
        for e in doc["traceEvents"]
        if e.get("cat") == "user_annotation" and e.get("ph") == "X"
        for part in e["name"].split("|")[1:]
        if part.startswith("comp=")
    ]
    with db.engine.connect() as conn:
        stored = [
            c
            for (c,) in conn.execute(
                text("SELECT component FROM memory_event WHERE run_id = :r ORDER BY seq"), {"r": run}
            )
        ]
    expected = []
    for e in raw:
        around = [sp for sp in spans if sp[0] == e["tid"] and sp[1] <= Decimal(e["ts"]) < sp[2]]
        expected.append(max(around, key=lambda sp: sp[1])[3] if around else None)
    assert stored == expected and {"transformer", None} == set(expected)
    with session_scope(db.engine) as s:  # the rows go with their run
        delete_run(s, run)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM memory_event")).scalar() == 0


def test_timeline_keeps_the_peak_and_the_breakdown_sums_to_it(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    raw, base = _raw_memory(TRACE)
    peak = max(e["args"]["Total Allocated"] for e in raw)
    run = ingest_file(db.engine, TRACE, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        timelines = {n: memory_timeline(s, run, n) for n in (1, 7, 50, 5000)}
        live = memory_peak_live(s, run)
        estimate = memory_peak(s, run)
        python = {
            "timeline": json.loads(json.dumps(memory_timeline(s, run, 50, "cpu").to_dicts())),
            "live": json.loads(json.dumps(live.to_dicts())),
            "peak": json.loads(json.dumps(estimate.to_dicts())),
        }
        with pytest.raises(BadInput, match="no memory events on device 'cuda:0'"):
            memory_timeline(s, run, device="cuda:0")
    for n, frame in timelines.items():
        assert frame["device"].unique().to_list() == ["cpu"]
        assert frame.height <= n and frame["allocated_bytes"].max() == peak, n
        assert frame["events"].sum() == len(raw)
        assert frame["bucket"].is_sorted() and frame["start_ns"].is_sorted()
    assert timelines[1]["allocated_end_bytes"].item() == raw[-1]["args"]["Total Allocated"]
    # What was live at the peak, replayed here: allocations by address up to the first event at the peak.
    at = next(i for i, e in enumerate(raw) if e["args"]["Total Allocated"] == peak)
    held: dict[int, int] = {}
    for e in raw[: at + 1]:
        a = e["args"]
        if a["Bytes"] > 0:
            held[a["Addr"]] = a["Bytes"]
        else:
            held.pop(a["Addr"], None)
    assert live["peak_bytes"].unique().to_list() == [peak]
    assert live["peak_ns"].unique().to_list() == [base + int(Decimal(raw[at]["ts"]) * 1000)]
    assert live["live_bytes"].sum() == peak == sum(held.values())  # the CPU counter starts at zero: no before-trace row
    assert BEFORE_TRACE not in live["component"].to_list()
    assert live.filter(live["allocations"].is_not_null())["allocations"].sum() == len(held)
    assert abs(live["share"].sum() - 1) < 1e-12
    assert "transformer" in live["component"].to_list()
    manifest = json.loads(TRACE.with_name("dlm_tiny_cpu_baseline.manifest.json").read_text())
    assert live["estimated_weight_bytes"].unique().to_list() == [manifest["param_count"] * 4]  # fp32
    # The measured peaks are the collector's own (it read the same events before writing the trace).
    measured = {r["component"]: r["measured_peak_bytes"] for r in estimate.to_dicts()}
    assert measured[None] == peak == int(manifest["tags"]["peak_activation_bytes"])
    assert measured["transformer"] == int(manifest["tags"]["peak_activation_bytes.transformer"])
    # CLI == REST == Python.
    assert _cli(db, "memory-timeline", str(run), "--points", "50", "--device", "cpu") == python["timeline"]
    assert _cli(db, "memory-peak", str(run), "--live") == python["live"]
    assert _cli(db, "memory-peak", str(run)) == python["peak"]
    assert _rest(db, tmp_path, f"/v1/runs/{run}/memory-timeline", {"points": 50, "device": "cpu"}) == python["timeline"]
    assert _rest(db, tmp_path, f"/v1/runs/{run}/memory-peak/live", {}) == python["live"]


def test_a_run_without_memory_events_answers_empty(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    # Its header says memory was recorded, but the collector of the day dropped the events.
    assert records_memory(NO_MEMORY) and not records_memory(Path(__file__).parent / "data" / "kernel_classes.csv")
    run = ingest_file(db.engine, NO_MEMORY, raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        timeline, live = memory_timeline(s, run), memory_peak_live(s, run, "cpu")
        measured = memory_peak(s, run)["measured_peak_bytes"]
    assert timeline.is_empty() and live.is_empty() and "allocated_bytes" in timeline.columns
    assert measured.null_count() == measured.len()
    assert _rest(db, tmp_path, f"/v1/runs/{run}/memory-timeline", {}) == []
    assert _cli(db, "memory-peak", str(run), "--live") == []


def test_events_whose_first_hundreds_lack_a_field_are_all_read(tmp_path: Path) -> None:
    """The allocator leaves out what it does not know (an address, the reserved total): the first
    300 events of the Diffusion-LM trace without them, the rest with, are read whole."""
    doc = json.loads(gzip.decompress(TRACE.read_bytes()))
    memory = [e for e in doc["traceEvents"] if e.get("name") == "[memory]"]
    for event in memory[:300]:
        del event["args"]["Addr"], event["args"]["Total Reserved"]
    path = tmp_path / "fields.json"
    path.write_text(json.dumps(doc))
    events, unreadable = read_memory_events(path)
    assert (events.height, unreadable) == (len(memory), 0) and len(memory) > 300
    assert events["addr"].null_count() == events["total_reserved"].null_count() == 300
