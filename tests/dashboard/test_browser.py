"""The built-in dashboard in real headless Chromium: log in through the review login page,
charts draw with data, no console errors; a screenshot lands in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cascade.context import Context
from services.bench.scale_data import Generated
from tests.dashboard.conftest import PASSWORD, make_user
from tests.web import ARTIFACTS, chromium, serve

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_dashboard_draws_charts_with_data(
    browser: Any, live_server: str, context: Context, generated: Generated
) -> None:
    make_user(context, "admin", name="ada")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{live_server}/review/login?next=/dashboard", timeout=20_000)
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/dashboard", timeout=20_000)
    errors.clear()  # only the dashboard's own errors count (the login page is not ours)
    page.reload()
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)

    for chart in ("c-cost", "c-ips", "c-share", "c-rates", "c-latency"):
        assert page.locator(f"#{chart} canvas").count() == 1, chart
    # The cost chart's canvas has ink on it, not just a blank box.
    inked = page.evaluate(
        """() => { const c = document.querySelector('#c-cost canvas');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                   return n; }"""
    )
    assert inked > 1000
    assert page.text_content("#k-cpk").startswith("$")
    assert page.text_content("#k-ver") == "v3"
    assert page.locator("#c-queues .bar").count() >= 1
    assert page.locator("#thresholds button", has_text="approve").count() == 1  # admin sees it
    page.click("#spans button[data-span='7d']")
    page.wait_for_selector("body[data-span='7d']", timeout=20_000)
    days = page.evaluate(
        "() => { const x = window.CASCADE_CHARTS['c-cost'].data[0];"
        " return (x[x.length - 1] - x[0]) / 86400; }"
    )
    assert days > 6.5  # the charts now show the 7-day window
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert errors == []
