"""A corpus of bad uploads, built in code (deterministically) from the repo's small test trace
and small documents: broken gzip, broken or foreign JSON, traces with nothing to ingest or
impossible values, files of the wrong kind, hostile file names, hostile request shapes and a
small gzip bomb.  Every case must be refused with a 4xx and leave no trace behind
(tests/test_bad_upload_corpus.py)."""

from __future__ import annotations

import gzip
import json
import sqlite3
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.conftest import DATA

SD = DATA / "sd_tiny_cpu_baseline.json.gz"


@dataclass(frozen=True)
class Part:
    filename: str
    content: Callable[[], bytes]
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class BadUpload:
    """One request to ``POST /v1/traces``: multipart ``parts`` and ``form`` fields, or a
    ``raw_body`` sent as it is under ``content_type``."""

    name: str
    parts: tuple[Part, ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    raw_body: Callable[[], bytes] | None = None
    content_type: str | None = None
    own_server: bool = False  # it may stall the ingest worker: never in front of other cases


# ---------------------------------------------------------------- materials
@cache
def sd_gz() -> bytes:
    return SD.read_bytes()


@cache
def sd_text() -> bytes:
    return gzip.decompress(sd_gz())


def launch(correlation: int = 1) -> dict:
    return {
        "ph": "X",
        "cat": "cuda_runtime",
        "name": "cudaLaunchKernel",
        "pid": 1,
        "tid": 1,
        "ts": 9,
        "dur": 1,
        "args": {"correlation": correlation},
    }


def kernel(**fields: object) -> dict:
    base = {
        "ph": "X",
        "cat": "kernel",
        "name": "k",
        "pid": 0,
        "tid": 7,
        "ts": 10,
        "dur": 2,
        "args": {"correlation": 1, "device": 0, "stream": 7},
    }
    return base | fields


def doc(*events: dict, **header: object) -> Callable[[], bytes]:
    """A small trace (a launch and its kernel unless ``events`` are given), as JSON text."""
    return lambda: json.dumps({**header, "traceEvents": list(events) or [launch(), kernel()]}).encode()


def text(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def deep_json(depth: int) -> bytes:
    return (
        b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1, "args": {"x": '
        + b"[" * depth
        + b"]" * depth
        + b"}}]}"
    )


def sqlite_file(build: Callable[[sqlite3.Connection], None]) -> Callable[[], bytes]:
    def make() -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "db.sqlite"
            con = sqlite3.connect(path)
            build(con)
            con.commit()
            con.close()
            return path.read_bytes()

    return make


def not_nsys(label: str) -> Callable[[], bytes]:
    """An SQLite file that is no nsys export; the label makes its bytes (its sha256) its own,
    so that no case is answered from another's deduplicated run."""

    def build(con: sqlite3.Connection) -> None:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        con.executemany("INSERT INTO notes (body) VALUES (?)", [(f"{label} {i}",) for i in range(50)])

    return sqlite_file(build)


def _half_nsys(con: sqlite3.Connection) -> None:
    # The table names of an export, without the columns the reader needs.
    con.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (id INTEGER)")
    con.execute("CREATE TABLE StringIds (id INTEGER, value TEXT)")
    con.execute("INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (1)")


def _small_nsys(con: sqlite3.Connection) -> None:
    # A minimal export: one kernel and its launch (what the foreign file of item 1 holds).
    con.executescript("""
        CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT);
        CREATE TABLE META_DATA_EXPORT (name TEXT, value TEXT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT, "end" INT, deviceId INT, streamId INT,
            correlationId INT, globalPid INT, shortName INT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INT, "end" INT, globalTid INT, correlationId INT, nameId INT);
        INSERT INTO StringIds VALUES (1, 'foreign_kernel'), (2, 'cudaLaunchKernel_v7000');
        INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (1000, 1500, 0, 7, 1, 281476652367872, 1);
        INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (900, 950, 281476652367973, 1, 2);
    """)


FOREIGN_NSYS = sqlite_file(_small_nsys)  # put beside the server's data dir by the test
EMPTY_SQLITE = sqlite_file(lambda con: con.execute("PRAGMA user_version = 7"))


def bomb(size: int, prefix: bytes = b"", suffix: bytes = b"", fill: bytes = b"\0") -> Callable[[], bytes]:
    """``prefix``, ``size`` bytes of ``fill``, ``suffix``, gzipped a MiB at a time."""

    def make() -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        out = [packer.compress(prefix)]
        block = fill * (1 << 20)
        out.extend(packer.compress(block) for _ in range(size >> 20))
        out.append(packer.compress(suffix))
        out.append(packer.flush())
        return b"".join(out)

    return make


def one(
    name: str,
    filename: str,
    content: Callable[[], bytes],
    *,
    content_type: str = "application/octet-stream",
    form: tuple[tuple[str, str], ...] = (),
    own_server: bool = False,
) -> BadUpload:
    return BadUpload(name, (Part(filename, content, content_type),), form, own_server=own_server)


def _gzip_cases() -> list[BadUpload]:
    gz = sd_gz()
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    crc = bytearray(gz)
    crc[-8] ^= 0xFF
    return [
        one("truncated gzip", "t.json.gz", lambda: sd_gz()[: len(sd_gz()) // 2]),
        one("gzip header only", "t.json.gz", lambda: sd_gz()[:10]),
        one("gzip without its trailer", "t.json.gz", lambda: sd_gz()[:-8]),
        one("gzip with a bad CRC", "t.json.gz", text(bytes(crc))),
        one("gzip with a corrupt deflate stream", "t.json.gz", text(bytes(flipped))),
        one("gzip magic then garbage", "t.json.gz", text(b"\x1f\x8b" + b"garbage" * 50)),
        one("multi-member gzip, garbage after", "t.json.gz", lambda: sd_gz() + b"not a gzip member"),
        one("multi-member gzip, second truncated", "t.json.gz", lambda: sd_gz() + sd_gz()[:100]),
        one("multi-member gzip, two documents", "t.json.gz", lambda: sd_gz() + sd_gz(), own_server=True),
        one("gzip of nothing", "t.json.gz", text(gzip.compress(b"", mtime=0))),
        one("gzip of a gzip", "t.json.gz", lambda: gzip.compress(sd_gz(), mtime=0)),
        one("gzip bomb, 200 MiB of zeros", "bomb.json.gz", bomb(200 << 20)),
        one(
            "gzip bomb inside a trace, 64 MiB of spaces",
            "bomb.json.gz",
            bomb(64 << 20, b'{"traceEvents": [', b"]}", b" "),
        ),
    ]


def _json_cases() -> list[BadUpload]:
    return [
        one("invalid JSON, truncated", "t.json", lambda: sd_text()[: len(sd_text()) // 3]),
        one("invalid JSON, garbage", "t.json", text(b"{not json at all")),
        one("invalid JSON, trailing comma", "t.json", text(b'{"traceEvents": [1,]}')),
        one("invalid JSON, NaN", "t.json", lambda: doc()().replace(b'"dur": 2', b'"dur": NaN')),
        one("JSON null", "t.json", text(b"null")),
        one("JSON number", "t.json", text(b"42")),
        one("JSON string", "t.json", text(b'"traceEvents"')),
        one("JSON list of numbers", "t.json", text(b"[1, 2, 3]")),
        one("non-trace JSON object", "t.json", text(b'{"hello": "world", "items": [1, 2]}')),
        one("traceEvents not a list", "t.json", text(b'{"traceEvents": {"ph": "X"}}')),
        one("traceEvents of strings", "t.json", text(b'{"traceEvents": ["X", "kernel"]}')),
        one("deviceProperties of the wrong type", "t.json", doc(deviceProperties="A100")),
        one("empty traceEvents", "t.json", text(b'{"traceEvents": []}')),
        one(
            "no GPU events",
            "t.json",
            doc(
                {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "x"}},
                {"ph": "i", "name": "marker", "pid": 1, "tid": 1, "ts": 5},
            ),
        ),
        one(
            "annotations only",
            "t.json",
            doc({"ph": "X", "cat": "user_annotation", "name": "step", "pid": 1, "tid": 1, "ts": 1, "dur": 3}),
        ),
        one("negative duration", "t.json", doc(launch(), kernel(dur=-5))),
        one("duration a string", "t.json", doc(launch(), kernel(dur="abc"))),
        one("duration null", "t.json", doc(launch(), kernel(dur=None))),
        one("duration 1e300", "t.json", doc(launch(), kernel(dur=1e300))),
        one("timestamp 1e400", "t.json", lambda: doc()().replace(b'"ts": 10', b'"ts": 1e400')),
        one("timestamp 400 digits", "t.json", lambda: doc()().replace(b'"ts": 10', b'"ts": ' + b"9" * 400)),
        one("name a number", "t.json", doc(launch(), kernel(name=12))),
        one("deeply nested JSON", "t.json", text(deep_json(100_000))),
        one("deeply nested JSON, gzipped", "t.json.gz", lambda: gzip.compress(deep_json(100_000), mtime=0)),
        # A NUL in a kernel name is no refusal: it is stored as U+FFFD and counted, the same on both
        # backends (tests/test_upload_bad_values.py).
        one("UTF-16 text", "t.json", lambda: doc()().decode().encode("utf-16")),
        one("UTF-8 with a byte-order mark", "t.json", lambda: b"\xef\xbb\xbf" + doc()()),
        one("Latin-1 bytes around the JSON", "t.json", lambda: b"\xff\xfe\xe9" + doc()()),
        one("random high bytes", "t.json", text(bytes(range(128, 256)) * 20)),
        one("JSON lines", "t.json", lambda: b"\n".join(json.dumps(e).encode() for e in (launch(), kernel()))),
        one("empty file", "t.json", text(b"")),
        one("whitespace only", "t.json", text(b" \n\t " * 100)),
    ]


NCU_HEADER = (
    b'"ID","Process ID","Process Name","Host Name","Kernel Name","Kernel Time","Context","Stream",'
    b'"Section Name","Metric Name","Metric Unit","Metric Value"\n'
)


def _kind_cases() -> list[BadUpload]:
    return [
        one("SQLite file that is not an nsys export", "run.sqlite", not_nsys("plain")),
        one("SQLite file with no tables", "run.sqlite", EMPTY_SQLITE),
        one("SQLite file with nsys table names only", "run.sqlite", sqlite_file(_half_nsys)),
        one("SQLite file truncated", "run.sqlite", lambda: not_nsys("truncated")()[:1500]),
        one("SQLite header then zeros", "run.sqlite", text(b"SQLite format 3\x00" + b"\x00" * 4080)),
        one("CSV that is not ncu", "m.csv", text(b"a,b,c\n1,2,3\n"), content_type="text/csv"),
        one("ncu header and no rows", "m.csv", text(NCU_HEADER), content_type="text/csv"),
        one(
            "ncu rows of garbage",
            "m.csv",
            text(NCU_HEADER + b'"x","y","z","h","k","t","c","s","sec","m","u","v"\n'),
            content_type="text/csv",
        ),
        one("ncu progress lines only", "m.csv", text(b"==PROF== Connected to process 1\n==PROF== Disconnected\n")),
        one("a PNG named .json", "t.json", text(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), content_type="image/png"),
        one("an ELF named .json.gz", "t.json.gz", text(b"\x7fELF\x02\x01\x01" + b"\x00" * 120)),
        one("a zip named .json", "t.json", text(b"PK\x03\x04" + b"\x00" * 60)),
    ]


def _name_cases() -> list[BadUpload]:
    """Hostile file names.  The content is broken too (a name is only metadata), except where
    the name alone must be refused (NUL and control characters)."""
    broken = text(b"{not json")
    return [
        one("path traversal ../", "../../../../escape.json", broken),
        one("absolute path", "/etc/passwd", broken),
        one("Windows path traversal", "..\\..\\..\\escape.json", broken),
        one("name '..'", "..", broken),
        one("name '.'", ".", broken),
        one("URI-encoded traversal to a foreign SQLite file", "..%2f..%2f..%2fforeign.sqlite", not_nsys("foreign")),
        one("SQLite URI that creates a file", "..%2f..%2f..%2fPWNED.db?mode=rwc&x=", not_nsys("pwned")),
        one("SQLite URI fragment", "run#1.sqlite", not_nsys("fragment")),
        one("SQLite URI query", "run.sqlite?mode=memory", not_nsys("query")),
        one("NUL in the file name", "a\x00b.json.gz", sd_gz),
        one("control characters in the file name", "a\x01\x1b[31mb\x7f.json.gz", sd_gz),
        # A raw CR LF ends the part's header line: the server cannot see the name as sent.
        one("newline in the file name", "a\r\nX-Injected: 1.json.gz", broken),
        one("300-byte file name", "n" * 292 + ".json.gz", broken),
        one("300-byte file name in UTF-8", "é" * 146 + ".json.gz", broken),
    ]


def _request_cases() -> list[BadUpload]:
    trace = sd_gz
    return [
        BadUpload("two files of the same name", (Part("t.json", text(b"{}")), Part("t.json", text(b"[]")))),
        BadUpload("two traces in one upload", (Part("a.json", doc()), Part("b.json", doc(launch(), kernel(ts=11))))),
        BadUpload("a trace and an empty file", (Part("a.json", doc()), Part("b.json", text(b"")))),
        one("manifest nested 100000 deep", "sd.json.gz", trace, form=(("manifest", "[" * 100_000 + "]" * 100_000),)),
        one("manifest not JSON", "sd.json.gz", trace, form=(("manifest", "{oops"),)),
        one("manifest a list", "sd.json.gz", trace, form=(("manifest", "[1, 2]"),)),
        one("meta without '='", "sd.json.gz", trace, form=(("meta", "novalue"),)),
        one("run_id past int64", "sd.json.gz", trace, form=(("run_id", str(2**64)),)),
        one("run_id on a timeline trace", "sd.json.gz", trace, form=(("run_id", "1"),)),
        one("run_id not a number", "sd.json.gz", trace, form=(("run_id", "one"),)),
        one("300-character model name", "sd.json.gz", trace, form=(("model", "m" * 300),)),
        BadUpload("no file part", form=(("model", "llama"),)),
        BadUpload("a JSON body", raw_body=doc(), content_type="application/json"),
        BadUpload(
            "a urlencoded body",
            raw_body=text(b"file=abc&model=llama"),
            content_type="application/x-www-form-urlencoded",
        ),
        BadUpload("a raw octet-stream body", raw_body=trace, content_type="application/octet-stream"),
        BadUpload("multipart without a boundary", raw_body=text(b"--x\r\n\r\n"), content_type="multipart/form-data"),
        BadUpload(
            "multipart cut short",
            raw_body=text(
                b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="t.json"\r\n\r\n{"traceEvents": ['
            ),
            content_type="multipart/form-data; boundary=xyz",
        ),
        BadUpload("text/plain body", raw_body=text(b"hello"), content_type="text/plain"),
    ]


def corpus() -> list[BadUpload]:
    cases = _gzip_cases() + _json_cases() + _kind_cases() + _name_cases() + _request_cases()
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    return cases
