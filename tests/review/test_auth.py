"""Login, logout, roles and CSRF on the review UI."""

from __future__ import annotations

from sqlalchemy import select

from cascade.db.schema import User
from tests.review.factories import PASSWORD, login, make_item, make_user


def test_login_then_logout(context, client):
    make_user(context, "mia")
    token = login(client, "mia")
    assert client.get("/review/").status_code == 200
    response = client.post("/review/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/review/", headers={"Accept": "text/html"}).status_code == 302


def test_wrong_password_and_unknown_user_are_refused_alike(context, client):
    make_user(context, "mia")
    client.get("/review/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    for name, pw in (("mia", "wrong password!"), ("nobody", PASSWORD)):
        response = client.post(
            "/review/login", data={"username": name, "password": pw, "csrf_token": token}
        )
        assert response.status_code == 401
        assert b"Wrong user name or password" in response.data
    with client.session_transaction() as sess:
        assert "user_id" not in sess


def test_password_is_stored_hashed(context):
    make_user(context, "mia")
    with context.sessions() as db:
        user = db.scalars(select(User)).one()
    assert PASSWORD not in user.password_hash
    assert user.password_hash.startswith("scrypt:")


def test_deactivated_user_is_logged_out(context, client):
    uid = make_user(context, "mia")
    login(client, "mia")
    with context.sessions() as db:
        db.get(User, uid).active = False
        db.commit()
    assert client.get("/review/", headers={"Accept": "text/html"}).status_code == 302


def test_login_redirects_only_within_the_site(context, client):
    make_user(context, "mia")
    client.get("/review/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    form = {"username": "mia", "password": PASSWORD, "csrf_token": token}
    response = client.post("/review/login?next=//evil.example/x", data=form)
    assert response.headers["Location"] == "/review/"
    client.get("/review/login")
    with client.session_transaction() as sess:
        form["csrf_token"] = sess["csrf"]
    response = client.post("/review/login?next=/review/stats", data=form)
    assert response.headers["Location"] == "/review/stats"


def test_anonymous_users_are_sent_to_login(client):
    response = client.get("/review/", headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert "/review/login" in response.headers["Location"]
    assert client.get("/review/", headers={"Accept": "application/json"}).status_code == 401


def test_ops_can_watch_but_not_label(context, client):
    made = make_item(context)
    make_user(context, "olga", role="ops")
    token = login(client, "olga")
    page = client.get("/review/")
    assert page.status_code == 200
    assert b"Start labelling" not in page.data
    assert client.post("/review/claim", data={"csrf_token": token}).status_code == 403
    label = client.post(
        f"/review/item/{made.item_id}/label",
        json={"label": "allow"},
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )
    assert label.status_code == 403
    assert client.get(f"/review/item/{made.item_id}").status_code == 403
    assert client.get("/review/admin").status_code == 403


def test_moderators_cannot_open_the_admin_page(context, client):
    make_user(context, "mia")
    login(client, "mia")
    assert client.get("/review/admin").status_code == 403


def test_post_without_csrf_token_is_400_and_wrong_token_403(context, client):
    make_item(context)
    make_user(context, "mia")
    token = login(client, "mia")
    assert client.post("/review/claim").status_code == 400
    assert client.post("/review/claim", data={"csrf_token": "nope"}).status_code == 403
    wrong_header = client.post(
        "/review/undo", headers={"X-CSRF-Token": token[:-2] + "xx", "Accept": "application/json"}
    )
    assert wrong_header.status_code == 403
    assert wrong_header.get_json()["error"]["code"] == "forbidden"
    # nothing was claimed by the refused posts
    assert client.post("/review/claim", data={"csrf_token": token}).status_code == 302


def test_login_itself_needs_the_csrf_token(context, client):
    make_user(context, "mia")
    response = client.post("/review/login", data={"username": "mia", "password": PASSWORD})
    assert response.status_code == 400
    with client.session_transaction() as sess:
        assert "user_id" not in sess


def test_session_cookie_is_httponly_and_lax(context, client):
    make_user(context, "mia")
    client.get("/review/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    response = client.post(
        "/review/login", data={"username": "mia", "password": PASSWORD, "csrf_token": token}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
