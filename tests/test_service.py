"""End to end: a real uvicorn server on a free localhost port, real uploads over HTTP with
tokens, and answers checked against independent readings of the same files."""

from __future__ import annotations

import gzip
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest
from sqlalchemy import func, select

from tests import independent
from tests.conftest import DATA, KINETO_DIR, Database, require_shared
from tests.fixtures import AppServer, Server, assert_error, run_cli
from tracehouse.analyses.breakdown import breakdown
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import IngestJob, Run

SD = DATA / "sd_tiny_cpu_baseline.json.gz"


def _upload(srv: AppServer, path: Path, headers: dict, wait: float = 60, **form) -> httpx.Response:  # type: ignore[no-untyped-def]
    manifest = path.with_name(path.name.replace(".json.gz", ".manifest.json"))
    if manifest.exists() and path.name.endswith(".json.gz"):
        form.setdefault("manifest", manifest.read_text())  # as `tracehouse upload` sends it
    with path.open("rb") as fh:
        return srv.http.post(
            f"{srv.url}/v1/traces",
            params={"wait": wait} if wait else None,
            files={"file": (path.name, fh)},
            data=form,
            headers=headers,
        )


def _run_count(srv: AppServer) -> int:
    with session_scope(srv.db.engine) as s:
        return s.scalar(select(func.count()).select_from(Run))


def test_tokens_and_scopes(server: AppServer) -> None:
    assert server.http.get(f"{server.url}/v1/runs").status_code == 401
    assert server.http.get(f"{server.url}/v1/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
    read = server.token("read")
    assert server.http.get(f"{server.url}/v1/runs", headers=read).status_code == 200
    denied = _upload(server, SD, read)
    assert_error(denied, 403, code="forbidden")


@pytest.mark.parametrize("name", ["a100_nccl_training.json.gz", "mi250_rocm.json.gz"])
def test_upload_real_trace_and_query(server: AppServer, name: str) -> None:
    require_shared()
    path = KINETO_DIR / name
    write, read = server.token("write"), server.token("read")
    queued = _upload(server, path, write, wait=0, model="llama", attention_backend="flash")
    assert queued.status_code == 202 and queued.json()["status"] in ("queued", "running", "done")
    job = queued.json()
    for _ in range(300):
        job = server.http.get(f"{server.url}/v1/jobs/{job['job_id']}", headers=read).json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    trace = independent.load(path)
    rows = server.http.get(
        f"{server.url}/v1/runs/{job['run_id']}/breakdown", params={"by": "kernel"}, headers=read
    ).json()
    assert sum(r["kernel_count"] for r in rows) == sum(independent.kind_counts(trace).values())
    assert sum(r["total_ns"] for r in rows) == independent.total_ns(trace)
    run = server.http.get(f"{server.url}/v1/runs/{job['run_id']}", headers=read).json()
    assert (run["model"], run["attention_backend"]) == ("llama", "flash")
    again = _upload(server, path, write).json()
    assert again["status"] == "done" and again["run_id"] == job["run_id"]


def test_rest_cli_and_python_give_the_same_numbers(server: AppServer) -> None:
    write, read = server.token("write"), server.token("read")
    run_id = _upload(server, SD, write).json()["run_id"]
    for by in ("operator", "seq_len", "component"):
        rest = server.http.get(f"{server.url}/v1/runs/{run_id}/breakdown", params={"by": by}, headers=read).json()
        cli = run_cli("breakdown", str(run_id), "--by", by, "--format", "json", "--db", server.db.url, env=server.env)
        with session_scope(server.db.engine) as s:
            python = orjson.loads(orjson.dumps(breakdown(s, run_id, by).to_dicts()))
        assert rest == python == orjson.loads(cli.stdout)
    csv = server.http.get(f"{server.url}/v1/runs/{run_id}/breakdown", params={"format": "csv"}, headers=read)
    parquet = server.http.get(f"{server.url}/v1/runs/{run_id}/breakdown", params={"format": "parquet"}, headers=read)
    from_csv, from_parquet = pl.read_csv(io.StringIO(csv.text)), pl.read_parquet(io.BytesIO(parquet.content))
    assert from_csv["operator"].to_list() == from_parquet["operator"].to_list()
    assert from_csv["total_ns"].to_list() == from_parquet["total_ns"].to_list()


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (SD.read_bytes()[:5000], 422, "truncated or corrupt gzip"),
        (b"\x00\x01 not a trace", 422, "unrecognized trace format"),
        (b'{"traceEvents": [{"ph": "X", "cat": "kernel"', 422, "not valid JSON"),
        (b'{"hello": 1}', 422, "not a PyTorch Profiler trace"),
        (b"", 400, "empty"),
    ],
)
def test_bad_uploads_answer_4xx_and_change_nothing(
    server: AppServer, tmp_path: Path, content: bytes, status: int, message: str
) -> None:
    path = tmp_path / "bad.json.gz"
    path.write_bytes(content)
    before = _run_count(server)
    reply = _upload(server, path, server.token("write"))
    assert_error(reply, status, contains=message)
    assert _run_count(server) == before


