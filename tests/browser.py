"""Driving Debian's chromium with Playwright for the dashboard tests: launch flags, a page
watcher that records console errors and failed requests, and readers for what a chart drew."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No browser download (none can be fetched here): Playwright drives the system chromium, with
# everything that would phone home turned off.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_browser() -> Any:
    """The sync Playwright module, or a skip naming what is missing."""
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])"
    )
    if not CHROMIUM.is_file() and not shutil.which("chromium"):
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium (scripts/setup.sh does it as root)")
    return playwright


@contextmanager
def chromium() -> Iterator[Any]:
    sync_api = require_browser()
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What went wrong while a page was open: console errors, uncaught exceptions, requests
    that failed or answered 4xx / 5xx."""

    problems: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))

    def take(self) -> list[str]:
        found, self.problems[:] = list(self.problems), []
        return found


def visit(page: Any, watch: Watch, url: str, shot: Path) -> None:
    """Open ``url``, wait until every chart has drawn, screenshot it and fail on any problem
    or on a blank page."""
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    page.wait_for_load_state("load")
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('div.chart'))
                              .every(c => c.querySelector('svg.main-svg'))""",
        timeout=30_000,
    )
    page.screenshot(path=str(shot), full_page=True)
    assert watch.take() == [], url
    assert len(page.inner_text("main").strip()) > 100, f"{url} rendered blank"
    heights = page.eval_on_selector_all("div.chart", "cs => cs.map(c => c.getBoundingClientRect().height)")
    assert all(h > 150 for h in heights), f"{url}: a chart has no height: {heights}"


def drawn(page: Any, key: str) -> dict[str, int]:
    """SVG marks in chart ``key``: bars (with an area) and scatter markers."""
    return page.evaluate(
        """key => {
        const c = document.getElementById('chart-' + key);
        // A missing value still gets a bar path, of zero size: only bars with an area count.
        const sized = p => { const b = p.getBBox(); return b.width > 0 && b.height > 0; };
        return {bars: Array.from(c.querySelectorAll('.barlayer .point path')).filter(sized).length,
                points: c.querySelectorAll('.scatterlayer .point').length};
    }""",
        key,
    )


def charts_on(page: Any) -> list[str]:
    return page.eval_on_selector_all("div.chart", "cs => cs.map(c => c.id.slice(6))")


def cell(page: Any, table: str, column: str, row: int = 0) -> str:
    return (
        page.locator(f'table[data-table="{table}"] tbody tr').nth(row).locator(f'td[data-col="{column}"]').inner_text()
    )


def number(text: str) -> float:
    return float(text.replace(",", "").strip())
