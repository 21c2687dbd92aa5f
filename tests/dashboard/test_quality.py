"""The dashboard's decision-quality panel: images the OOD gate sent to a human, the active
certificate, the last drift alarm."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert

from cascade.context import Context
from cascade.db.schema import ReviewItem, utcnow
from cascade.db.session import session_scope
from feedback import rollout
from feedback.retune import retune
from services.bench.scale_data import Generated
from tests.dashboard.conftest import PASSWORD, make_user
from tests.dashboard.test_views import JSON, login
from tests.feedback.factories import add_submissions
from tests.feedback.populations import population
from tests.web import chromium, serve

pytestmark = pytest.mark.integration


def test_panel_counts_ood_and_shows_the_certificate(client: Any, context: Context) -> None:
    login(client, make_user(context, "ops"))
    empty = client.get("/dashboard/api/decisions", headers=JSON).get_json()
    assert empty["certificate"] is None and empty["ood"]["images"] == 0
    pop = population(4000, seed=5)
    add_submissions(context, s1=pop.s1, s2=pop.s2, label=pop.label)
    gated = add_submissions(context, s1=np.full(3, 0.5), audit=False, created_at=utcnow())
    with session_scope(context.sessions) as db:
        db.execute(insert(ReviewItem), [{"submission_id": s, "reason": "ood", "state": "pending",
                                         "created_at": utcnow()} for s in gated])  # fmt: skip
    retune(context, by="ops", reason="test", auto_activate=True)
    body = client.get("/dashboard/api/decisions?span=24h", headers=JSON).get_json()
    assert body["ood"] == {"images": 4003, "to_human": 3, "share": pytest.approx(3 / 4003)}
    cert = body["certificate"]
    assert cert["certified"] and cert["alpha"] == context.settings.alpha
    lo, hi = cert["miss_interval"]
    assert lo <= cert["miss_rate_estimate"] <= hi
    assert body["last_drift_alarm"] is None
    with context.sessions() as db:
        assert rollout.last_drift_alarm(db) is None
    page = client.get("/dashboard", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'id="quality"' in page


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.mark.browser
def test_panel_renders_in_chromium(
    browser: Any, live_server: str, context: Context, generated: Generated
) -> None:
    make_user(context, "ops", name="olga")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{live_server}/review/login?next=/dashboard", timeout=20_000)
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    terms = page.locator("#quality dt").all_text_contents()
    assert "out of distribution → human" in terms and "last drift alarm" in terms
