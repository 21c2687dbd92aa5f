"""Images reach only the logged-in moderator a short-lived URL was signed for."""

from __future__ import annotations

import re
import time

from services.review.images import read_image_token, sign_image_token
from tests.review.factories import login, make_item, make_user


def _image_path(client, token):
    page = client.get(client.post("/review/claim", data={"csrf_token": token}).headers["Location"])
    match = re.search(rb'src="(/review/image/[^"]+)"', page.data)
    assert match, page.data
    return match.group(1).decode()


def test_moderator_gets_the_bytes_uncached(context, client):
    made = make_item(context, seed=7)
    make_user(context, "mia")
    path = _image_path(client, login(client, "mia"))
    response = client.get(path)
    assert response.status_code == 200
    assert response.data == made.png
    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "private, no-store"


def test_anonymous_request_is_refused(context, app, client):
    made = make_item(context, seed=7)
    make_user(context, "mia")
    path = _image_path(client, login(client, "mia"))
    anonymous = app.test_client()
    response = anonymous.get(path)
    assert response.status_code == 401
    assert made.png not in response.data


def test_url_signed_for_someone_else_is_refused(context, app, client):
    make_item(context, seed=7)
    make_user(context, "mia")
    make_user(context, "bob")
    path = _image_path(client, login(client, "mia"))
    other = app.test_client()
    login(other, "bob")
    assert other.get(path).status_code == 403


def test_ops_cannot_see_images(context, app, client):
    made = make_item(context, seed=7)
    ops = make_user(context, "olga", role="ops")
    login(client, "olga")
    token = sign_image_token(context.settings.secret_key, item_id=made.item_id, user_id=ops)
    assert client.get(f"/review/image/{token}").status_code == 403


def test_expired_and_forged_tokens_are_refused(context, client):
    made = make_item(context, seed=7)
    uid = make_user(context, "mia")
    login(client, "mia")
    secret, ttl = context.settings.secret_key, context.settings.signed_url_ttl_s
    fresh = sign_image_token(secret, item_id=made.item_id, user_id=uid)
    assert client.get(f"/review/image/{fresh}").status_code == 200
    old = sign_image_token(
        secret, item_id=made.item_id, user_id=uid, issued_at=int(time.time()) - ttl - 5
    )
    assert read_image_token(secret, old, ttl) is None
    assert client.get(f"/review/image/{old}").status_code == 403
    forged = sign_image_token("not-the-secret", item_id=made.item_id, user_id=uid)
    assert client.get(f"/review/image/{forged}").status_code == 403
    tampered = fresh[:-3] + ("AAA" if not fresh.endswith("AAA") else "BBB")
    assert client.get(f"/review/image/{tampered}").status_code == 403
