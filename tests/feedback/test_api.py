import secrets

import numpy as np
import pytest
from flask.testing import FlaskClient

from cascade.context import Context
from cascade.db.schema import User
from services.auth import hash_password
from tests.feedback.factories import add_submissions, issue_key
from tests.feedback.populations import population

pytestmark = pytest.mark.integration


def login(ctx: Context, client: FlaskClient, role: str) -> dict[str, str]:
    """A session for a new user of ``role``; returns the CSRF header for its requests."""
    with ctx.sessions() as db:
        user = User(
            username=f"{role}-{secrets.token_hex(3)}",
            password_hash=hash_password("x" * 12),
            role=role,
        )
        db.add(user)
        db.commit()
        user_id = user.id
    token = secrets.token_urlsafe(16)
    with client.session_transaction() as sess:
        sess["user_id"] = user_id
        sess["csrf"] = token
    return {"X-CSRF-Token": token}


@pytest.fixture
def audited(context: Context) -> Context:
    pop = population(3000, seed=5)
    add_submissions(context, s1=pop.s1, s2=pop.s2, label=pop.label, p=0.02)
    return context


ADMIN_POSTS = ["/v1/thresholds/retune", "/v1/thresholds/1/activate", "/v1/thresholds/rollback"]


def test_admin_endpoints_refuse_without_an_admin_login(
    context: Context, client: FlaskClient
) -> None:
    for path in ADMIN_POSTS:
        assert client.post(path, json={}).status_code == 401, path
        browser = client.post(path, headers={"Accept": "text/html"})
        assert browser.status_code == 302 and "/review/login" in browser.headers["Location"]
    headers = login(context, client, "ops")
    for path in ADMIN_POSTS:
        assert client.post(path, json={}, headers=headers).status_code == 403, path


def test_admin_endpoints_need_the_csrf_token(context: Context, client: FlaskClient) -> None:
    login(context, client, "admin")
    assert client.post("/v1/thresholds/rollback", json={}).status_code == 400
    wrong = {"X-CSRF-Token": "nope"}
    assert client.post("/v1/thresholds/rollback", json={}, headers=wrong).status_code == 403


def test_reading_thresholds_needs_a_login(context: Context, client: FlaskClient) -> None:
    assert client.get("/v1/thresholds").status_code == 401
    login(context, client, "ops")
    body = client.get("/v1/thresholds").get_json()
    assert body["active_version"] == 0 and body["items"] == []
    active = client.get("/v1/thresholds/active").get_json()
    assert active["version"] == 0 and active["thresholds"]["t1_lo"] == 0.05


def test_retune_activate_rollback_over_http(audited: Context, client: FlaskClient) -> None:
    headers = login(audited, client, "admin")
    bad = client.post("/v1/thresholds/retune", json={"alpha": 2}, headers=headers)
    assert bad.status_code == 400 and "alpha" in bad.get_json()["error"]["message"]
    r = client.post("/v1/thresholds/retune", json={"reason": "ticket 7"}, headers=headers)
    assert r.status_code == 201
    p = r.get_json()
    assert p["certified"] and not p["activated"] and p["miss_rate_bound"] <= p["alpha"]
    assert p["estimate"]["n"] == 3000
    v = p["version"]
    r = client.post(f"/v1/thresholds/{v}/activate", headers=headers)
    assert r.status_code == 200 and r.get_json()["active"]["version"] == v
    active = client.get("/v1/thresholds/active").get_json()
    assert active["version"] == v and active["activated_by"].startswith("admin-")
    assert active["reason"] == "ticket 7" and active["details"]["certified"]
    listed = client.get("/v1/thresholds").get_json()
    assert listed["active_version"] == v and [i["version"] for i in listed["items"]] == [v]
    r = client.post("/v1/thresholds/rollback", headers=headers)
    assert r.status_code == 200 and r.get_json()["active"]["version"] == 0
    assert client.post("/v1/thresholds/rollback", headers=headers).status_code == 409
    assert client.post("/v1/thresholds/99/activate", headers=headers).status_code == 404


def test_upload_services_report_errors_with_their_key(
    context: Context, client: FlaskClient
) -> None:
    key = issue_key(context, "uploads")
    other = issue_key(context, "someone-else")
    allowed = add_submissions(context, s1=np.array([0.01]), audit=False, tenant_id=key.tenant_id,
                              decision="allow")  # fmt: skip
    blocked = add_submissions(context, s1=np.array([0.99]), audit=False, tenant_id=key.tenant_id,
                              decision="block")  # fmt: skip
    auth = {"Authorization": f"Bearer {key.key}"}
    body = {"submission_id": allowed[0], "kind": "miss", "source": "report", "note": "nsfw"}
    assert client.post("/v1/errors", json=body).status_code == 401
    r = client.post("/v1/errors", json=body, headers=auth)
    assert r.status_code == 201 and r.get_json()["kind"] == "miss"
    assert r.get_json()["threshold_version"] == 0
    assert client.post("/v1/errors", json=body, headers=auth).status_code == 200  # idempotent
    clash = dict(body, kind="false_block")
    assert client.post("/v1/errors", json=clash, headers=auth).status_code in (400, 409)
    appeal = {"submission_id": blocked[0], "kind": "false_block", "source": "appeal"}
    assert client.post("/v1/errors", json=appeal, headers=auth).status_code == 201
    wrong = {"submission_id": blocked[0], "kind": "miss", "source": "report"}
    assert client.post("/v1/errors", json=wrong, headers=auth).status_code == 400
    assert client.post("/v1/errors", json=dict(body, kind="oops"), headers=auth).status_code == 400
    assert (
        client.post("/v1/errors", json=dict(body, source="audit"), headers=auth).status_code == 400
    )
    assert client.post("/v1/errors", json={"kind": "miss"}, headers=auth).status_code == 400
    missing = dict(body, submission_id="no-such-id")
    assert client.post("/v1/errors", json=missing, headers=auth).status_code == 404
    theirs = {"Authorization": f"Bearer {other.key}"}
    assert client.post("/v1/errors", json=body, headers=theirs).status_code == 404
