"""Uploads are untrusted bytes (issue 12): a file name is metadata, never a path; nothing is
spooled before the token and the size are checked; a gzip bomb is refused while it inflates;
the event loop keeps answering while a big upload is checked.  Real uvicorn servers on
localhost, raw sockets where the test needs to see what the server does before the body ends."""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import DATA, Database
from tests.fixtures import TIGHT_LIMIT, Server, assert_error
from tracehouse.core.errors import TooLarge
from tracehouse.ingest import kineto
from tracehouse.ingest.jsonchunks import file_pieces
from tracehouse.ingest.nsys import parse_nsys
from tracehouse.ingest.piece_ring import read_pieces
from tracehouse.ingest.pipeline import gzip_content_sha256, ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Kernel, Run, Symbol, Trace

SD = DATA / "sd_tiny_cpu_baseline.json.gz"
BOMB_ZEROS = 3 << 30
BOUNDARY = b"th-test-boundary"


# ---- helpers -------------------------------------------------------------------------------


def nsys_export(path: Path, kernel: str) -> Path:
    """A minimal Nsight Systems export with one kernel named ``kernel`` and its launch."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT, "end" INT, deviceId INT, streamId INT,
            correlationId INT, globalPid INT, shortName INT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INT, "end" INT, globalTid INT,
            correlationId INT, nameId INT);
    """)
    con.executemany("INSERT INTO StringIds VALUES (?, ?)", [(1, kernel), (2, "cudaLaunchKernel_v7000")])
    pid = (1 << 48) | (100 << 24)
    con.execute("INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (1000, 1500, 0, 7, 1, ?, 1)", (pid,))
    con.execute("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (900, 950, ?, 1, 2)", (pid | 101,))
    con.commit()
    con.close()
    return path


