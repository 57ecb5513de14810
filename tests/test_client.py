"""The Python client against a live server holding real traces: each query family's DataFrame
equals the analysis function's for the same query (through Parquet, across pages), uploads and
jobs work end to end, errors keep the server's shape, and the client loads no torch, FastAPI or
SQLAlchemy."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy.orm import Session

from tests import live
from tests.conftest import BACKENDS, KINETO_DIR, require_shared
from tests.fixtures import Server
from tracehouse.analyses import (
    advise,
    attention,
    check,
    compare,
    counters,
    critical_path,
    diff,
    explain,
    fleet_usage,
    hardware_compare,
    history,
    idle,
    launches,
    memory_model,
    memory_peak,
    memory_timeline,
    rank_jobs,
    roofline,
    sequence,
    steps,
    suite,
    sweep,
    utilization,
)
from tracehouse.analyses.breakdown import breakdown
from tracehouse.analyses.params import typed_filters
from tracehouse.analyses.runs import list_runs, run_kernels
from tracehouse.client import Client
from tracehouse.core.errors import TracehouseError
from tracehouse.schema.db import session_scope

PAGE = 30  # the server's row cap here: the larger tables come back in several pages
Query = tuple[str, Callable[[Client], pl.DataFrame], Callable[[Session], pl.DataFrame]]


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[tuple[Server, live.Runs]]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"client-{request.param}")
    srv, runs = live.start(request.param, tmp, Server, TRACEHOUSE_MAX_ROWS=str(PAGE))
    yield srv, runs
    srv.stop()
    srv.db.drop()


def _queries(r: live.Runs) -> list[Query]:
    """(label, the client's call, the analysis function's call) for every query family."""
    sd, flash, gpu, ncu = r.baseline, r.flash, r.gpu, r.ncu
    pinned = {"attention_backend": "baseline"}
    queries: list[Query] = [
        ("runs", lambda c: c.runs(), list_runs),
        ("runs model", lambda c: c.runs(model="stable-diffusion"), lambda s: list_runs(s, model="stable-diffusion")),
        ("kernels", lambda c: c.kernels(sd), lambda s: run_kernels(s, sd)),
        *(
            (f"breakdown {by}", lambda c, by=by: c.breakdown(sd, by=by), lambda s, by=by: breakdown(s, sd, by))
            for by in ("operator", "attention_type", "seq_len", "component", "kernel")
        ),
        (
            "normalized",
            lambda c: c.normalized(flash, sd, by="seq_len"),
            lambda s: compare.breakdown_normalized(s, flash, sd, "seq_len"),
        ),
        ("compare", lambda c: c.compare(sd, flash), lambda s: compare.compare_runs(s, sd, flash)),
        (
            "compare summary",
            lambda c: c.compare(sd, flash, summary=True, operator="conv"),
            lambda s: compare.compare_summary(s, sd, flash, "conv"),
        ),
        ("diff", lambda c: c.diff(sd, flash), lambda s: diff.diff(s, sd, flash)),
        ("check", lambda c: c.check(flash, "openapi"), lambda s: check.check(s, [flash], "openapi")),
        ("baselines", lambda c: c.baselines(), check.list_baselines),
        ("history", lambda c: c.history("stable-diffusion"), lambda s: history.history(s, "stable-diffusion")),
        ("matrix", lambda c: c.matrix(model="stable-diffusion"), lambda s: history.matrix(s, model="stable-diffusion")),
        (
            "speedups",
            lambda c: c.speedups(model="stable-diffusion"),
            lambda s: compare.backend_speedups(s, "baseline", "flash", model="stable-diffusion"),
        ),
        ("attention calls", lambda c: c.attention_calls(sd), lambda s: sequence.attention_calls(s, sd)),
        (
            "histogram",
            lambda c: c.seq_len_histogram(sd, weight="time", key="seq_kv"),
            lambda s: sequence.seq_len_histogram(s, sd, "time", "seq_kv"),
        ),
        ("period", lambda c: c.period(sd), lambda s: sequence.fundamental_period(s, sd)),
        (
            "sweep",
            lambda c: c.sweep("stable-diffusion", "image_size", ["attention", "total"], **pinned),
            lambda s: sweep.sweep(s, "stable-diffusion", "image_size", ["attention", "total"], **pinned),
        ),
        ("temporal-spatial", lambda c: c.temporal_spatial(sd), lambda s: attention.temporal_vs_spatial(s, sd)),
        (
            "attention flops",
            lambda c: c.attention_flops([8, 16, 32], 24, 40, heads=8, head_dim=40),
            lambda s: attention.attention_flops_by_frames([8, 16, 32], 24, 40, heads=8, head_dim=40),
        ),
        ("roofline", lambda c: c.roofline(sd, by="kernel"), lambda s: roofline.roofline_by(s, sd, "kernel")),
        ("operator costs", lambda c: c.operator_costs(sd), lambda s: roofline.roofline(s, sd)),
        (
            "memory model",
            lambda c: c.memory_model(512, 8, 77, 4, downsample_factor=2, heads=8),
            lambda s: memory_model.similarity_matrix_memory(512, 8, 77, 4, 2, heads=8),
        ),
        ("run memory model", lambda c: c.run_memory_model(sd), lambda s: memory_model.memory_model_vs_run(s, sd)),
        (
            "hardware",
            lambda c: c.hardware("stable-diffusion", **pinned),
            lambda s: hardware_compare.compare_hardware(
                s, "stable-diffusion", "slowest", **typed_filters(["attention_backend=baseline"])
            ),
        ),
        (
            "fleet summary",
            lambda c: c.fleet_summary(by="family,phase"),
            lambda s: fleet_usage.fleet_summary(s, "family,phase", None),
        ),
        (
            "ratio spread",
            lambda c: c.ratio_spread("ttv", phase="training"),
            lambda s: fleet_usage.ratio_spread(s, "ttv", "training"),
        ),
        ("top jobs", lambda c: c.top_jobs(12), lambda s: fleet_usage.top_jobs(s, 12, None)),
        ("models", lambda c: c.models(), fleet_usage.models_list),
        ("memory peak", lambda c: c.memory_peak(sd), lambda s: memory_peak.memory_peak(s, sd)),
        ("memory peak measured", lambda c: c.memory_peak(r.memory), lambda s: memory_peak.memory_peak(s, r.memory)),
        (
            "memory timeline",
            lambda c: c.memory_timeline(r.memory, points=50, device="cpu"),
            lambda s: memory_timeline.memory_timeline(s, r.memory, 50, "cpu"),
        ),
        (
            "memory peak live",
            lambda c: c.memory_peak_live(r.memory),
            lambda s: memory_timeline.memory_peak_live(s, r.memory),
        ),
        ("advice", lambda c: c.advice(sd), lambda s: advise.advise(s, sd)),
        ("advice rules", lambda c: c.advice_rules(), lambda s: advise.rule_table()),
        ("model points", lambda c: c.model_points(), suite.model_points),
    ]
    if gpu is not None and ncu is not None:
        queries += [
            ("utilization", lambda c: c.utilization(gpu), lambda s: utilization.temporal_breakdown(s, gpu)),
            *(
                (
                    f"launches {by}",
                    lambda c, by=by: c.launches(gpu, by=by),
                    lambda s, by=by: launches.launch_overhead(s, gpu, by),
                )
                for by in ("operator", "kernel")
            ),
            ("counters", lambda c: c.counters(ncu), lambda s: counters.counter_roofline(s, ncu)),
            ("idle", lambda c: c.idle(gpu), lambda s: idle.idle_time_breakdown(s, gpu)),
            (
                "critical path",
                lambda c: c.critical_path(gpu, step=551),
                lambda s: critical_path.critical_path(s, gpu, 551),
            ),
            ("steps", lambda c: c.steps(gpu), lambda s: steps.run_steps(s, gpu)),
            ("jobs", lambda c: c.jobs(), rank_jobs.job_ranks),
            ("ceilings", lambda c: c.ceilings(), suite.device_ceilings),
            (
                "compute comm",
                lambda c: c.compute_comm(by_world_size=True),
                lambda s: suite.compute_vs_communication(s, None, True),
            ),
            *(
                (
                    f"explain {view}",
                    lambda c, view=view: c.explain(gpu, view=view),
                    lambda s, view=view: explain.explain_view(s, gpu, view),
                )
                for view in ("kernels", "summary", "rules")
            ),
        ]
    return queries


def _route_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[0-9]+", re.escape(template)) + "$")


def test_every_query_family_equals_the_analysis_function(served: tuple[Server, live.Runs]) -> None:
    require_shared()
    srv, runs = served
    requested: set[str] = set()
    with (
        Client(srv.url, srv.token("read")["Authorization"].split()[1]) as client,
        session_scope(srv.db.engine) as session,
    ):
        client._http.event_hooks["request"].append(lambda request: requested.add(request.url.path))
        for label, remote, local in _queries(runs):
            got, expected = remote(client), local(session)
            assert expected.height > 0 or label == "top jobs", f"{label}: the data exercise nothing"
            try:
                assert_frame_equal(got, expected, check_exact=True)
            except AssertionError as exc:
                raise AssertionError(f"{label}: {exc}") from None
        paged = client._http.get("/v1/runs/1/breakdown", params={"by": "kernel", "format": "parquet"})
        assert paged.headers["X-Truncated"] == "true"  # the comparisons above went through pages
    # Every table route of the server has a client method, and the methods above used them all.
    document = httpx.get(srv.url + "/openapi.json").json()
    tables = [
        p
        for p, ops in document["paths"].items()
        if "get" in ops and any(q["name"] == "format" for q in ops["get"].get("parameters", []))
    ]
    unused = [t for t in tables if not any(_route_pattern(t).match(path) for path in requested)]
    assert not unused, f"table routes the client never asked: {unused}"


def test_upload_wait_and_jobs(served: tuple[Server, live.Runs]) -> None:
    require_shared()
    srv, _ = served
    token = srv.token("write")["Authorization"].split()[1]
    with Client(srv.url, token) as client, session_scope(srv.db.engine) as session:
        job = client.upload(
            KINETO_DIR / "mi250_rocm.json.gz", model="llama", attention_backend="flash", batch=4, lab="a"
        )
        assert job["status"] == "done" and job["run_id"] is not None
        assert_frame_equal(client.breakdown(job["run_id"]), breakdown(session, job["run_id"], "operator"))
        run = client.run(job["run_id"])
        assert (run["model"], run["attention_backend"], run["batch"], run["tags"]["lab"]) == ("llama", "flash", 4, "a")
        edited = client.edit_run(job["run_id"], model="parti", batch=None, tags={"lab": None, "fixed": "yes"})
        assert (edited["model"], edited["batch"], edited["tags"].get("lab"), edited["tags"]["fixed"]) == (
            "parti",
            None,
            None,
            "yes",
        )
        queued = client.upload(KINETO_DIR / "triton_example.json.gz", wait=False)
        assert queued["status"] in ("queued", "running") and queued["run_id"] is None
        finished = client.wait(queued["job_id"])
        assert finished["status"] == "done" and client.job(queued["job_id"]) == finished
        assert client.runs()["run_id"].to_list().count(finished["run_id"]) >= 1


def test_errors_keep_the_servers_shape(served: tuple[Server, live.Runs], tmp_path: Path) -> None:
    srv, _ = served
    with Client(srv.url, srv.token("write")["Authorization"].split()[1]) as client:
        with pytest.raises(TracehouseError) as missing:
            client.breakdown(999_999)
        assert (missing.value.status, missing.value.code, missing.value.exit_code) == (404, "not_found", 2)
        assert "run 999999 does not exist" in missing.value.message
        bad = tmp_path / "bad.json.gz"
        bad.write_bytes(b"\x1f\x8b truncated")
        with pytest.raises(TracehouseError) as refused:
            client.upload(bad)
        assert (refused.value.status, refused.value.code) == (422, "bad_trace")
    with Client(srv.url) as anonymous, pytest.raises(TracehouseError) as denied:
        anonymous.runs()
    assert denied.value.status == 401


def test_the_client_loads_no_torch_fastapi_or_sqlalchemy(served: tuple[Server, live.Runs]) -> None:
    srv, runs = served
    script = (
        f"import sys; from tracehouse.client import Client\n"
        f"frame = Client({srv.url!r}, {srv.token('read')['Authorization'].split()[1]!r})"
        f".breakdown({runs.baseline}, by='operator')\n"
        "assert frame.height > 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastapi', 'sqlalchemy', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