def test_error_shape_on_every_kind_of_failure(server: AppServer) -> None:
    read = server.token("read")
    for url, status in (
        ("/v1/runs/999999", 404),
        ("/v1/jobs/999999", 404),
        ("/v1/runs/1/breakdown?by=colour", 400),
        ("/v1/runs/abc", 422),
        ("/nowhere", 404),
    ):
        assert_error(server.http.get(server.url + url, headers=read), status)


def test_upload_size_limit(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path).migrate()
    srv = AppServer(db, tmp_path / "data", TRACEHOUSE_MAX_TRACE_BYTES="10000").start()
    try:
        reply = _upload(srv, SD, srv.token("write"))
        assert_error(reply, 413, contains="limit")
        assert _run_count(srv) == 0
    finally:
        srv.stop()


def test_queued_and_interrupted_jobs_survive_a_restart(tmp_path: Path) -> None:
    """Jobs are rows: a job left 'running' by a crash and one still 'queued' both finish
    after the service starts again, with no duplicate or partial run."""
    db = Database("sqlite", tmp_path).migrate()
    spool = tmp_path / "data" / "uploads"
    jobs = []
    with session_scope(db.engine) as s:
        for status, src in (("running", SD), ("queued", DATA / "sd_tiny_cpu_flash.json.gz")):
            (spool / status).mkdir(parents=True)
            target = spool / status / src.name
            target.write_bytes(src.read_bytes())
            job = IngestJob(
                status=status,
                original_name=src.name,
                upload_path=str(target),
                sha256="x",
                size_bytes=target.stat().st_size,
                meta=None,
                attempts=1 if status == "running" else 0,
                created_at=datetime.now(UTC),
            )
            s.add(job)
            s.flush()
            jobs.append(job.id)
    srv = AppServer(db, tmp_path / "data").start()
    try:
        read = srv.token("read")
        for _ in range(300):
            states = [srv.http.get(f"{srv.url}/v1/jobs/{j}", headers=read).json() for j in jobs]
            if all(st["status"] == "done" for st in states):
                break
            time.sleep(0.1)
        assert [st["status"] for st in states] == ["done", "done"]
        assert _run_count(srv) == 2
    finally:
        srv.stop()


def test_analysis_routes_equal_the_functions(server: AppServer) -> None:
    from tracehouse.analyses import (
        attention,
        compare,
        launches,
        memory_model,
        roofline,
        sequence,
        utilization,
    )

    write, read = server.token("write"), server.token("read")
    base = _upload(server, SD, write).json()["run_id"]
    flash = _upload(server, DATA / "sd_tiny_cpu_flash.json.gz", write).json()["run_id"]
    gpu_trace = KINETO_DIR / "a100_alexnet_small.json.gz"  # a run with GPU launches, where present
    real = _upload(server, gpu_trace, write).json()["run_id"] if gpu_trace.is_file() else base
    cases = [
        ("/v1/compare", {"baseline": base, "other": flash}, lambda s: compare.compare_runs(s, base, flash)),
        (
            "/v1/compare",
            {"baseline": base, "other": flash, "summary": "true"},
            lambda s: compare.compare_summary(s, base, flash),
        ),
        (f"/v1/runs/{flash}/normalized", {"reference": base}, lambda s: compare.breakdown_normalized(s, flash, base)),
        ("/v1/speedups", {}, compare.backend_speedups),
        (f"/v1/runs/{base}/utilization", {}, lambda s: utilization.temporal_breakdown(s, base)),
        (f"/v1/runs/{real}/launches", {"by": "kernel"}, lambda s: launches.launch_overhead(s, real, "kernel")),
        (f"/v1/runs/{base}/attention-calls", {}, lambda s: sequence.attention_calls(s, base)),
        (
            f"/v1/runs/{base}/seq-len-histogram",
            {"weight": "time"},
            lambda s: sequence.seq_len_histogram(s, base, "time"),
        ),
        (f"/v1/runs/{base}/period", {}, lambda s: sequence.fundamental_period(s, base)),
        (f"/v1/runs/{base}/temporal-spatial", {}, lambda s: attention.temporal_vs_spatial(s, base)),
        (f"/v1/runs/{base}/roofline", {}, lambda s: roofline.roofline_by(s, base)),
        (f"/v1/runs/{base}/roofline", {"by": "kernel"}, lambda s: roofline.roofline_by(s, base, "kernel")),
        (f"/v1/runs/{base}/operator-costs", {}, lambda s: roofline.roofline(s, base)),
        (f"/v1/runs/{base}/memory-model", {}, lambda s: memory_model.memory_model_vs_run(s, base)),
        (
            "/v1/memory-model",
            {"image_size": 512, "latent_factor": 8, "text_length": 77, "unet_depth": 3},
            lambda s: memory_model.similarity_matrix_memory(512, 8, 77, 3, 2),
        ),
    ]
    for url, params, fn in cases:
        reply = server.http.get(server.url + url, params=params, headers=read)
        assert reply.status_code == 200, (url, reply.text)
        with session_scope(server.db.engine) as s:
            expected = orjson.loads(orjson.dumps(fn(s).to_dicts(), option=orjson.OPT_NAIVE_UTC))
        assert reply.json() == expected and expected, url
    bad = server.http.get(
        f"{server.url}/v1/sweep", params={"model": "stable-diffusion", "knob": "colour"}, headers=read
    )
    assert_error(bad, 400)