def form(filename: bytes, fields: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    """The multipart text before and after a file part's bytes (fields go first)."""
    head = b""
    for name, value in (fields or {}).items():
        head += (
            b"--"
            + BOUNDARY
            + b'\r\nContent-Disposition: form-data; name="'
            + name.encode()
            + b'"\r\n\r\n'
            + value.encode()
            + b"\r\n"
        )
    head += (
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    return head, b"\r\n--" + BOUNDARY + b"--\r\n"


def post_form(
    srv: Server,
    filename: bytes,
    data: bytes,
    token: dict | None,
    wait: float = 30,
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    head, tail = form(filename, fields)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}", **(token or {})}
    return httpx.post(
        f"{srv.url}/v1/traces", params={"wait": wait}, content=head + data + tail, headers=headers, timeout=120
    )


def tree_bytes(*folders: Path) -> int:
    return sum(p.stat().st_size for f in folders if f.exists() for p in f.rglob("*") if p.is_file())


def unlinked_bytes(pid: int, *folders: Path) -> int:
    """Bytes in files ``pid`` holds open under ``folders`` with no name left (O_TMPFILE, or
    unlinked while open): what a directory listing cannot see."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            # SQLite's own scratch files (etilqs_*) are the job's database work, not the upload.
            if (
                target.endswith(" (deleted)")
                and "/etilqs_" not in target
                and any(target.startswith(str(f)) for f in folders)
            ):
                total += fd.stat().st_size
        except OSError:  # closed meanwhile
            pass
    return total


class DiskWatch:
    """The most bytes seen under ``folders`` while the ``with`` block runs (sampled every 5 ms),
    counting the files the server process holds there without a name."""

    def __init__(self, srv: Server, *folders: Path) -> None:
        self.pid = srv.proc.pid  # type: ignore[union-attr]
        self.folders, self.peak, self._stop = folders, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(FileNotFoundError):  # a file removed between listing and stat
                self.peak = max(self.peak, tree_bytes(*self.folders) + unlinked_bytes(self.pid, *self.folders))
            time.sleep(0.005)

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class RawUpload:
    """A POST over a raw socket: headers at once, the body from a thread, while the caller
    waits for the answer, so it sees an answer the server gives before the body has ended."""

    def __init__(self, port: int, headers: dict[str, str], body: Iterator[bytes]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        lines = [b"POST /v1/traces HTTP/1.1", b"Host: 127.0.0.1"] + [f"{k}: {v}".encode() for k, v in headers.items()]
        self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        self.sent, self.answered = 0, threading.Event()
        self._thread = threading.Thread(target=self._send, args=(body,), daemon=True)
        self._thread.start()

    def _send(self, body: Iterator[bytes]) -> None:
        try:
            for chunk in body:
                if self.answered.is_set():
                    return
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:  # the server answered and closed: what an early refusal looks like
            pass

    def answer(self, timeout: float) -> tuple[int, bytes, int]:
        """Status, body, and the body bytes sent when the answer came."""
        self.sock.settimeout(timeout)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
                piece = self.sock.recv(65536)
                if not piece:
                    break
                data += piece
        finally:
            self.answered.set()
            sent = self.sent
            self._thread.join(timeout=30)
            self.sock.close()
        return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1], sent


def _length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def zeros(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = bytes(chunk)
    for _ in range(total // chunk):
        yield block


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


def kernel_names(db: Database, run_id: int) -> list[str]:
    with session_scope(db.engine) as s:
        return list(
            s.scalars(select(Symbol.text).join(Kernel, Kernel.name_id == Symbol.id).where(Kernel.run_id == run_id))
        )


def count(db: Database, table: type) -> int:
    with session_scope(db.engine) as s:
        return s.scalar(select(func.count()).select_from(table))


def zeros_gzip(path: Path, total: int) -> Path:
    """``total`` bytes of zeros (a whole number of MiB), gzipped.  Deflating 3 GiB took
    10-40 s; instead one MiB is deflated and ended with a full flush, which resets the
    compressor, so the same bytes are a valid continuation after themselves and are written
    ``total`` / 1 MiB times.  The gzip trailer (CRC-32 and length) is computed here."""
    block = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: header and trailer are ours
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH) == piece  # repeatable
    crc = 0
    for _ in range(total // len(block)):
        crc = zlib.crc32(block, crc)
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip, deflate, no name, no mtime
        for _ in range(total // len(block)):
            out.write(piece)
        out.write(zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))  # the final empty block
        out.write(struct.pack("<II", crc, total & 0xFFFFFFFF))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """3 GiB of zeros, gzipped (about 3 MB)."""
    return zeros_gzip(tmp_path_factory.mktemp("bomb") / "bomb.json.gz", BOMB_ZEROS)


def test_the_bomb_construction_is_zeros_in_a_valid_gzip(tmp_path: Path, bomb: Path) -> None:
    # The same construction, small enough to inflate here (gzip checks CRC and length).
    small = zeros_gzip(tmp_path / "small.gz", 24 << 20)
    assert gzip.decompress(small.read_bytes()) == bytes(24 << 20)
    # The bomb is that construction at 3 GiB: the same piece 3,072 times.
    assert bomb.stat().st_size - 18 - 2 == (small.stat().st_size - 18 - 2) // 24 * 3072


# ---- 1. a file name is metadata, never a path -----------------------------------------------


@pytest.mark.parametrize(
    "name", ["run#1.sqlite", "run%231.sqlite", "x.db?mode=rwc&x=", "..%2fother.sqlite", "%3f%23.sqlite"]
)
def test_nsys_reads_the_file_by_its_real_path(tmp_path: Path, name: str) -> None:
    # Siblings the URI-decoded name would point at, each with a kernel of its own.
    for sibling in ("run#1.sqlite", "run", "other.sqlite", "?#.sqlite"):
        if sibling != name:
            nsys_export(tmp_path / sibling, f"sibling {sibling}")
    (tmp_path / "sub").mkdir()
    path = nsys_export(tmp_path / "sub" / name if name.startswith("..") else tmp_path / name, "the file itself")
    assert parse_nsys(path).gpu_events["name"].to_list() == ["the file itself"]
    assert not (tmp_path / "x.db").exists()  # mode=rwc in a name would have created it


def test_upload_names_never_reach_the_file_system(tight: tuple[Server, Path]) -> None:
    """Names that URI-decode to a foreign file, to a file-creating query, or hold # and %:
    each upload ingests its own bytes, keeps its name as metadata, and creates nothing."""
    srv, tmp = tight
    write = srv.token("write")
    # data/uploads/<folder>/ is three levels below tmp: what ../../../foreign.sqlite reaches.
    nsys_export(tmp / "foreign.sqlite", "foreign kernel")
    names = [
        "..%2f..%2f..%2fforeign.sqlite",
        "run#1.sqlite",
        "run%231.sqlite",
        "x.db?mode=rwc&x=",
        "..%2f..%2f..%2fPWNED.db?mode=rwc&x=",
        "..%2f..%2f..%2fetc%2fpasswd",
    ]
    for i, name in enumerate(names):
        export = nsys_export(tmp / f"mine{i}.sqlite", f"uploaded kernel {i}")
        reply = post_form(srv, name.encode(), export.read_bytes(), write)
        assert reply.status_code == 200 and reply.json()["status"] == "done", (name, reply.text)
        assert reply.json()["original_name"] == name
        assert kernel_names(srv.db, reply.json()["run_id"]) == [f"uploaded kernel {i}"], name
    assert not list(tmp.rglob("PWNED*")) and not list(tmp.rglob("x.db"))
    with session_scope(srv.db.engine) as s:
        assert set(names) <= set(s.scalars(select(Trace.original_name)))


@pytest.mark.parametrize("name", [b"a\x00b.json.gz", b"tab\there.json", b"x" * 300 + b".json", b"\xff\xfe.json"])
def test_bad_file_names_are_422(tight: tuple[Server, Path], name: bytes) -> None:
    srv, tmp = tight
    jobs = count(srv.db, IngestJob)
    assert_error(post_form(srv, name, SD.read_bytes(), srv.token("write")), 422)
    assert count(srv.db, IngestJob) == jobs
    assert tree_bytes(tmp / "data" / "uploads") == 0 or not list((tmp / "data" / "uploads").rglob("*.json*"))


# ---- 2. nothing is spooled before the token and the size are checked ------------------------


def test_no_token_is_401_before_the_body_lands_anywhere(tight: tuple[Server, Path]) -> None:
    srv, tmp = tight
    size = 64 << 20
    head, tail = form(b"big.json")
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    with DiskWatch(srv, tmp / "data", tmp / "systmp") as disk:
        upload = RawUpload(srv.port, headers, iter([head, *zeros(size), tail]))
        status, _, _ = upload.answer(timeout=60)
    assert status == 401
    assert disk.peak < 1 << 20, f"{disk.peak} bytes written for an unauthenticated upload"


def test_declared_length_over_the_limit_is_413_unread(tight: tuple[Server, Path]) -> None:
    srv, _tmp = tight
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
        "Content-Length": str(1 << 30),
        **srv.token("write"),
    }
    upload = RawUpload(srv.port, headers, iter([]))  # not one byte of the body is sent
    status, body, _ = upload.answer(timeout=10)
    assert status == 413 and b'"too_large"' in body


def test_chunked_body_is_413_once_past_the_limit(tight: tuple[Server, Path]) -> None:
    """No Content-Length: the limit holds while the body streams in, the partial spool is
    removed, and nothing ever goes through the system temp dir."""
    srv, tmp = tight
    head, tail = form(b"endless.json")
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
        "Transfer-Encoding": "chunked",
        **srv.token("write"),
    }
    jobs = count(srv.db, IngestJob)
    with DiskWatch(srv, tmp / "systmp") as system_tmp:
        upload = RawUpload(srv.port, headers, chunked(iter([head, *zeros(256 << 20, 256 << 10), tail])))
        status, body, sent = upload.answer(timeout=60)
    assert status == 413 and b'"too_large"' in body
    # Answered once the limit was passed, not at the end (socket buffers hold a few MiB).
    assert sent < TIGHT_LIMIT + (48 << 20), sent
    assert system_tmp.peak == 0
    deadline = time.monotonic() + 5
    while tree_bytes(tmp / "data" / "uploads") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tree_bytes(tmp / "data" / "uploads") == 0
    assert count(srv.db, IngestJob) == jobs


def test_a_broken_or_abandoned_body_leaves_no_spool(tight: tuple[Server, Path]) -> None:
    srv, tmp = tight
    write, uploads = srv.token("write"), tmp / "data" / "uploads"
    head, _ = form(b"cut.json")
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}", **write}
    # The body ends without its closing boundary.
    reply = httpx.post(f"{srv.url}/v1/traces", content=head + bytes(3 << 20), headers=headers)
    assert_error(reply, 400)
    assert "ended early" in reply.json()["error"]
    # Too many file parts.
    many = b"".join(form(f"{i}.csv".encode())[0] + b"x\r\n" for i in range(65)) + b"--" + BOUNDARY + b"--\r\n"
    assert_error(httpx.post(f"{srv.url}/v1/traces", content=many, headers=headers), 422)
    # The client goes away mid-body.
    upload = RawUpload(srv.port, {**headers, "Content-Length": str(6 << 20)}, iter([head, *zeros(4 << 20)]))
    deadline = time.monotonic() + 10
    while not tree_bytes(uploads) and time.monotonic() < deadline:  # the spool has begun
        time.sleep(0.01)
    assert tree_bytes(uploads) > 0
    upload.sock.close()
    deadline = time.monotonic() + 10
    while tree_bytes(uploads) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tree_bytes(uploads) == 0


def test_an_accepted_upload_is_written_once_into_the_data_dir(tight: tuple[Server, Path]) -> None:
    srv, tmp = tight
    # Stored (level 0): 2.7 MB, more than a spooled temporary file keeps in memory.
    data = gzip.compress(gzip.decompress(SD.read_bytes()) + b"\n\n\n", compresslevel=0)
    with DiskWatch(srv, tmp / "systmp") as system_tmp:
        reply = post_form(srv, b"sd.json.gz", data, srv.token("write"))
    assert reply.status_code == 200 and reply.json()["status"] == "done", reply.text
    assert system_tmp.peak == 0


# ---- 3. a gzip bomb is refused while it inflates --------------------------------------------


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_gzip_bomb_upload_is_413_fast_with_bounded_memory(roomy: tuple[Server, Path], bomb: Path) -> None:
    srv, _ = roomy
    runs = count(srv.db, Run)
    started = time.perf_counter()
    reply = post_form(srv, b"bomb.json.gz", bomb.read_bytes(), srv.token("write"), wait=0)
    seconds = time.perf_counter() - started
    rss = peak_rss_mb(srv.proc.pid)  # type: ignore[union-attr]
    print(
        f"\n3 GiB gzip bomb ({bomb.stat().st_size} bytes) on {srv.db.backend}: "
        f"{reply.status_code} in {seconds:.2f} s, server peak RSS {rss:.0f} MB"
    )
    assert_error(reply, 413)
    assert "inflates past" in reply.json()["error"]
    assert rss < 500 and seconds < 5
    assert count(srv.db, Run) == runs


def test_every_reader_stops_at_the_inflated_cap(db: Database, bomb: Path, tmp_path: Path) -> None:
    cap = 64 << 20
    for read in (
        lambda: kineto.read_bytes(bomb, cap),
        lambda: sum(map(len, file_pieces(bomb, 1 << 20, cap))),
        lambda: sum(piece.n for piece in read_pieces(bomb, 1 << 20, cap)),  # the scan's reader
        lambda: kineto.parse_kineto(bomb, max_inflated_bytes=cap),
        lambda: gzip_content_sha256(bomb, cap),
    ):  # the dedupe digest, beside the parse
        started = time.perf_counter()
        with pytest.raises(TooLarge, match="inflates past"):
            read()
        assert time.perf_counter() - started < 5
    with pytest.raises(TooLarge):
        ingest_file(db.engine, bomb, raw_dir=tmp_path / "raw", max_inflated_bytes=cap)
    assert count(db, Run) == 0 and not (tmp_path / "raw").exists()
    # A multi-member gzip is capped over all its members together.
    members = tmp_path / "members.json.gz"
    members.write_bytes(gzip.compress(bytes(40 << 20)) * 2)
    with pytest.raises(TooLarge):
        kineto.read_bytes(members, cap)
    assert len(kineto.read_bytes(members, 80 << 20)) == 80 << 20


# ---- 4. the event loop keeps answering while an upload is received and checked ---------------


def _healthz_during_upload(srv: Server, big: Path) -> list[float]:
    """/healthz answer times, polled every 20 ms while ``big`` is uploaded and checked."""
    replies: list[httpx.Response] = []

    def upload() -> None:
        with big.open("rb") as fh:
            replies.append(
                httpx.post(
                    f"{srv.url}/v1/traces", files={"file": ("big.json.gz", fh)}, headers=srv.token("write"), timeout=300
                )
            )

    sender = threading.Thread(target=upload)
    latencies = []
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        client.get("/healthz")  # connected before the upload starts
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    sender.join()
    assert replies and replies[0].status_code == 202, replies[0].text if replies else "no reply"
    assert len(latencies) >= 10
    return latencies


def test_healthz_answers_while_a_200mb_upload_is_checked(roomy: tuple[Server, Path], tmp_path: Path) -> None:
    """A loop blocked by the check stalls one answer for the whole gunzip (most of a second,
    every time); a busy shared machine delays a few answers by tens of ms now and then.  So
    the upload is tried up to five times, and one clean run (every answer < 100 ms) passes."""
    srv, _ = roomy
    # 200 MB of stored (level 0) gzip: quick to make, and the server inflates all of it.
    big = tmp_path / "big.json.gz"
    deflate = zlib.compressobj(0, zlib.DEFLATED, 31)
    with big.open("wb") as out:
        out.write(deflate.compress(b'{"traceEvents": ['))
        for block in zeros(200 << 20, 4 << 20):
            out.write(deflate.compress(block.replace(b"\x00", b" ")))
        out.write(deflate.compress(b"]}") + deflate.flush())
    slowest = []
    for _ in range(5):
        slowest.append(max(_healthz_during_upload(srv, big)))
        if slowest[-1] < 0.1:
            break
    print(
        f"\n/healthz during a 200 MB upload on {srv.db.backend}: slowest answer per try "
        f"{[round(s * 1000) for s in slowest]} ms"
    )
    assert slowest[-1] < 0.1, slowest
