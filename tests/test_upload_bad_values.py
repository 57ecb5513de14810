"""Bad input is a 4xx in the one error shape, the same on SQLite and PostgreSQL (issue 12,
item 8): ids no row can have, NUL characters, JSON nested 100k deep, metadata and trace values
past their columns.  Servers and helpers are those of ``test_upload_safety``."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from tests.conftest import Database
from tests.fixtures import Server, assert_error
from tests.test_upload_safety import SD, count, nsys_export, post_form
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import Hardware, IngestJob, Kernel, Run, Symbol


@pytest.mark.parametrize("big", [2**31, 2**63, 10**30, 0, -1])
def test_ids_no_row_can_have_are_404(tight: tuple[Server, Path], big: int) -> None:
    srv, _ = tight
    read, write = srv.token("read"), srv.token("write")
    for method, url, token in [
        ("GET", f"/v1/runs/{big}", read),
        ("GET", f"/v1/runs/{big}/breakdown", read),
        ("GET", f"/v1/jobs/{big}", read),
        ("DELETE", f"/v1/runs/{big}", write),
        ("POST", f"/v1/runs/{big}/reingest", write),
        ("GET", f"/v1/runs/{big}/attention-calls", read),
        ("GET", f"/v1/compare?baseline={big}&other={big}", read),
        ("GET", f"/v1/runs/{big}/normalized?reference={big}", read),
    ]:
        reply = httpx.request(method, srv.url + url, headers=token)
        assert reply.status_code == 404, (url, reply.text)
        assert_error(reply, 404)
    assert_error(post_form(srv, b"sd.json.gz", SD.read_bytes(), write, fields={"run_id": str(big)}), 422)


def test_nul_in_a_query_is_422_on_both_backends(tight: tuple[Server, Path]) -> None:
    srv, _ = tight
    read = srv.token("read")
    for url in ("/v1/runs?model=a%00b", "/v1/runs?tag=lab%3Da%00", "/v1/sweep?model=a%00&knob=image_size"):
        assert_error(httpx.get(srv.url + url, headers=read), 422)


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_4xx(tight: tuple[Server, Path]) -> None:
    srv, _ = tight
    write = srv.token("write")
    trace = (
        b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1, "args": {"grid": '
        + DEEP
        + b"}}]}"
    )
    reply = post_form(srv, b"deep.json", trace, write)
    assert_error(reply, 422)
    assert "nested too deeply" in reply.json()["error"]
    assert_error(post_form(srv, b"deep2.json", DEEP, write), 422)
    assert_error(post_form(srv, b"sd.json.gz", SD.read_bytes(), write, fields={"manifest": DEEP.decode()}), 400)
    reply = httpx.post(f"{srv.url}/v1/models", content=DEEP, headers={**write, "Content-Type": "application/json"})
    assert 400 <= reply.status_code < 500 and set(reply.json()) == {"ok", "error", "code", "status"}


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "m" * 300},
        {"model": "a\x00b"},
        {"hardware": "h" * 201},
        {"attention_backend": "f" * 33},
        {"meta": "batch=4294967296"},
        {"meta": "lab=a\x00b"},
        {"meta": "k" * 201 + "=v"},
    ],
)
def test_metadata_the_columns_cannot_hold_is_422(tight: tuple[Server, Path], fields: dict[str, str]) -> None:
    srv, _ = tight
    jobs = count(srv.db, IngestJob)
    assert_error(post_form(srv, b"sd.json.gz", SD.read_bytes(), srv.token("write"), fields=fields), 422)
    assert count(srv.db, IngestJob) == jobs


def test_nul_in_trace_names_is_replaced_and_counted(db: Database, tmp_path: Path) -> None:
    """SQLite would store a NUL and PostgreSQL refuse it: both store U+FFFD and count it."""
    kineto_trace = tmp_path / "nul.json.gz"
    kineto_trace.write_bytes(
        gzip.compress(
            gzip.decompress(SD.read_bytes()).replace(b'"name":"aten::linear"', b'"name":"aten::lin\\u0000ear"', 2)
        )
    )
    for path, bad in (
        (kineto_trace, "aten::lin\ufffdear"),
        (nsys_export(tmp_path / "nul.sqlite", "kern\x00el"), "kern\ufffdel"),
    ):
        result = ingest_file(db.engine, path, raw_dir=tmp_path / "raw")
        assert result.warnings.get("nul_in_text", 0) >= 1
        with session_scope(db.engine) as s:
            texts = set(s.scalars(select(Symbol.text)))
        assert bad in texts and not any("\x00" in t for t in texts)


def _one_kernel_trace(
    path: Path,
    *,
    device: str = "NVIDIA A100",
    grid: int = 1,
    rank: int = 0,
    annotation: str = "th|op=attention|sq=4",
    sms: int = 108,
) -> Path:
    path.write_bytes(
        orjson.dumps(
            {
                "traceEvents": [
                    {"ph": "X", "cat": "user_annotation", "name": annotation, "pid": 1, "tid": 1, "ts": 0, "dur": 10},
                    {
                        "ph": "X",
                        "cat": "kernel",
                        "name": "k",
                        "pid": 0,
                        "tid": 7,
                        "ts": 2,
                        "dur": 1,
                        "args": {"device": 0, "stream": 7, "correlation": 1, "grid": [grid, 1, 1], "block": [1, 1, 1]},
                    },
                    {
                        "ph": "X",
                        "cat": "cuda_runtime",
                        "name": "cudaLaunchKernel",
                        "pid": 1,
                        "tid": 1,
                        "ts": 1,
                        "dur": 1,
                        "args": {"correlation": 1},
                    },
                ],
                "deviceProperties": [
                    {
                        "id": 0,
                        "name": device,
                        "totalGlobalMem": 1 << 30,
                        "computeMajor": 8,
                        "computeMinor": 0,
                        "numSms": sms,
                    }
                ],
                "distributedInfo": {"rank": rank, "world_size": 1},
            }
        )
    )
    return path


def test_trace_values_past_their_columns_store_the_same_on_both_backends(db: Database, tmp_path: Path) -> None:
    """PostgreSQL refused these with raw database text; SQLite stored them as given."""
    raw = tmp_path / "raw"
    long_name = ingest_file(db.engine, _one_kernel_trace(tmp_path / "a.json", device="G" * 300), raw_dir=raw)
    assert long_name.warnings == {"long_device_name": 1}
    for i, kwargs in enumerate(
        [{"grid": 2**40}, {"rank": 2**40}, {"annotation": "th|op=attention|sq=99999999999"}, {"sms": 2**40}]
    ):
        ingest_file(db.engine, _one_kernel_trace(tmp_path / f"{i}.json", **kwargs), raw_dir=raw)
    with session_scope(db.engine) as s:
        assert s.scalar(select(func.max(func.length(Hardware.name)))) == 200
        assert s.scalar(select(func.max(Kernel.grid_x))) == 1  # 2**40 became null
        assert s.scalar(select(func.max(Kernel.seq_q))) == 4
        assert s.scalar(select(func.max(Run.rank))) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "m", "family": "tti", "param_count": 2**68},  # past the BIGINT column (schemathesis found it)
        {"name": "a\u0000b", "family": "tti", "param_count": 5},
        {"name": "m", "family": "tti", "param_count": 5, "architecture": "u\u0000net"},
    ],
    ids=["param_count past int64", "NUL in the name", "NUL in the architecture"],
)
def test_a_model_the_columns_cannot_hold_is_422(tight: tuple[Server, Path], body: dict) -> None:
    srv, _ = tight
    assert_error(httpx.post(f"{srv.url}/v1/models", json=body, headers=srv.token("write"), timeout=30), 422)