def test_cli_upload_sends_the_manifest_and_waits(live_server: Server, tmp_path: Path) -> None:
    token = live_server.token("write")["Authorization"].split()[1]
    trace = tmp_path / "mav.json.gz"  # a copy: new bytes for this server, manifest beside it
    trace.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b" "))
    trace.with_name("mav.manifest.json").write_text(SD.with_name("sd_tiny_cpu_baseline.manifest.json").read_text())
    out = run_cli(
        "upload",
        str(trace),
        "--server",
        live_server.url,
        "--token",
        token,
        "--meta",
        "lab=b",
        "--json",
        env=live_server.env,
    )
    assert out.returncode == 0, out.stderr
    [job] = orjson.loads(out.stdout)
    assert job["status"] == "done"
    run = live_server.http.get(f"{live_server.url}/v1/runs/{job['run_id']}", headers=live_server.token("read")).json()
    assert run["model"] == "stable-diffusion" and run["image_size"] == 64 and run["tags"]["lab"] == "b"
    again = run_cli("upload", str(trace), "--server", live_server.url, "--token", token, env=live_server.env)
    assert again.returncode == 0 and f"run {job['run_id']} (duplicate of run {job['run_id']}" in again.stdout, again
    denied = run_cli("upload", str(trace), "--server", live_server.url, "--token", "wrong", env=live_server.env)
    assert denied.returncode == 2 and "401" in denied.stderr


def test_delete_run_needs_write_and_removes_its_rows(server: AppServer, tmp_path: Path) -> None:
    from tracehouse.schema.models import Kernel

    trace = tmp_path / "doomed.json.gz"
    trace.write_bytes(gzip.compress(gzip.decompress(SD.read_bytes()) + b"  "))
    owner = server.token("write")
    run_id = _upload(server, trace, owner).json()["run_id"]
    url = f"{server.url}/v1/runs/{run_id}"
    assert server.http.delete(url, headers=server.token("read")).status_code == 403
    assert server.http.delete(url, headers=server.token("write")).status_code == 403  # another lab's run
    assert server.http.delete(url, headers=owner).status_code == 204
    assert server.http.get(url, headers=server.token("read")).status_code == 404
    with session_scope(server.db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Kernel).where(Kernel.run_id == run_id)) == 0


def test_public_read_serves_reads_without_a_token_but_not_writes(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path).migrate()
    srv = AppServer(db, tmp_path / "data", "--public-read").start()
    try:
        assert srv.http.get(f"{srv.url}/v1/runs").status_code == 200
        assert _upload(srv, SD, {}).status_code == 401
        run_id = _upload(srv, SD, srv.token("write")).json()["run_id"]
        rows = srv.http.get(f"{srv.url}/v1/runs", params={"since": "2000-01-01T00:00:00Z"}).json()
        assert [r["run_id"] for r in rows] == [run_id]
        assert srv.http.get(f"{srv.url}/v1/runs", params={"until": "2000-01-01T00:00:00Z"}).json() == []
    finally:
        srv.stop()


