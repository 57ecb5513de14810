"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real
server over a database holding the tiny Stable Diffusion pair, a shared A100 trace recorded
with shapes, an Nsight Compute run and a fleet: every page loads with no console error and
no failed request, every chart draws as many marks as the analysis has rows, the numbers on
the page are the REST answers, the picker and filters work by clicking, and a token signs in
once into an HttpOnly, SameSite=Strict cookie.  Screenshots land in each test's tmp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from tests import live
from tests.browser import Watch, cell, charts_on, chromium, drawn, number, require_browser, visit
from tests.conftest import BACKENDS, Database
from tests.fixtures import Server
from tracehouse.api.dashboard.render import downsample

pytestmark = pytest.mark.slow  # a server per backend and a browser: about a minute on two busy cores
UI = "/ui"


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[tuple[Server, live.Runs]]:  # type: ignore[no-untyped-def]
    require_browser()
    srv, runs = live.start(
        request.param, tmp_path_factory.mktemp(f"dash-{request.param}"), Server
    )  # a browser needs TCP
    yield srv, runs
    srv.stop()
    srv.db.drop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def headers(served: tuple[Server, live.Runs]) -> dict[str, str]:
    return served[0].token("read")


@pytest.fixture(scope="module")
def signed_in(served, browser, headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The browser state after entering the read token once on the login form."""
    srv, _ = served
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{srv.url}{UI}/")
    assert page.url.startswith(f"{srv.url}{UI}/login"), page.url  # no token: sent to sign in
    page.fill("#token", headers["Authorization"].removeprefix("Bearer "))
    page.click("button[type=submit]")
    page.wait_for_url(f"{srv.url}{UI}/")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def tab(browser, signed_in) -> Iterator[tuple[Any, Watch]]:  # type: ignore[no-untyped-def]
    context = browser.new_context(storage_state=signed_in, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    watch = Watch()
    watch.attach(page)
    yield page, watch
    context.close()


def rest(srv: Server, headers: dict[str, str], path: str, **params: Any) -> Any:
    response = httpx.get(f"{srv.url}{path}", params=params, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_run_page_draws_every_figure_from_the_analyses(served, headers, tab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv, runs = served
    page, watch = tab
    visit(page, watch, f"{srv.url}{UI}/runs/{runs.baseline}", tmp_path / "run.png")
    base = f"/v1/runs/{runs.baseline}"
    operators = rest(srv, headers, f"{base}/breakdown", by="operator")
    assert drawn(page, "operator")["bars"] == len(operators)  # Fig 7: one stacked segment per operator
    for by in ("attention_type", "component", "kernel"):
        assert drawn(page, by)["bars"] == min(10, len(rest(srv, headers, f"{base}/breakdown", by=by)))
    calls = rest(srv, headers, f"{base}/attention-calls")
    assert 0 < drawn(page, "calls")["points"] == sum(c["seq_q"] is not None for c in calls)  # Fig 8
    period = rest(srv, headers, f"{base}/period")
    assert f"Fundamental period: {period[0]['period']} calls" in page.inner_text("#box-calls")
    hist = rest(srv, headers, f"{base}/seq-len-histogram", weight="time")
    assert drawn(page, "histogram")["bars"] == 2 * len(hist)  # Fig 9: by count and by time
    roof = rest(srv, headers, f"{base}/roofline", by="operator")
    placed = [r for r in roof if (r["ai_dram"] or 0) > 0 and (r["gflops_per_s"] or 0) > 0]
    assert drawn(page, "roofline")["points"] == len(placed) > 0  # Fig 5: one point per costed operator
    util = rest(srv, headers, f"{base}/utilization")
    assert drawn(page, "utilization")["bars"] == sum(
        r[c] > 0 for r in util for c in ("compute_ns", "non_compute_ns", "idle_ns")
    )
    # The numbers shown are the REST answers.
    meta = rest(srv, headers, base)
    assert number(page.inner_text('tr[data-key="total_ns"] td')) == meta["total_ns"]
    other = next(r["share"] for r in operators if r["operator"] == "other")
    assert number(page.inner_text('tr[data-key="other_share"] td')) == pytest.approx(other, rel=1e-3)
    page.click("#box-operator summary")  # the data table is one click away
    assert number(cell(page, "operator", "share")) == pytest.approx(operators[0]["share"], rel=1e-3)
    # A download link works with the sign-in cookie and is the REST answer.
    href = page.get_attribute("#box-operator a.download", "href")
    csv = page.request.get(f"{srv.url}{href}")
    assert csv.ok and csv.text() == httpx.get(f"{srv.url}{base}/breakdown?by=operator&format=csv", headers=headers).text


def test_run_page_shows_what_to_fix_and_memory_over_time(served, headers, tab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv, runs = served
    page, watch = tab
    visit(page, watch, f"{srv.url}{UI}/runs/{runs.memory}", tmp_path / "memory-run.png")
    advice = rest(srv, headers, f"/v1/runs/{runs.memory}/advice")
    assert len(advice) >= 2 and page.locator('table[data-table="advice"] tbody tr').count() == len(advice)
    for row, finding in enumerate(advice):  # the table is open, best first, as REST ranks them
        assert cell(page, "advice", "rule", row) == finding["rule"]
    timeline = rest(srv, headers, f"/v1/runs/{runs.memory}/memory-timeline")
    assert timeline and drawn(page, "memory")["points"] == len(timeline)  # a marker per time bucket
    allocated = page.evaluate(
        "() => document.getElementById('chart-memory').data.filter(t => t.name.endsWith(' allocated')).flatMap(t => t.y)"
    )
    assert max(allocated) == max(r["allocated_bytes"] for r in timeline)
    visit(page, watch, f"{srv.url}{UI}/runs/{runs.baseline}", tmp_path / "run-without-memory.png")
    assert "memory" not in charts_on(page) and "No memory events" in page.inner_text("#box-memory")


def test_gpu_run_page_roofline_has_the_device_ceilings(served, headers, tab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv, runs = served
    if runs.gpu is None:
        pytest.skip("shared traces not found")
    page, watch = tab
    visit(page, watch, f"{srv.url}{UI}/runs/{runs.gpu}", tmp_path / "gpu-run.png")
    roof = rest(srv, headers, f"/v1/runs/{runs.gpu}/roofline", by="operator")
    assert roof[0]["peak_flops_s"] and roof[0]["peak_bandwidth_bytes_s"]
    ceilings = page.evaluate(
        "() => document.getElementById('chart-roofline').data.find(t => t.name === 'device ceilings').y"
    )
    assert max(ceilings) == pytest.approx(roof[0]["peak_flops_s"])
    launches = rest(srv, headers, f"/v1/runs/{runs.gpu}/launches", by="operator")[:10]
    assert drawn(page, "launches")["bars"] == sum((r["gpu_ns"] > 0) + (r["launch_ns"] > 0) for r in launches)
    assert "Attention calls" in page.inner_text("main") and "no attention calls" in page.inner_text("#box-calls")
    if runs.ncu is None:
        return
    # An Nsight Compute run: its roofline points are measured (diamonds), and it has no timeline.
    visit(page, watch, f"{srv.url}{UI}/runs/{runs.ncu}", tmp_path / "ncu-run.png")
    counted = [
        r
        for r in rest(srv, headers, f"/v1/runs/{runs.ncu}/roofline", by="operator")
        if r["source"] == "counters" and (r["ai_dram"] or 0) > 0 and (r["gflops_per_s"] or 0) > 0
    ]
    symbols = page.evaluate("() => document.getElementById('chart-roofline').data.map(t => [t.name, t.x.length])")
    assert symbols == [["counters", len(counted)]] and drawn(page, "roofline")["points"] == len(counted) > 0
    assert charts_on(page) == ["roofline"]


def test_runs_filters_sort_and_compare_picker_by_clicking(served, headers, tab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv, runs = served
    page, watch = tab
    visit(page, watch, f"{srv.url}{UI}/", tmp_path / "runs.png")
    every = {r["run_id"] for r in rest(srv, headers, "/v1/runs")}

    def shown() -> list[int]:
        return [int(x) for x in page.eval_on_selector_all("#runs-table tbody tr", "rs => rs.map(r => r.dataset.run)")]

    assert set(shown()) == every
    page.select_option("#filter-model", "stable-diffusion")
    page.click("#apply-filters")
    page.wait_for_load_state("load")
    expected = [r["run_id"] for r in rest(srv, headers, "/v1/runs", model="stable-diffusion")]
    assert shown() == expected == [runs.baseline, runs.flash]
    page.click('a[data-sort="total_ns"]')  # ascending, then descending
    page.wait_for_load_state("load")
    page.click('a[data-sort="total_ns"]')
    page.wait_for_load_state("load")
    totals = [
        number(t)
        for t in page.eval_on_selector_all('#runs-table td[data-col="total_ns"]', "ts => ts.map(t => t.innerText)")
    ]
    assert totals == sorted(totals, reverse=True) and len(totals) == 2
    assert watch.take() == []
    page.click(f'#runs-table tr[data-run="{runs.flash}"] td[data-col="run_id"] a')  # each run links to its page
    page.wait_for_url(f"**{UI}/runs/{runs.flash}")
    page.go_back()
    page.check(f'input[name="run"][value="{runs.baseline}"]')
    page.check(f'input[name="run"][value="{runs.flash}"]')
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    visit(page, watch, page.url, tmp_path / "compare.png")
    reference, other = (
        int(x)
        for x in page.eval_on_selector_all(
            'table[data-table="compared"] td[data-col="run_id"]', "ts => ts.map(t => t.innerText)"
        )
    )
    assert (reference, other) == (runs.baseline, runs.flash)  # the topmost ticked row (slowest first) is the reference
    normalized = [rest(srv, headers, f"/v1/runs/{r}/normalized", reference=reference) for r in (reference, other)]
    assert drawn(page, "normalized")["bars"] == sum(len(n) for n in normalized)
    speedups = rest(srv, headers, "/v1/compare", baseline=reference, other=other)
    assert drawn(page, "operator-speedups")["bars"] == sum(r["speedup"] is not None for r in speedups)
    summary = rest(srv, headers, "/v1/compare", baseline=reference, other=other, summary="true")[0]
    assert drawn(page, "amdahl")["bars"] == 3
    page.click("#box-amdahl summary")
    assert number(cell(page, "amdahl", "end_to_end_speedup")) == pytest.approx(summary["end_to_end_speedup"], rel=1e-3)
    assert number(cell(page, "amdahl", "amdahl_speedup")) == pytest.approx(summary["amdahl_speedup"], rel=1e-3)


def test_table_ii_sweep_hardware_fleet(served, headers, tab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv, runs = served
    page, watch = tab
    visit(page, watch, f"{srv.url}{UI}/speedups", tmp_path / "speedups.png")
    pairs = rest(srv, headers, "/v1/speedups")
    assert len(pairs) == 1 and page.locator('table[data-table="speedups"] tbody tr').count() == 1
    assert number(cell(page, "speedups", "end_to_end_speedup")) == pytest.approx(
        pairs[0]["end_to_end_speedup"], rel=1e-3
    )
    assert cell(page, "speedups", "paper_a100") == "1.67"  # the paper's Stable Diffusion figure beside ours
    assert drawn(page, "speedups")["bars"] == 3

    visit(page, watch, f"{srv.url}{UI}/sweep", tmp_path / "sweep.png")
    sweep = rest(
        srv, headers, "/v1/sweep", model="stable-diffusion", knob="image_size", operator=["attention", "conv", "total"]
    )
    assert drawn(page, "sweep")["points"] == sum(r["total_ns"] > 0 for r in sweep) > 0
    split = [rest(srv, headers, f"/v1/runs/{r}/temporal-spatial") for r in (runs.baseline, runs.flash)]
    assert drawn(page, "types-time")["bars"] == sum(len(s) for s in split)
    assert drawn(page, "types-flops")["bars"] == sum((r["flops"] or 0) > 0 for s in split for r in s) > 0

    # Default choice: the two stable-diffusion runs differ in backend, which the page says.
    visit(page, watch, f"{srv.url}{UI}/hardware", tmp_path / "hardware-refused.png")
    assert "differ in attention_backend" in page.inner_text("main")
    page.fill('#hardware-form input[name="filters"]', "attention_backend=flash")
    page.click("#hardware-form button")
    page.wait_for_load_state("load")
    visit(page, watch, page.url, tmp_path / "hardware.png")
    devices = rest(srv, headers, "/v1/hardware", model="stable-diffusion", filter="attention_backend=flash")
    assert drawn(page, "hardware")["bars"] == len(devices) > 0

    visit(page, watch, f"{srv.url}{UI}/fleet", tmp_path / "fleet.png")
    fleet = rest(srv, headers, "/v1/fleet/summary", by="family")
    assert drawn(page, "gpus")["bars"] == sum(r["gpus_per_bparam"] is not None for r in fleet) > 0
    assert drawn(page, "memory")["bars"] == sum(r["mean_mem_util"] is not None for r in fleet) > 0
    page.click("#box-gpus summary")
    assert number(cell(page, "gpus", "gpus_per_bparam")) == pytest.approx(fleet[0]["gpus_per_bparam"], rel=1e-3)
    ratios = [r[c] for r in fleet for c in ("gpus_per_bparam_vs_llm", "mean_mem_util_vs_llm")]
    assert drawn(page, "ratio")["bars"] == sum(v is not None for v in ratios) > 0
    assert charts_on(page) == ["gpus", "memory", "ratio"]


def test_sign_in_cookie_is_httponly_strict_and_reads_only(served, browser, headers) -> None:  # type: ignore[no-untyped-def]
    srv, runs = served
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{srv.url}{UI}/runs/{runs.baseline}")
    page.fill("#token", "th_not-a-token")
    page.click("button[type=submit]")
    assert "invalid or revoked" in page.inner_text("#login-error") and not context.cookies()
    page.fill("#token", headers["Authorization"].removeprefix("Bearer "))
    page.click("button[type=submit]")
    page.wait_for_url(f"**{UI}/runs/{runs.baseline}")  # back where the reader was going
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == UI
    assert page.evaluate("() => document.cookie") == ""  # page scripts cannot read the token
    via_cookie = page.request.get(f"{srv.url}{UI}/rest/v1/runs/{runs.baseline}")
    assert (
        via_cookie.ok and via_cookie.json()["total_ns"] == rest(srv, headers, f"/v1/runs/{runs.baseline}")["total_ns"]
    )
    # Only GET is forwarded: the dashboard never writes, whatever the token may do.
    assert page.request.delete(f"{srv.url}{UI}/rest/v1/runs/{runs.baseline}").status == 405
    assert httpx.get(f"{srv.url}/v1/runs/{runs.baseline}", headers=headers).status_code == 200
    page.click("header form button")  # sign out
    page.wait_for_url(f"**{UI}/login")
    assert not context.cookies()
    assert httpx.get(f"{srv.url}{UI}/", follow_redirects=False).status_code == 303
    context.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_read_needs_no_login(backend: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = Database(backend, tmp_path).migrate()
    srv = Server(db, tmp_path / "data", TRACEHOUSE_PUBLIC_READ="1").start()
    try:
        page = browser.new_page()
        watch = Watch()
        watch.attach(page)
        visit(page, watch, f"{srv.url}/", tmp_path / "empty-runs.png")  # / sends a browser to /ui/
        assert page.url == f"{srv.url}{UI}/" and "No run matches" in page.inner_text("#runs-table")
        assert httpx.get(f"{srv.url}{UI}/static/plotly.min.js").headers["content-type"].startswith("text/javascript")
        missing = page.goto(f"{srv.url}{UI}/runs/12345")  # an error is a page, with its status
        assert (
            missing is not None
            and missing.status == 404
            and "run 12345 does not exist" in page.inner_text("#page-error")
        )
        page.close()
    finally:
        srv.stop()
        db.drop()


def test_downsample_keeps_the_envelope() -> None:
    """Charts with more than a few thousand points are cut down on the server, keeping each
    bucket's extremes, so a single spike still shows."""
    frame = pl.DataFrame({"call": range(100_000), "seq_q": [4096 if i == 77_777 else i % 64 for i in range(100_000)]})
    small = downsample(frame, "seq_q", limit=2000)
    assert small.height <= 2000 and small["call"].is_sorted()
    assert small["seq_q"].max() == 4096 and small["seq_q"].min() == 0
    assert downsample(frame.head(50), "seq_q").equals(frame.head(50))
