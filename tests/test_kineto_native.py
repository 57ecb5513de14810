"""The C scanner (``kineto_native``) gives exactly what the msgspec reference path gives, or
declines and leaves the document to it: on every shared trace, on documents built to fool a
scanner, on big documents whose second half is scanned on a second thread (the guess of where
that half starts right or wrong), and on each shape it is meant to decline."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import kineto_traces, require_shared
from tests.kineto_docs import assert_same_parse, documents, event, parse_or_error, serialise, write_doc
from tracehouse.core.frames import ParsedTrace
from tracehouse.ingest import kineto, kineto_native

pytestmark = pytest.mark.skipif(
    not kineto_native.AVAILABLE and not shutil.which("cc"), reason="no C compiler here, so the scanner was not built"
)


def test_the_scanner_is_built_where_there_is_a_compiler() -> None:
    # The build treats the extension as optional; a compile error must still fail somewhere.
    assert kineto_native.AVAILABLE


# The shared traces the scanner leaves to msgspec, and why (none, today).
DECLINED: set[str] = set()


def _parse(path: Path, *, native: bool) -> tuple[ParsedTrace | None, str | None, bool]:
    """(parsed, error, scanned natively?) with the scanner first, as ingest runs it, or the
    reference decoder alone."""
    if not native:
        return (*parse_or_error(path, "reference"), False)
    parsed, error = parse_or_error(path, "native")
    if error is not None and error.startswith(f"{kineto.NativeDeclined.__name__}:"):
        return (*parse_or_error(path, "auto"), False)  # declined: ingest's "auto" falls back
    return parsed, error, True


def _assert_agree(path: Path) -> bool:
    """The two paths agree on ``path``; whether the scanner did the work."""
    native, error_a, scanned = _parse(path, native=True)
    reference, error_b, _ = _parse(path, native=False)
    assert error_a == error_b
    if native is not None and reference is not None:
        assert_same_parse(native, reference)
    return scanned


@pytest.mark.parametrize("path", kineto_traces(), ids=lambda p: p.name)
def test_real_traces_scan_as_msgspec_decodes(path: Path) -> None:
    require_shared()
    assert _assert_agree(path) == (path.name not in DECLINED)


def test_big_real_traces_are_scanned_on_two_threads() -> None:
    require_shared()
    for name in ("a100_rank3_of8_training.json.gz", "v100_ns_resolution.json.gz"):
        scanned = kineto_native.scan(kineto.read_bytes(kineto_traces()[0].parent / name))
        assert isinstance(scanned, kineto_native.Scanned) and scanned.threads == 2


@pytest.mark.parametrize(("label", "doc"), documents(), ids=[d[0] for d in documents()])
@pytest.mark.parametrize("style", ["plain", "indented", "compact", "crlf-tabs"])
def test_documents_built_to_fool_a_scanner(label: str, doc: object, style: str, tmp_path: Path) -> None:
    assert _assert_agree(write_doc(tmp_path, doc, style=style, gz=style == "plain"))


def _big(middle: list[dict], *, per_side: int = 14000) -> dict:
    rnd = random.Random(3)
    events = [event(rnd, i) for i in range(per_side)]
    more = [event(rnd, i) for i in range(per_side, 2 * per_side)]
    return {"deviceProperties": [{"id": 0, "name": "NVIDIA A100"}], "traceEvents": events + middle + more}


def test_a_right_guess_of_the_second_half_is_used(tmp_path: Path) -> None:
    path = write_doc(tmp_path, _big([]), style="indented")
    scanned = kineto_native.scan(path.read_bytes())
    assert isinstance(scanned, kineto_native.Scanned) and scanned.threads == 2
    assert _assert_agree(path)


def test_a_wrong_guess_inside_a_string_falls_back_to_one_thread(
    tmp_path: Path,
) -> None:
    # The middle of the text lies inside a 3 MB name made of "}, {": the guessed start is in it.
    giant = {"ph": "X", "cat": "cpu_op", "name": "}, {" * 750_000, "pid": 1, "tid": 1, "ts": 1, "dur": 1}
    path = write_doc(tmp_path, _big([giant]), style="indented")
    scanned = kineto_native.scan(path.read_bytes())
    assert isinstance(scanned, kineto_native.Scanned) and scanned.threads == 1
    assert _assert_agree(path)


def test_a_decline_in_the_second_half_declines_the_document(tmp_path: Path) -> None:
    doc = _big([])
    doc["traceEvents"][-5]["args"] = {"correlation": 2**64}  # beyond int64: left to msgspec
    path = write_doc(tmp_path, doc, style="indented")
    raw = path.read_bytes()
    declined_at = kineto_native.scan(raw)
    assert isinstance(declined_at, int) and declined_at > len(raw) * 0.9
    assert not _assert_agree(path)


def _kernel(**fields: object) -> dict:
    base = {
        "ph": "X",
        "cat": "kernel",
        "name": "k",
        "pid": 0,
        "tid": 7,
        "ts": 10,
        "dur": 2,
        "args": {"correlation": 1, "device": 0, "stream": 7, "grid": [1, 1, 1], "block": [32, 1, 1]},
    }
    return base | fields


DECLINES = {
    "grid as a string of two": {"traceEvents": [_kernel(args={"grid": "[1, 1]", "correlation": 1})]},
    "int beyond int64": {"traceEvents": [_kernel(args={"correlation": 2**63})]},
    "float where an int goes": {"traceEvents": [_kernel(pid=1.5)]},
    "stream '07'": {"traceEvents": [_kernel(args={"stream": "07", "correlation": 1})]},
    "grid of two": {"traceEvents": [_kernel(args={"grid": [1, 1], "correlation": 1})]},
    "name null": {"traceEvents": [_kernel(name=None)]},
    "deep nesting": {"traceEvents": [_kernel(args={"correlation": 1, "deep": json.loads("[" * 80 + "]" * 80)})]},
}
RAW_DECLINES = {
    "key with an escape": b'{"traceEvents": [{"\\u0070h": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}]}',
    "invalid UTF-8 in a skipped field": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, '
    b'"dur": 1, "stack": "\xff\xfe"}]}',
    "lone surrogate": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "\\ud800", "ts": 1, "dur": 1}]}',
    "trailing comma": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1},]}',
    "trailing garbage": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}]} x',
    "repeated key": b'{"traceEvents": [{"ph": "X", "ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}]}',
    "ts with an exponent": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1e3, "dur": 1}]}',
    # msgspec refuses a number past float64's range in a float or an ``Any`` field.
    "dur past float64": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1'
    + b"9" * 309
    + b"}]}",
    "dur 1e400 on a dropped event": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}, '
    b'{"ph": "i", "dur": 1e400}]}',
    "grid 1e400 on a dropped event": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}, '
    b'{"ph": "i", "args": {"grid": [1e400]}}]}',
    "block -1e999 on a dropped event": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1}, '
    b'{"ph": "i", "args": {"block": -1e999}}]}',
    "leading zero": b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 01, "dur": 1}]}',
}


@pytest.mark.parametrize("label", [*DECLINES, *RAW_DECLINES])
def test_shapes_it_declines_are_left_to_msgspec(label: str, tmp_path: Path) -> None:
    path = write_doc(tmp_path, DECLINES.get(label) or RAW_DECLINES[label])
    assert isinstance(kineto_native.scan(path.read_bytes()), int)
    assert not _assert_agree(path)


def test_escaped_names_decode_as_msgspec_decodes(tmp_path: Path) -> None:
    names = ['a"b', "back\\slash", "a/b", "\b\f\n\r\t", "café", "emoji 😀", "nul\x00byte", "ÿ", "丁"]
    doc = {"traceEvents": [_kernel(name=n, args={"correlation": i}) for i, n in enumerate(names)]}
    for ascii_only in (True, False):  # \\u escapes, or UTF-8 written as it is
        path = write_doc(tmp_path, json.dumps(doc, ensure_ascii=ascii_only).encode())
        assert _assert_agree(path)
        assert kineto.parse_kineto(path).gpu_events["name"].to_list() == names


def test_grid_strings_read_as_msgspec_reads_them(tmp_path: Path) -> None:
    # Triton writes a kernel's grid as "[1, 1, 1]" and a cpu op's as "grid(100,)".
    grids = ["[2, 3, 4]", " [5,6,7] ", "grid(100,)", "", "7"]
    doc = {"traceEvents": [_kernel(args={"correlation": i, "grid": g}) for i, g in enumerate(grids)]}
    path = write_doc(tmp_path, doc)
    assert _assert_agree(path)
    gpu = kineto.parse_kineto(path).gpu_events
    assert gpu["grid_x"].to_list() == [2, 5, None, None, None]


def test_pid_and_stream_strings_read_as_msgspec_reads_them(tmp_path: Path) -> None:
    events = [
        _kernel(pid="3", tid="Trace", args={"correlation": 1, "stream": "0x1f"}),
        _kernel(pid="Spans", args={"correlation": 2, "stream": "12"}),
        _kernel(args={"correlation": 3, "stream": None, "device": None}),
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": "7",
            "tid": "",
            "ts": 9,
            "dur": 1,
            "args": {"correlation": 1},
        },
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 7, "tid": 7, "ts": 8, "dur": 3, "args": None},
    ]
    path = write_doc(tmp_path, {"traceEvents": events})
    assert _assert_agree(path)
    gpu = kineto.parse_kineto(path).gpu_events
    # No device in args: the pid stands in, when it reads as a number.
    assert gpu["stream"].to_list() == [31, 12, 7] and gpu["device"].to_list() == [3, None, 0]


def test_a_gzip_of_several_members_reads_as_its_whole_text(tmp_path: Path) -> None:
    # ``cat a.gz b.gz`` makes one: each member inflates to part of the document.
    data = serialise(documents()[0][1], "indented")
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    assert kineto.read_bytes(path) == data
    assert _assert_agree(path)


@pytest.mark.slow  # hundreds of mutated documents, each parsed twice
def test_mutated_documents_are_read_alike_or_declined(tmp_path: Path) -> None:
    # Truncations and single-byte edits of a small trace: wherever the scanner accepts one, it
    # must read it as msgspec does; a crash or a difference fails.
    rnd = random.Random(11)
    base = serialise({"traceEvents": [event(rnd, i) for i in range(40)]}, "compact")
    scanned = 0
    for _ in range(300):
        data = bytearray(base)
        at = rnd.randrange(len(data))
        edit = rnd.random()
        if edit < 0.2:
            del data[at:]
        elif edit < 0.6:
            data[at] = ord(rnd.choice('{}[]",:0123456789.-eE\\ ntfu\x00\xff'))
        elif edit < 0.8:
            data.insert(at, ord(rnd.choice('{}[]",:0-e\\ ')))
        else:
            del data[at]
        path = tmp_path / "m.json"
        path.write_bytes(bytes(data))
        scanned += _assert_agree(path)
    assert 30 < scanned < 300  # both outcomes were exercised