def test_model_registry_and_fleet_summary_over_rest(server: AppServer) -> None:
    write, read = server.token("write"), server.token("read")
    body = {"name": "llama-2-7b", "family": "llm", "param_count": 6_738_415_616}
    assert server.http.post(f"{server.url}/v1/models", json=body, headers=read).status_code == 403
    created = server.http.post(f"{server.url}/v1/models", json=body, headers=write)
    assert created.status_code == 201 and created.json()[0]["param_count"] == 6_738_415_616
    assert any(m["name"] == "llama-2-7b" for m in server.http.get(f"{server.url}/v1/models", headers=read).json())
    bad = server.http.post(f"{server.url}/v1/models", json={**body, "family": "robot"}, headers=write)
    assert_error(bad, 422)
    for route in ("/v1/fleet/summary", "/v1/fleet/ratio-spread", "/v1/fleet/top-jobs"):
        reply = server.http.get(server.url + route, headers=read)
        assert reply.status_code == 200 and isinstance(reply.json(), list), route


def test_ncu_csvs_upload_as_one_run_or_attach_to_a_trace(server: AppServer, tmp_path: Path) -> None:
    from tests.test_ncu_link import TRACE, write_ncu_csv

    require_shared()
    write, read = server.token("write"), server.token("read")
    run_id = _upload(server, TRACE, write).json()["run_id"]
    with session_scope(server.db.engine) as s:
        from tracehouse.analyses.roofline import roofline_by
        from tracehouse.schema.models import Kernel, Symbol

        names = s.scalars(
            select(Symbol.text)
            .join(Kernel, Kernel.name_id == Symbol.id)
            .where(Kernel.run_id == run_id, Kernel.kind == "kernel")
            .order_by(Kernel.seq)
        ).all()
    # Two passes of one profile, as ncu writes them: bytes in one file, FLOPs and time in the other.
    bytes_csv = write_ncu_csv(tmp_path / "bytes.csv", list(names), {"dram__bytes.sum", "lts__t_bytes.sum"})
    rest = write_ncu_csv(
        tmp_path / "flops.csv",
        list(names),
        {
            "sm__sass_thread_inst_executed_op_ffma_pred_on.sum",
            "sm__cycles_elapsed.avg",
            "sm__cycles_elapsed.avg.per_second",
        },
    )
    with bytes_csv.open("rb") as a, rest.open("rb") as b:
        files = [("file", (bytes_csv.name, a)), ("file", (rest.name, b))]
        reply = server.http.post(
            f"{server.url}/v1/traces", params={"wait": 60}, files=files, data={"run_id": str(run_id)}, headers=write
        )
    assert reply.status_code == 200 and reply.json()["status"] == "done", reply.text
    assert reply.json()["run_id"] == run_id
    table = server.http.get(f"{server.url}/v1/runs/{run_id}/roofline", params={"by": "operator"}, headers=read).json()
    with session_scope(server.db.engine) as s:
        expected = roofline_by(s, run_id, "operator")
    assert [r["source"] for r in table] == expected["source"].to_list()
    assert {r["operator"] for r in table if r["source"] == "counters"} >= {"conv", "linear"}
    # Every uploaded file counts, whatever its name (a dot-file is not skipped as in a folder).
    few = list(names)[:5]  # new bytes: a new ncu-only run
    dot = write_ncu_csv(tmp_path / "dot.csv", few, {"dram__bytes.sum"})
    plain = write_ncu_csv(tmp_path / "plain.csv", few, {"sm__cycles_elapsed.avg"})
    with dot.open("rb") as a, plain.open("rb") as b:
        files = [("file", (".bytes.csv", a)), ("file", ("time.csv", b))]
        hidden = server.http.post(f"{server.url}/v1/traces", params={"wait": 60}, files=files, headers=write)
    assert hidden.status_code == 200 and hidden.json()["status"] == "done", hidden.text
    assert hidden.json()["run_id"] != run_id
    with session_scope(server.db.engine) as s:
        from tracehouse.schema.models import NcuMetric

        metrics = set(s.scalars(select(NcuMetric.metric_name).where(NcuMetric.run_id == hidden.json()["run_id"])))
    assert {"dram__bytes.sum", "sm__cycles_elapsed.avg"} <= metrics
    # A timeline trace cannot attach to a run; nothing is queued for it.
    before = _run_count(server)
    bad = _upload(server, DATA / "sd_tiny_cpu_flash.json.gz", write, run_id=str(run_id))
    assert_error(bad, 400, contains="Nsight Compute")
    assert _run_count(server) == before


