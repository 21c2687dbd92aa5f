"""Fewer round trips on the way in: a batch upload is one transaction and one send (one LPUSH of
all its stage-1 messages, ``DirectSender``); when that fails they go through Celery's pipeline,
and when the pipeline fails too, one by one; when the broker is away the batch's queued images are
withdrawn and answered 503."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from cascade.context import Context
from cascade.db.schema import Submission
from cascade.dispatch import DirectSender, Dispatcher
from tests.api.conftest import stage1_messages

pytestmark = pytest.mark.integration

MakeImage = Callable[..., bytes]


@contextmanager
def _commits(ctx: Context) -> Iterator[list[int]]:
    seen: list[int] = []

    def count(conn: object) -> None:
        seen.append(1)

    event.listen(ctx.engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(ctx.engine, "commit", count)


def _batch(make_image: MakeImage, n: int, bad: tuple[int, ...] = ()) -> dict[str, object]:
    files = [
        (io.BytesIO(b"not an image" if i in bad else make_image("PNG")), f"{i}.png")
        for i in range(n)
    ]
    return {"images": files}


def test_a_batch_upload_is_one_transaction_and_one_send(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    api_context: Context,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    direct = DirectSender.send

    def spy(self: DirectSender, task: str, calls: list[list[object]]) -> None:
        sent.append(len(calls))
        direct(self, task, calls)

    monkeypatch.setattr(DirectSender, "send", spy)
    with _commits(api_context) as commits:
        r = api.post("/v1/images", data=_batch(make_image, 6, bad=(2,)), headers=auth)
    assert r.status_code == 207
    assert [i["status"] for i in r.json["items"]] == [202, 202, 422, 202, 202, 202]
    assert sent == [5]  # the five queued images in one LPUSH
    assert len(commits) == 1  # the API key check reads; the batch commits once
    assert len(stage1_messages(redis_client)) == 5


def test_a_failed_direct_send_and_pipeline_are_sent_again_one_by_one(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: object, *args: object) -> None:
        raise ConnectionError("connection lost")

    monkeypatch.setattr(DirectSender, "send", broken)
    monkeypatch.setattr(Dispatcher, "_pipelined", broken)
    r = api.post("/v1/images", data=_batch(make_image, 4), headers=auth)
    assert [i["status"] for i in r.json["items"]] == [202] * 4
    assert len(stage1_messages(redis_client)) == 4


def test_broker_away_withdraws_the_batch_and_answers_503(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    api_context: Context,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def away(self: Dispatcher, *args: object, **kwargs: object) -> None:
        raise ConnectionError("broker away")

    monkeypatch.setattr(DirectSender, "send", away)
    monkeypatch.setattr(Dispatcher, "_pipelined", away)
    monkeypatch.setattr(Dispatcher, "send", away)
    r = api.post("/v1/images", data=_batch(make_image, 3, bad=(1,)), headers=auth)
    assert [i["status"] for i in r.json["items"]] == [503, 422, 503]
    with api_context.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Submission)) == 0


def test_follow_ups_go_out_in_one_pipeline(broker_url: str) -> None:
    """A batch's hand-on to stage 2 is one message per 64 ids; callbacks one each."""
    import base64
    import json

    from cascade.config import Settings

    client = redis.Redis.from_url(broker_url)
    dispatcher = Dispatcher(Settings(broker_url=broker_url))
    ids = [f"s{i}" for i in range(150)]
    failed = dispatcher.follow_up(stage2=ids, callbacks=["c1", "c2"])
    assert failed == 0
    assert client.llen("stage2") == 3 and client.llen("callbacks") == 2
    messages = [json.loads(m) for m in client.lrange("stage2", 0, -1)]
    args = [json.loads(base64.b64decode(m["body"]))[0] for m in messages]  # [args, kwargs, …]
    assert sorted(i for (chunk,) in args for i in chunk) == sorted(ids)
    client.close()
