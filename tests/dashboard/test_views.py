"""The dashboard's page and JSON endpoints through the Flask test client."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cascade.context import Context
from services.bench.scale_data import Generated
from tests.dashboard.conftest import make_user

JSON = {"Accept": "application/json"}


def login(client: Any, user_id: int) -> None:
    with client.session_transaction() as s:
        s["user_id"] = user_id


def test_json_endpoints_need_login(client: Any) -> None:
    assert client.get("/dashboard/api/cost", headers=JSON).status_code == 401


def test_browsers_are_sent_to_the_login_page(client: Any) -> None:
    r = client.get("/dashboard", headers={"Accept": "text/html"})
    assert r.status_code == 302 and "/review/login" in r.headers["Location"]


def test_moderators_are_refused(client: Any, context: Context) -> None:
    login(client, make_user(context, "moderator"))
    assert client.get("/dashboard/api/cost", headers=JSON).status_code == 403
    assert client.get("/dashboard", headers={"Accept": "text/html"}).status_code == 403


def test_bad_span_is_a_400(client: Any, context: Context) -> None:
    login(client, make_user(context, "ops"))
    r = client.get("/dashboard/api/cost?span=1y", headers=JSON)
    assert r.status_code == 400 and "span must be one of" in r.get_json()["error"]["message"]


def test_cost_endpoint_matches_the_generated_decisions(
    client: Any, context: Context, generated: Generated
) -> None:
    login(client, make_user(context, "ops"))
    data = client.get("/dashboard/api/cost?span=7d", headers=JSON).get_json()
    n = generated.n
    assert data["totals"]["images"] == n
    shares = data["totals"]["share"]
    for decider in ("stage1", "stage2", "human", "cache"):
        assert shares[decider] == pytest.approx(float(np.mean(generated.decider == decider)))
    assert data["totals"]["audit_rate"] == pytest.approx(float(generated.audit.mean()))
    dollars = sum(data["totals"]["dollars"].values())
    assert data["summary"]["cost_per_1000"] == pytest.approx(1000 * dollars / n)
    assert data["totals"]["cost_per_image"] == pytest.approx(dollars / n)
    # Versions 2 and 3 were activated inside the window (version 1 at its very start).
    assert [c["version"] for c in data["changes"]][-2:] == [2, 3]
    assert len(data["t"]) == len(data["cost_per_image"]["compute"]) == len(data["images_per_s"])


def test_latency_queues_and_thresholds(client: Any, context: Context, generated: Generated) -> None:
    login(client, make_user(context, "ops"))
    latency = client.get("/dashboard/api/latency?span=7d", headers=JSON).get_json()
    assert latency["samples"] > 0
    assert 0 < latency["summary"]["p50"] <= latency["summary"]["p95"] <= latency["summary"]["p99"]
    queues = client.get("/dashboard/api/queues", headers=JSON).get_json()
    waiting = int((generated.audit & ~generated.labelled).sum())
    assert waiting > 0 and queues["review_backlog"] == {"audit": float(waiting)}
    assert queues["review_oldest_age_s"] > 0
    thresholds = client.get("/dashboard/api/thresholds", headers=JSON).get_json()
    assert thresholds["active"] == 3
    assert [s["status"] for s in thresholds["sets"]][:2] == ["proposed", "active"]


def test_page_shows_admin_buttons_to_admins_only(client: Any, context: Context) -> None:
    login(client, make_user(context, "ops"))
    page = client.get("/dashboard", headers={"Accept": "text/html"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "uPlot.iife.min.js" in html and "isAdmin: false" in html
    login(client, make_user(context, "admin"))
    assert "isAdmin: true" in client.get("/dashboard/").get_data(as_text=True)


def test_vendored_chart_library_is_served_with_its_license(client: Any) -> None:
    js = client.get("/dashboard/static/uplot/uPlot.iife.min.js")
    assert js.status_code == 200 and b"uPlot" in js.data
    assert b"MIT" in client.get("/dashboard/static/uplot/LICENSE").data