def _follow_pages(http: httpx.Client, url: str, params: dict, headers: dict) -> tuple[list[dict], list[httpx.Response]]:
    rows, replies = [], []
    reply = http.get(url, params=params, headers=headers)
    while True:
        assert reply.status_code == 200, reply.text
        rows += reply.json()
        replies.append(reply)
        if "link" not in reply.headers:
            return rows, replies
        # The link is relative: resolved against the page it came with.
        reply = http.get(str(reply.url.join(reply.headers["link"].split(">")[0].lstrip("<"))), headers=headers)


def test_big_tables_come_back_in_pages_capped_by_max_rows(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path).migrate()
    srv = AppServer(db, tmp_path / "data", TRACEHOUSE_MAX_ROWS="7").start()
    try:
        run_id = _upload(srv, SD, srv.token("write")).json()["run_id"]
        read = srv.token("read")
        with session_scope(db.engine) as s:
            whole = breakdown(s, run_id, "kernel")
        assert whole.height > 7  # else the cap is not exercised
        url = f"{srv.url}/v1/runs/{run_id}/breakdown"
        rows, replies = _follow_pages(srv.http, url, {"by": "kernel"}, read)
        assert [len(r.json()) for r in replies[:-1]] == [7] * (len(replies) - 1)
        assert {r.headers["x-total-count"] for r in replies} == {str(whole.height)}
        assert [r.headers["x-truncated"] for r in replies] == ["true"] * (len(replies) - 1) + ["false"]
        assert rows == whole.to_dicts()  # every row once, in order, across the pages
        small = srv.http.get(url, params={"by": "kernel", "limit": 2, "offset": 3, "format": "csv"}, headers=read)
        assert pl.read_csv(io.BytesIO(small.content))["total_ns"].to_list() == whole["total_ns"].to_list()[3:5]
        too_many = srv.http.get(url, params={"by": "kernel", "limit": 1000}, headers=read)
        assert len(too_many.json()) == 7  # the server's cap wins
        assert srv.http.get(url, params={"limit": 0}, headers=read).status_code == 422
        assert srv.http.get(url, params={"offset": 10**30}, headers=read).status_code == 422
    finally:
        srv.stop()


def test_reingest_over_rest_needs_write(server: AppServer) -> None:
    write, read = server.token("write"), server.token("read")
    run_id = _upload(server, SD, write).json()["run_id"]
    url = f"{server.url}/v1/runs/{run_id}/reingest"
    assert server.http.post(url, headers=read).status_code == 403
    with session_scope(server.db.engine) as s:
        before = breakdown(s, run_id, "operator")
    reply = server.http.post(url, headers=write)
    assert reply.status_code == 200 and reply.json()["reclassified"] == 0  # same rules, same answer
    assert reply.json()["kernel_count"] == before["kernel_count"].sum()
    with session_scope(server.db.engine) as s:
        assert breakdown(s, run_id, "operator").equals(before)
    assert server.http.post(f"{server.url}/v1/runs/999999/reingest", headers=write).status_code == 404


def test_cli_upload_of_a_folder_attaches_its_counters_to_its_trace(live_server: Server, tmp_path: Path) -> None:
    from tests.test_ncu_link import TRACE, write_ncu_csv
    from tracehouse.ingest.kineto import parse_kineto

    require_shared()
    folder = tmp_path / "experiment"
    folder.mkdir()
    trace = folder / "copy.json.gz"  # new bytes, so this server makes a new run for it
    trace.write_bytes(gzip.compress(gzip.decompress(TRACE.read_bytes()) + b"\n"))
    kernels = parse_kineto(trace).gpu_events.filter(pl.col("kind") == "kernel").sort("correlation")
    write_ncu_csv(folder / "ncu.csv", kernels["name"].to_list())
    token = live_server.token("write")["Authorization"].split()[1]
    out = run_cli("upload", str(folder), "--server", live_server.url, "--token", token, "--json", env=live_server.env)
    assert out.returncode == 0, out.stderr
    timeline, counters = orjson.loads(out.stdout)
    assert timeline["status"] == counters["status"] == "done"
    assert counters["run_id"] == timeline["run_id"]
    refused = run_cli(
        "upload",
        str(folder),
        "--server",
        live_server.url,
        "--token",
        token,
        "--run",
        str(timeline["run_id"]),
        env=live_server.env,
    )
    assert refused.returncode == 2 and "only Nsight Compute counters attach" in refused.stderr
