"""The upload API's happy paths on a real database and a real Redis broker."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import select

from cascade.apikeys import IssuedKey
from cascade.context import Context
from cascade.db.schema import Image, State, Submission, utcnow
from tests.api.conftest import stage1_messages

pytestmark = pytest.mark.integration

MakeImage = Callable[..., bytes]


def test_raw_upload_is_queued_and_enqueued_after_commit(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    api_context: Context,
    redis_client: redis.Redis,
) -> None:
    r = api.post("/v1/images", data=make_image("JPEG"), headers=auth, content_type="image/jpeg")
    assert r.status_code == 202, r.json
    body = r.json
    assert body["state"] == "queued"
    assert body["links"]["self"] == f"/v1/images/{body['id']}"
    assert "decision" not in body
    with api_context.sessions() as session:
        sub = session.get(Submission, body["id"])
        assert sub is not None and sub.state == State.QUEUED
    messages = stage1_messages(redis_client)
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "cascade.stage1"
    assert body["id"] in messages[0]["headers"]["argsrepr"]


def test_x_api_key_header_and_multipart_single(
    api: FlaskClient, key: IssuedKey, make_image: MakeImage
) -> None:
    data = {"image": (io.BytesIO(make_image("PNG")), "cat.png")}
    r = api.post("/v1/images", data=data, headers={"X-API-Key": key.key})
    assert r.status_code == 202, r.json
    got = api.get(r.json["links"]["self"], headers={"X-API-Key": key.key})
    assert got.status_code == 200
    detail = got.json
    assert detail["id"] == r.json["id"]
    assert detail["state"] == "queued"
    assert detail["decision"] is None
    assert set(detail["scores"]) == {"stage1", "stage2"}
    assert detail["timings"]["created_at"]
    assert "blob" not in str(detail) and "sha256" not in str(detail)


def test_batch_reports_each_item(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage, redis_client: redis.Redis
) -> None:
    files = [
        (io.BytesIO(make_image("PNG")), "a.png"),
        (io.BytesIO(b"this is not an image"), "b.png"),
        (io.BytesIO(make_image("GIF")), "c.gif"),
    ]
    r = api.post("/v1/images", data={"images": files}, headers=auth)
    assert r.status_code == 207
    items = r.json["items"]
    assert [i["index"] for i in items] == [0, 1, 2]
    assert [i["status"] for i in items] == [202, 422, 202]
    assert items[1]["error"]["code"] == "invalid_image"
    assert items[1]["filename"] == "b.png"
    assert len(stage1_messages(redis_client)) == 2


def test_batch_over_the_limit_is_refused(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    files = [(io.BytesIO(make_image()), f"{i}.png") for i in range(9)]
    r = api.post("/v1/images", data={"images": files}, headers=auth)
    assert r.status_code == 413
    assert "limit is 8" in r.json["error"]["message"]


def test_idempotent_replay_returns_the_first_answer(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage, redis_client: redis.Redis
) -> None:
    img = make_image()
    headers = auth | {"Idempotency-Key": "order-42"}
    first = api.post("/v1/images", data=img, headers=headers, content_type="image/png")
    again = api.post("/v1/images", data=img, headers=headers, content_type="image/png")
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(stage1_messages(redis_client)) == 1  # the replay enqueued nothing
    other = api.post("/v1/images", data=make_image(), headers=headers, content_type="image/png")
    assert other.status_code == 409


def test_batch_idempotency_is_per_item(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    imgs = [make_image(), make_image()]

    def send() -> list[dict[str, object]]:
        files = [(io.BytesIO(b), f"{i}.png") for i, b in enumerate(imgs)]
        r = api.post(
            "/v1/images", data={"images": files}, headers=auth | {"Idempotency-Key": "batch-1"}
        )
        assert r.status_code == 207
        return list(r.json["items"])

    first, second = send(), send()
    assert [i["status"] for i in first] == [202, 202]
    assert [i["status"] for i in second] == [200, 200]
    assert [i["id"] for i in first] == [i["id"] for i in second]


def test_cache_hit_answers_at_once_without_enqueueing(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    api_context: Context,
    redis_client: redis.Redis,
) -> None:
    img = make_image("JPEG")
    first = api.post("/v1/images", data=img, headers=auth, content_type="image/jpeg")
    with api_context.sessions() as session:
        sub = session.get(Submission, first.json["id"])
        assert sub is not None
        sub.state, sub.decision, sub.decided_by = State.DECIDED, "block", "stage2"
        sub.decided_at = utcnow()
        session.commit()
    redis_client.delete("stage1")
    second = api.post("/v1/images", data=img, headers=auth, content_type="image/jpeg")
    assert second.status_code == 200
    assert second.json["decision"] == "block"
    assert second.json["decided_by"] == "cache"
    assert second.json["id"] != first.json["id"]
    assert "Idempotent-Replayed" not in second.headers
    assert stage1_messages(redis_client) == []


def test_tenants_see_only_their_own_submissions(
    api: FlaskClient, auth: dict[str, str], other_key: IssuedKey, make_image: MakeImage
) -> None:
    r = api.post("/v1/images", data=make_image(), headers=auth, content_type="image/png")
    url = r.json["links"]["self"]
    theirs = api.get(url, headers={"Authorization": f"Bearer {other_key.key}"})
    assert theirs.status_code == 404
    assert theirs.json["error"]["code"] == "not_found"
    assert api.get(url, headers=auth).status_code == 200
    assert api.get("/v1/images/does-not-exist", headers=auth).status_code == 404


def test_same_bytes_from_two_tenants_share_one_image_row(
    api: FlaskClient,
    auth: dict[str, str],
    other_key: IssuedKey,
    make_image: MakeImage,
    api_context: Context,
) -> None:
    img = make_image()
    a = api.post("/v1/images", data=img, headers=auth, content_type="image/png")
    b = api.post(
        "/v1/images",
        data=img,
        headers={"Authorization": f"Bearer {other_key.key}"},
        content_type="image/png",
    )
    assert a.status_code == b.status_code == 202
    with api_context.sessions() as session:
        assert len(session.scalars(select(Image)).all()) == 1
        assert len(session.scalars(select(Submission)).all()) == 2


def test_concurrent_duplicate_idempotency_key_returns_the_winner(
    api: FlaskClient,
    auth: dict[str, str],
    key: IssuedKey,
    make_image: MakeImage,
    api_context: Context,
) -> None:
    """A twin request commits between our replay look-up and our insert: we answer its row."""
    from sqlalchemy import event

    from cascade.intake import accept

    img = make_image()
    # The image row exists already, so the only insert is the submission's (SQLite allows one
    # writer at a time: the twin could not commit while we held the write lock).
    assert (
        api.post("/v1/images", data=img, headers=auth, content_type="image/png").status_code == 202
    )
    winner: list[str] = []
    fired: list[bool] = []

    def twin_commits_first(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if fired or not statement.lstrip().upper().startswith("INSERT INTO SUBMISSIONS"):
            return
        fired.append(True)  # before the twin's own insert comes through here
        with api_context.sessions() as other:
            accepted = accept(
                api_context, other, tenant_id=key.tenant_id, data=img, idempotency_key="race"
            )
            winner.append(accepted.submission.id)
            other.commit()

    event.listen(api_context.engine, "before_cursor_execute", twin_commits_first)
    try:
        r = api.post(
            "/v1/images",
            data=img,
            headers=auth | {"Idempotency-Key": "race"},
            content_type="image/png",
        )
    finally:
        event.remove(api_context.engine, "before_cursor_execute", twin_commits_first)
    assert r.status_code == 200, r.json
    assert winner and r.json["id"] == winner[0]
    with api_context.sessions() as session:
        rows = session.scalars(select(Submission).where(Submission.idempotency_key == "race"))
        assert len(rows.all()) == 1
