"""Bad input gets a one-line error (CLI exit 2) and leaves the database exactly as it was;
where the rest of the trace is sound, a warning count is stored with the trace instead."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import DATA, Database
from tests.fixtures import CliResult, run_cli
from tracehouse.core.errors import BadTrace, TooLarge
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.writer import Writer
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import ALL_TABLES, Trace

SOUND = DATA / "sd_tiny_cpu_baseline.json.gz"


def _sound_trace() -> dict:
    return json.loads(gzip.decompress(SOUND.read_bytes()))


def _row_counts(db: Database) -> dict[str, int]:
    with session_scope(db.engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in ALL_TABLES}


def _cli(*args: str) -> CliResult:
    return run_cli(*args)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    raw = SOUND.read_bytes()
    no_events = {"traceEvents": [e for e in _sound_trace()["traceEvents"] if e.get("ph") == "M"]}
    cases = {
        "truncated gzip": (raw[: len(raw) // 2], "truncated or corrupt gzip"),
        "invalid json": (b'{"traceEvents": [{"ph": "X", "cat": "kernel"', "not valid JSON"),
        "json not a trace": (b'{"hello": "world"}', "not a PyTorch Profiler trace"),
        "wrong field type": (b'{"traceEvents": [{"ph": "X", "ts": 1, "dur": "soon"}]}', "not a PyTorch Profiler trace"),
        "not json at all": (b"\x00\x01binary", "unrecognized trace format"),
        "no kernels and no ops": (json.dumps(no_events).encode(), "no GPU kernels and no CPU ops"),
    }
    out = {}
    for label, (content, message) in cases.items():
        path = tmp / (label.replace(" ", "_") + ".json")
        path.write_bytes(content)
        out[label] = (path, message)
    return out


@pytest.mark.parametrize(
    "label",
    [
        "truncated gzip",
        "invalid json",
        "json not a trace",
        "wrong field type",
        "not json at all",
        "no kernels and no ops",
    ],
)
def test_bad_file_is_rejected_and_nothing_written(db: Database, tmp_path: Path, label: str) -> None:
    assert ingest_file(db.engine, SOUND, raw_dir=tmp_path / "raw").created  # something to protect
    before = _row_counts(db)
    path, message = _bad_files(tmp_path)[label]
    with pytest.raises(BadTrace, match=message):
        ingest_file(db.engine, path, raw_dir=tmp_path / "raw")
    assert _row_counts(db) == before
    result = _cli("ingest", str(path), "--db", db.url)
    assert result.returncode == 2
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("error: ") and message in error_lines[0]
    assert _row_counts(db) == before


def test_too_large_is_rejected(db: Database, tmp_path: Path) -> None:
    with pytest.raises(TooLarge, match="exceeds"):
        ingest_file(db.engine, SOUND, raw_dir=tmp_path / "raw", max_bytes=1000)
    assert _row_counts(db)["run"] == 0


def test_failure_mid_load_rolls_back_everything(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection after kernels are written: the run, trace, symbols and raw file all go."""
    real = Writer.insert_kernels

    def insert_then_fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(Writer, "insert_kernels", insert_then_fail)
    before = _row_counts(db)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_file(db.engine, SOUND, raw_dir=tmp_path / "raw")
    assert _row_counts(db) == before
    assert not list((tmp_path / "raw").rglob("*.json.gz"))


def _mutated(tmp: Path, name: str, mutate) -> Path:  # type: ignore[no-untyped-def]
    trace = _sound_trace()
    mutate(trace["traceEvents"])
    path = tmp / name
    path.write_bytes(gzip.compress(json.dumps(trace).encode()))
    return path


def _ops(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("cat") == "cpu_op" and e.get("ph") == "X"]


def test_negative_and_missing_durations_are_counted(db: Database, tmp_path: Path) -> None:
    def mutate(events: list[dict]) -> None:
        ops = _ops(events)
        ops[0]["dur"] = -5
        del ops[1]["dur"]

    result = ingest_file(db.engine, _mutated(tmp_path, "neg.json.gz", mutate), raw_dir=tmp_path / "raw")
    assert result.warnings == {"missing_or_negative_duration": 2}
    with session_scope(db.engine) as s:
        trace = s.scalars(select(Trace)).one()
        assert trace.warning_count == 2 and "missing_or_negative_duration" in trace.warnings


def test_non_utf8_names_are_replaced_and_counted(db: Database, tmp_path: Path) -> None:
    raw = gzip.decompress(SOUND.read_bytes()).replace(b'"aten::linear"', b'"aten::lin\xffear"', 3)
    path = tmp_path / "latin.json.gz"
    path.write_bytes(gzip.compress(raw))
    result = ingest_file(db.engine, path, raw_dir=tmp_path / "raw")
    assert result.created and result.warnings["non_utf8_bytes"] == 3


def test_integers_above_int64_are_counted(db: Database, tmp_path: Path) -> None:
    def mutate(events: list[dict]) -> None:
        for op in _ops(events)[:4]:
            op["pid"] = 2**70

    result = ingest_file(db.engine, _mutated(tmp_path, "big.json.gz", mutate), raw_dir=tmp_path / "raw")
    assert result.warnings == {"integer_out_of_range": 4}


def test_a_profiler_step_number_past_int64_is_no_step(db: Database, tmp_path: Path) -> None:
    def mutate(events: list[dict]) -> None:
        ops = _ops(events)
        first, last = min(e["ts"] for e in ops), max(e["ts"] + e["dur"] for e in ops)
        events.append(
            {
                "ph": "X",
                "cat": "user_annotation",
                "name": "ProfilerStep#" + "9" * 25,
                "pid": ops[0]["pid"],
                "tid": ops[0]["tid"],
                "ts": first - 1,
                "dur": last - first + 2,
            }
        )

    result = ingest_file(db.engine, _mutated(tmp_path, "step.json.gz", mutate), raw_dir=tmp_path / "raw")
    assert result.created and result.kernel_count > 0


def test_concurrent_ingests_of_one_file_make_one_run(db: Database, tmp_path: Path) -> None:
    """Two processes ingesting the same bytes at once: the loser of the race on the trace's
    sha256 returns the winner's run instead of failing or duplicating it."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: ingest_file(db.engine, SOUND, raw_dir=tmp_path / "raw"), range(4)))
    assert len({r.run_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert _row_counts(db)["run"] == 1
