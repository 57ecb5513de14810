"""The command line's early scan (``ingest/scan_ahead.py``): while ``tracehouse ingest`` imports
polars, a thread gunzips and scans its first file; the pipeline frames that scan instead of
reading the file again.  It must give exactly what the pipeline's own scan gives, be taken only
for the very file and limit it read, drop anything it cannot read (the pipeline's own read then
names the error), and import no polars."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from tests.conftest import DATA, Database, kineto_traces, require_shared
from tests.fixtures import run_cli
from tests.kineto_docs import assert_same_parse, count_pieces_read, event, write_doc
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, default_inflated_limit
from tracehouse.ingest import kineto, kineto_native, kineto_stream, scan_ahead
from tracehouse.ingest.jsonchunks import CONTENT_DIGESTS, ContentDigests

pytestmark = pytest.mark.skipif(not kineto_native.AVAILABLE, reason="the C scanner is not built")

LIMIT = default_inflated_limit(DEFAULT_MAX_TRACE_BYTES)  # what the command scans ahead with
SD = DATA / "sd_tiny_cpu_baseline.json.gz"


@pytest.fixture(autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    digests = len(CONTENT_DIGESTS)
    yield
    scan_ahead.discard()
    assert scan_ahead.held() is None
    assert not _threads()
    assert len(CONTENT_DIGESTS) == digests  # no digest request left behind


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tracehouse-scanahead"]


def _parse(path: Path, *, ahead: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[kineto.ParsedTrace, list[int]]:
    """The parse, with the early scan started first or not, and the pieces the pipeline read."""
    with monkeypatch.context() as m:
        read = count_pieces_read(m)
        if ahead:
            scan_ahead.start(path, LIMIT)
        parsed = kineto.parse_kineto(path, max_inflated_bytes=LIMIT)
    return parsed, read


@pytest.mark.parametrize("path", kineto_traces(), ids=lambda p: p.name)
def test_the_early_scan_parses_every_shared_trace_as_the_pipelines_own(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_shared()
    own, own_read = _parse(path, ahead=False, monkeypatch=monkeypatch)
    early, early_read = _parse(path, ahead=True, monkeypatch=monkeypatch)
    assert own_read and early_read == []  # taken: the pipeline read nothing itself
    assert_same_parse(early, own)
    assert scan_ahead.held() is None  # taken once, then let go


def test_the_early_scan_frames_and_digests_as_the_piece_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared()
    path = next(p for p in kineto_traces() if p.name == "a100_rank3_of8_training.json.gz")
    key = CONTENT_DIGESTS.want(path)
    try:
        with monkeypatch.context() as m:
            read = count_pieces_read(m)
            scan_ahead.start(path, LIMIT)
            early = kineto_stream.scan_file(path, LIMIT)
        digest = CONTENT_DIGESTS.take(key)
    finally:
        CONTENT_DIGESTS.take(key)
    assert read == []  # the early scan's tables were framed
    own = kineto_stream.scan_file(path, LIMIT, piece_bytes=1 << 20)  # its own pieces, never the early scan
    assert early is not None and own is not None
    assert (early.event_count, early.header_text) == (own.event_count, own.header_text)
    for kind in ("gpu", "launch", "range"):
        assert_frame_equal(early.frames[kind], own.frames[kind])
    assert digest == hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def _trace(folder: Path, *, gz: bool = True, events: int = 400) -> Path:
    rnd = random.Random(7)
    return write_doc(folder, {"traceEvents": [event(rnd, i) for i in range(events)]}, gz=gz)


def test_it_is_taken_only_for_the_same_file_and_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _trace(tmp_path)
    other = tmp_path / "other.json.gz"
    other.write_bytes(path.read_bytes())
    scan_ahead.start(path, LIMIT)
    assert scan_ahead.take(other, LIMIT) is None  # the same bytes, another file
    assert scan_ahead.take(path, LIMIT - 1) is None  # another limit
    assert kineto_stream.scan_file(path, LIMIT, piece_bytes=4096) is not None  # asked for its own pieces
    assert scan_ahead.held() is not None  # none of those took it
    assert scan_ahead.take(path, LIMIT) is not None
    assert scan_ahead.take(path, LIMIT) is None  # once
    scan_ahead.start(path, LIMIT)
    scan_ahead.held().thread.join()  # type: ignore[union-attr]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # replaced since it was read
    assert scan_ahead.take(path, LIMIT) is None


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "garbage after",
        "zero padding",
        "second member",
        "too many members",
        "past AHEAD_BYTES",
        "not gzip",
        "past the limit",
    ],
)
def test_what_it_cannot_read_whole_is_dropped_and_the_pipeline_decides(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _trace(tmp_path)
    data = path.read_bytes()
    limit = LIMIT
    if damage == "truncated":
        path.write_bytes(data[:-9])
    elif damage == "garbage after":
        path.write_bytes(data + b"garbage")
    elif damage == "zero padding":
        path.write_bytes(data + bytes(64))
    elif damage == "second member":  # whole members back to back: read, and equal
        text = gzip.decompress(data)
        path.write_bytes(gzip.compress(text[:1000]) + gzip.compress(text[1000:]))
    elif damage == "too many members":  # each member copies the rest: dropped past MAX_MEMBERS
        text = gzip.decompress(data)
        cut = len(text) // (scan_ahead.MAX_MEMBERS + 1) + 1
        path.write_bytes(b"".join(gzip.compress(text[i : i + cut]) for i in range(0, len(text), cut)))
    elif damage == "past AHEAD_BYTES":
        monkeypatch.setattr(scan_ahead, "AHEAD_BYTES", len(gzip.decompress(data)) - 1)
    elif damage == "not gzip":
        path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    elif damage == "past the limit":
        limit = len(gzip.decompress(data)) - 1
    scan_ahead.start(path, limit)
    held = scan_ahead.held()
    if held is not None:
        held.thread.join()
    taken = held is not None and held.scanned is not None
    assert taken == (damage == "second member"), damage
    ahead, ahead_error = _parse_or_error(path, limit)
    scan_ahead.discard()
    own, own_error = _parse_or_error(path, limit)
    assert ahead_error == own_error
    if own is not None:
        assert ahead is not None
        assert_same_parse(ahead, own)


def _parse_or_error(path: Path, limit: int) -> tuple[kineto.ParsedTrace | None, str | None]:
    try:
        return kineto.parse_kineto(path, max_inflated_bytes=limit), None
    except Exception as exc:  # noqa: BLE001  the error, as the pipeline would report it
        return None, f"{type(exc).__name__}: {exc}"


def test_a_file_changed_while_it_is_read_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _trace(tmp_path)
    real_scan = scan_ahead.PieceScan

    def touched(*args: object) -> object:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        return real_scan(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_ahead, "PieceScan", touched)
    scan_ahead.start(path, LIMIT)
    held = scan_ahead.held()
    assert held is not None
    held.thread.join()
    assert held.scanned is None


def test_a_fifo_put_in_the_files_place_does_not_block(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    key = ContentDigests.key(path.stat())
    path.unlink()
    os.mkfifo(path)
    ahead = scan_ahead.Ahead(path, key, LIMIT)  # as if ``start`` had looked at the regular file
    ahead.thread.start()
    ahead.thread.join(timeout=10)
    assert not ahead.thread.is_alive() and ahead.scanned is None
    scan_ahead.start(path, LIMIT)  # and a FIFO itself starts nothing
    assert scan_ahead.held() is None


def test_folders_missing_and_other_files_start_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "counters.csv"
    csv.write_text('"ID","Kernel Name"\n')
    (tmp_path / "plain").mkdir()
    plain = _trace(tmp_path / "plain", gz=False)
    for path in (tmp_path, tmp_path / "missing.json"):
        scan_ahead.start(path, LIMIT)
        assert scan_ahead.held() is None, path
    scan_ahead.start(csv, LIMIT)  # sniffed on the thread: dropped there
    assert scan_ahead.take(csv, LIMIT) is None
    scan_ahead.start(plain, LIMIT)  # plain JSON is scanned too
    assert scan_ahead.take(plain, LIMIT) is not None


def test_the_command_takes_it_and_its_digest_finds_the_same_content_again(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = count_pieces_read(monkeypatch)
    out = run_cli("ingest", str(SD), "--db", db.url, "--json")
    assert out.returncode == 0 and '"created":true' in out.stdout, out.stderr
    assert read == []  # the pipeline framed the early scan
    monkeypatch.setattr(scan_ahead, "start", lambda *_: None)  # the same file, read by the pipeline
    copy = tmp_path / "again.json.gz"
    copy.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()), compresslevel=1))  # other bytes, same content
    again = run_cli("ingest", str(copy), "--db", db.url, "--json")
    assert again.returncode == 0 and '"created":false' in again.stdout, again.stderr  # same content digest
    assert read


def test_the_command_lets_go_of_it_whatever_happens(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    digests = len(CONTENT_DIGESTS)
    held: list[object] = []
    real_discard = scan_ahead.discard

    def watched() -> None:
        held.append(scan_ahead.held())
        real_discard()

    monkeypatch.setattr(scan_ahead, "discard", watched)
    assert run_cli("ingest", str(SD), "--db", db.url).returncode == 0
    before = len(held)
    duplicate = run_cli("ingest", str(SD), str(DATA / "sd_tiny_cpu_flash.json.gz"), "--db", db.url)
    assert duplicate.returncode == 0 and "duplicate of run 1" in duplicate.stdout, duplicate.stderr
    # The duplicate's scan was never taken: let go once the first unit landed, not at the end
    # (calls: start's own, after the first unit, after the second, on the way out).
    assert [h is not None for h in held[before:]] == [False, True, False, False]
    bad_meta = run_cli("ingest", str(SD), "--meta", "novalue", "--db", db.url)
    assert bad_meta.returncode == 2 and "--meta" in bad_meta.stderr
    assert scan_ahead.held() is None and not _threads() and len(CONTENT_DIGESTS) == digests


def test_the_early_scan_imports_no_polars() -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from tracehouse.ingest import scan_ahead\n"
        f"scan_ahead.start(Path({str(SD)!r}), {LIMIT})\n"
        f"assert scan_ahead.take(Path({str(SD)!r}), {LIMIT}) is not None\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'polars'" not in out.stdout and "'numpy'" not in out.stdout


def test_content_digests_are_kept_by_the_key_the_file_was_read_under(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    key = CONTENT_DIGESTS.want(path)
    CONTENT_DIGESTS.keep_key(ContentDigests.key(path.stat()), "d")
    assert CONTENT_DIGESTS.take(key) == "d"
    CONTENT_DIGESTS.keep_key(key, "e")  # no longer wanted: not kept
    assert CONTENT_DIGESTS.take(key) is None
