"""The OpenAPI document and /docs as a tool or an offline browser meets them: Swagger UI and
ReDoc load nothing from another host, every table route documents its columns (checked
against the live server's real answers), every error answer is documented with the one
error shape, and ``?wait=`` answers 200 with a finished job."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests import live
from tests.conftest import BACKENDS, DATA, require_shared
from tests.fixtures import AppServer, assert_error
from tests.test_service import _upload

ASSET = re.compile(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"')


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[tuple[AppServer, live.Runs]]:  # type: ignore[no-untyped-def]
    srv, runs = live.start(request.param, tmp_path_factory.mktemp(f"openapi-{request.param}"))
    yield srv, runs
    srv.stop()
    srv.db.drop()


def _samples(runs: live.Runs) -> dict[str, list[dict[str, object]]]:
    """At least one real request per table route; together they produce every documented column."""
    sd, flash, gpu, ncu = runs.baseline, runs.flash, runs.gpu, runs.ncu
    return {
        "/v1/runs": [{}],
        "/v1/runs/{run_id}/kernels": [{}],
        "/v1/runs/{run_id}/breakdown": [
            {"by": by} for by in ("operator", "attention_type", "seq_len", "component", "kernel")
        ],
        "/v1/runs/{run_id}/normalized": [
            {"reference": flash, "by": by} for by in ("operator", "seq_len", "component", "kernel")
        ],
        "/v1/compare": [{"baseline": sd, "other": flash}, {"baseline": sd, "other": flash, "summary": True}],
        "/v1/speedups": [{}, {"repeats": True}],
        "/v1/runs/{run_id}/attention-calls": [{}],
        "/v1/runs/{run_id}/seq-len-histogram": [{}, {"weight": "time", "key": "seq_kv"}],
        "/v1/runs/{run_id}/period": [{}],
        "/v1/sweep": [{"model": "stable-diffusion", "knob": "image_size"}],
        "/v1/runs/{run_id}/temporal-spatial": [{}],
        "/v1/attention-flops": [{"frames": [8, 16], "height": 32, "width": 32}],
        "/v1/runs/{run_id}/utilization": [{"_run": gpu}],
        "/v1/runs/{run_id}/idle": [{"_run": gpu}],
        "/v1/runs/{run_id}/advice": [{"_run": gpu}, {}, {"rule": "attention.materialised"}],
        "/v1/advice/rules": [{}],
        "/v1/jobs": [{}],
        "/v1/runs/{run_id}/memory-peak": [{}, {"_run": runs.memory}],
        "/v1/runs/{run_id}/memory-timeline": [{"_run": runs.memory}, {"_run": runs.memory, "points": 10}],
        "/v1/runs/{run_id}/memory-peak/live": [{"_run": runs.memory}, {"_run": runs.memory, "device": "cpu"}],
        "/v1/runs/{run_id}/critical-path": [{"_run": gpu}, {"_run": gpu, "view": "segments"}],
        "/v1/suite/model-points": [{}, {"family": "tti"}],
        "/v1/suite/ceilings": [{}],
        "/v1/suite/compute-comm": [{}, {"by_world_size": True}],
        "/v1/runs/{run_id}/launches": [
            {"_run": gpu, "by": by} for by in ("operator", "kernel", "attention_type", "component")
        ],
        "/v1/runs/{run_id}/roofline": [{"by": by} for by in ("operator", "attention_type", "kernel")],
        "/v1/runs/{run_id}/explain": [{"_run": gpu, "view": view} for view in ("kernels", "summary", "rules")],
        "/v1/runs/{run_id}/operator-costs": [{}],
        "/v1/runs/{run_id}/counter-roofline": [{"_run": ncu}],
        "/v1/memory-model": [{"image_size": 512, "latent_factor": 8, "text_length": 77, "unet_depth": 4}],
        "/v1/runs/{run_id}/memory-model": [{}],
        "/v1/hardware": [{"model": "stable-diffusion", "filter": "attention_backend=baseline"}],
        "/v1/fleet/summary": [{"by": "family"}, {"by": "cluster,gpu,phase,month,model"}],
        "/v1/fleet/ratio-spread": [{}],
        "/v1/fleet/top-jobs": [{}],
        "/v1/models": [{}],
        "/v1/runs/{run_id}/steps": [{"view": v} for v in ("steps", "summary", "breakdown")]
        + [{"view": "breakdown", "by": "attention_type"}],
        "/v1/diff": [{"a": sd, "b": flash}],
        "/v1/check": [{"run": flash, "baseline": "openapi"}],
        "/v1/baselines": [{}],
        "/v1/history": [{"model": "stable-diffusion", "key": "attention", "order": "commit"}],
        "/v1/matrix": [{"metric": "time"}],
    }


def _get_frame(srv: AppServer, path: str, params: dict[str, object], default_run: int) -> pl.DataFrame:
    """``params["_run"]`` is the run for ``{run_id}`` (the baseline Stable Diffusion run if absent)."""
    query = {k: v for k, v in params.items() if k != "_run"} | {"format": "parquet"}
    url = srv.url + path.replace("{run_id}", str(params.get("_run", default_run)))
    reply = srv.http.get(url, params=query, headers=srv.token("read"))
    assert reply.status_code == 200, (url, query, reply.text)
    return pl.read_parquet(io.BytesIO(reply.content))


def _matches(documented: dict[str, object], dtype: pl.DataType) -> bool:
    kind = documented["type"]
    if documented.get("format") == "date-time":
        return isinstance(dtype, pl.Datetime)
    if kind == "array":
        return isinstance(dtype, pl.List) and dtype.inner.is_integer()
    return {
        "integer": dtype.is_integer(),
        "number": dtype.is_numeric(),
        "string": dtype == pl.String,
        "boolean": dtype == pl.Boolean,
    }[kind]


def _table_routes(document: dict) -> dict[str, dict]:
    """GET routes that take ``format=json|csv|parquet``: the table routes."""
    return {
        path: ops["get"]
        for path, ops in document["paths"].items()
        if "get" in ops and any(p["name"] == "format" for p in ops["get"].get("parameters", []))
    }


def test_docs_load_no_asset_from_another_host(served: tuple[AppServer, live.Runs]) -> None:
    srv, _ = served
    for page, needed in (("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}), ("/redoc", {"redoc.standalone.js"})):
        html = srv.http.get(srv.url + page).text
        assert "://" not in html, f"{page} names another host"
        assets = ASSET.findall(html)
        assert {a.rsplit("/", 1)[-1] for a in assets} >= needed
        for asset in assets:
            reply = srv.http.get(srv.url + asset)
            kind = reply.headers["content-type"]
            assert reply.status_code == 200 and len(reply.content) > 1000, asset
            assert "javascript" in kind if asset.endswith(".js") else "css" in kind or "image" in kind, (asset, kind)
        assert "url: '/openapi.json'" in html or 'spec-url="/openapi.json"' in html


def test_every_table_route_documents_the_columns_it_returns(served: tuple[AppServer, live.Runs]) -> None:
    require_shared()
    srv, runs = served
    document = srv.http.get(srv.url + "/openapi.json").json()
    routes = _table_routes(document)
    samples = _samples(runs)
    assert set(routes) == set(samples), "a table route without a sample request here, or a sample without a route"
    for path, operation in routes.items():
        answer = operation["responses"]["200"]
        rows = answer["content"]["application/json"]["schema"]
        assert rows["type"] == "array", path
        documented, required = rows["items"]["properties"], set(rows["items"]["required"])
        assert {"text/csv", "application/vnd.apache.parquet"} <= set(answer["content"]), path
        for name, column in documented.items():
            assert column["description"] and "x-unit" in column, (path, name)
            assert f"`{name}`" in answer["description"], (path, name)  # the table /docs shows
        seen: set[str] = set()
        for params in samples[path]:
            frame = _get_frame(srv, path, params, runs.baseline)
            assert set(frame.columns) <= set(documented), (path, params, set(frame.columns) - set(documented))
            assert required <= set(frame.columns), (path, params, required - set(frame.columns))
            for name, dtype in frame.schema.items():
                assert _matches(documented[name], dtype), (path, name, documented[name], dtype)
            seen |= set(frame.columns)
        assert seen == set(documented), (path, "documented but never returned", set(documented) - seen)


def test_every_error_answer_is_documented_with_the_one_shape(served: tuple[AppServer, live.Runs]) -> None:
    srv, _ = served
    document = srv.http.get(srv.url + "/openapi.json").json()
    error = document["components"]["schemas"]["ErrorOut"]
    assert set(error["properties"]) == set(error["required"]) == {"ok", "error", "code", "status"}
    assert "HTTPValidationError" not in document["components"]["schemas"]  # never sent by our handler
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status in ("4XX", "5XX"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
    # And what the server sends for each kind of failure is that shape.
    for url, status in (
        ("/v1/runs/999999/breakdown", 404),
        ("/v1/runs/abc", 422),
        ("/v1/runs/1/breakdown?by=colour", 400),
        ("/nowhere", 404),
    ):
        body = assert_error(srv.http.get(srv.url + url, headers=srv.token("read")), status)
        assert set(body) == set(error["properties"]), url


def test_wait_answers_200_with_the_finished_job(served: tuple[AppServer, live.Runs], tmp_path: Path) -> None:
    srv, runs = served
    write = srv.token("write")
    done = _upload(srv, DATA / "sd_tiny_cpu_flash.json.gz", write, wait=60)
    assert done.status_code == 200 and done.json()["status"] == "done" and done.json()["run_id"] == runs.flash
    # Without wait the job is still queued when the answer goes out: 202 Accepted.
    copy = tmp_path / "again.json.gz"
    copy.write_bytes((DATA / "sd_tiny_cpu_baseline.json.gz").read_bytes())
    queued = _upload(srv, copy, write, wait=0)
    assert queued.status_code == 202 and queued.json()["status"] in ("queued", "running"), queued.text
    document = srv.http.get(srv.url + "/openapi.json").json()
    assert {"200", "202"} <= set(document["paths"]["/v1/traces"]["post"]["responses"])
