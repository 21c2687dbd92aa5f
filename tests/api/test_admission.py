"""Admission control on a real Redis: rate limits (429), backpressure (503), callback SSRF (400)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from cascade import queues
from cascade.context import Context
from cascade.errors import ServiceUnavailable, TooManyRequests
from cascade.ratelimit import BACKLOG_KEY, Backlog, Charge, RateLimiter, redis_client
from services.api.admission import Admission, admission
from tests.api.conftest import issue_key, stage1_messages

pytestmark = pytest.mark.integration

MakeImage = Callable[..., bytes]


def test_rate_limit_answers_429_with_retry_after(
    api: FlaskClient, api_context: Context, make_image: MakeImage
) -> None:
    issued = issue_key(api_context, "tiny", rate_limit=3)
    headers = {"X-API-Key": issued.key}
    statuses = [
        api.post(
            "/v1/images", data=make_image(), headers=headers, content_type="image/png"
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 202]
    r = api.get("/v1/images/whatever", headers=headers)
    assert r.status_code == 429
    assert r.json["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # Another key of the same service is not affected.
    other = issue_key(api_context, "tiny")
    assert api.get("/v1/images/whatever", headers={"X-API-Key": other.key}).status_code == 404


def test_a_batch_counts_each_image(
    api: FlaskClient, api_context: Context, make_image: MakeImage
) -> None:
    issued = issue_key(api_context, "batchy", rate_limit=4)
    headers = {"X-API-Key": issued.key}
    files = [(io.BytesIO(make_image()), f"{i}.png") for i in range(3)]
    assert api.post("/v1/images", data={"images": files}, headers=headers).status_code == 207
    files = [(io.BytesIO(make_image()), f"{i}.png") for i in range(2)]
    r = api.post("/v1/images", data={"images": files}, headers=headers)
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_sliding_window_refuses_exactly_over_the_limit(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, namespace="test:rl")
    for _ in range(5):
        limiter.hit("k", limit=5)
    with pytest.raises(TooManyRequests) as info:
        limiter.hit("k", limit=5)
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 60
    with pytest.raises(TooManyRequests, match="smaller batches"):
        limiter.hit("other", limit=5, cost=6)
    limiter.hit("other", limit=5, cost=5)


def test_backpressure_answers_503_with_retry_after(
    api: FlaskClient,
    auth: dict[str, str],
    api_context: Context,
    redis_client: redis.Redis,
    make_image: MakeImage,
) -> None:
    depth = api_context.settings.max_queue_depth = 5
    redis_client.rpush(queues.STAGE1, *[b'{"fake": true}'] * (depth + 1))
    r = api.post("/v1/images", data=make_image(), headers=auth, content_type="image/png")
    assert r.status_code == 503
    assert r.json["error"]["code"] == "unavailable"
    assert "queue is full" in r.json["error"]["message"]
    assert int(r.headers["Retry-After"]) >= 1
    assert len(stage1_messages(redis_client)) == depth + 1  # nothing was added
    # Reading results is never refused by backpressure.
    assert api.get("/v1/images/x", headers=auth).status_code == 404


def test_the_backlog_is_held_atomically_across_processes(redis_client: redis.Redis) -> None:
    """Many gates (API processes) admitting at once never admit more than the limit; what stage 1
    has written leaves the backlog and makes room again."""
    gates = [Backlog(redis_client, max_depth=20, key="test:backlog") for _ in range(8)]
    admitted: list[str] = []
    lock = threading.Lock()

    def upload(gate: Backlog, n: int) -> None:
        try:
            with gate.reserve(3):
                ids = [f"{n}-{i}" for i in range(3)]
                gate.track(ids)
                with lock:
                    admitted.extend(ids)
        except ServiceUnavailable:
            pass

    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # the backlog as a dashboard sees it, at any moment
        while not done.is_set():
            seen.append(gates[0].depth())

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=upload, args=(gates[n % 8], n)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert 0 < len(admitted) <= 20
    assert max(seen) <= 20, max(seen)
    assert gates[0].depth() == len(admitted)  # reservations ended, the ids stay
    with pytest.raises(ServiceUnavailable), gates[1].reserve(20 - len(admitted) + 1):
        pass
    gates[2].release(admitted)
    assert gates[3].depth() == 0
    with gates[4].reserve(20):
        pass


def test_redis_down_fails_open() -> None:
    dead = redis_client("redis://127.0.0.1:1/0")
    RateLimiter(dead).hit("k", limit=1)
    RateLimiter(dead).hit("k", limit=1)
    gate = Backlog(dead, max_depth=0)
    assert gate.depth() == 0
    with gate.reserve(5):
        gate.track(["a"])
    gate.release(["a"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/x",
        "http://192.168.1.5/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_callback_urls_into_private_networks_are_refused(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage, url: str
) -> None:
    img = make_image()
    r = api.post(
        "/v1/images",
        data=img,
        headers=auth,
        content_type="image/png",
        query_string={"callback_url": url},
    )
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "bad_request"
    r = api.post(
        "/v1/images",
        data={"image": (io.BytesIO(img), "a.png"), "callback_url": url},
        headers=auth,
    )
    assert r.status_code == 400


def test_public_callback_url_is_stored(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage, api_context: Context
) -> None:
    from cascade.db.schema import Submission

    url = "https://93.184.215.14/hook"  # a global address literal: no DNS needed
    r = api.post(
        "/v1/images",
        data=make_image(),
        headers=auth,
        content_type="image/png",
        query_string={"callback_url": url},
    )
    assert r.status_code == 202
    with api_context.sessions() as session:
        sub = session.get(Submission, r.json["id"])
        assert sub is not None and sub.callback_url == url


@contextmanager
def _round_trips(app: Flask) -> Iterator[list[str]]:
    """What the app's admission client sends to Redis, one entry per round trip."""
    with app.app_context():
        gate: Admission = admission()
    assert gate.backlog is not None
    client: Any = gate.backlog.client
    seen: list[str] = []
    execute, pipeline = client.execute_command, client.pipeline

    def command(*args: Any, **kwargs: Any) -> Any:
        seen.append(str(args[0]))
        return execute(*args, **kwargs)

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        run = pipe.execute

        def once(*a: Any, **k: Any) -> Any:
            seen.append("pipeline")
            return run(*a, **k)

        pipe.execute = once
        return pipe

    client.execute_command, client.pipeline = command, counted_pipeline
    try:
        yield seen
    finally:
        client.execute_command, client.pipeline = execute, pipeline


def test_a_single_upload_is_admitted_in_one_round_trip(
    api: FlaskClient,
    api_app: Flask,
    auth: dict[str, str],
    make_image: MakeImage,
    redis_client: redis.Redis,
) -> None:
    """Rate limit and backlog place in one script, the place reserved under the submission's
    own id: handing it to stage 1 costs no second round trip, and no placeholder is left."""
    with _round_trips(api_app) as sent:
        r = api.post("/v1/images", data=make_image(), headers=auth, content_type="image/png")
    assert r.status_code == 202
    assert sent == ["EVALSHA"], sent
    assert [m.decode() for m in redis_client.zrange(BACKLOG_KEY, 0, -1)] == [r.json["id"]]
    with _round_trips(api_app) as sent:  # a batch: its count is known once the body is read
        r = api.post(
            "/v1/images",
            data={"images": [(io.BytesIO(make_image()), f"{i}.png") for i in range(2)]},
            headers=auth,
        )
    assert r.status_code == 207
    assert sent == ["EVALSHA", "EVALSHA"], sent
    assert redis_client.zcard(BACKLOG_KEY) == 3


def test_what_does_not_go_to_stage_1_leaves_no_place_behind(
    api: FlaskClient, api_context: Context, make_image: MakeImage, redis_client: redis.Redis
) -> None:
    """A replay, a refused image and a rate-limited request hold no place in the backlog."""
    issued = issue_key(api_context, "few", rate_limit=3)
    headers = {"X-API-Key": issued.key, "Idempotency-Key": "once"}
    first = api.post("/v1/images", data=make_image(), headers=headers, content_type="image/png")
    assert first.status_code == 202
    img = make_image()
    again = api.post("/v1/images", data=img, headers=headers, content_type="image/png")
    assert again.status_code == 409  # the key was used with another image
    bad = api.post(
        "/v1/images", data=b"junk", headers={"X-API-Key": issued.key}, content_type="image/png"
    )
    assert bad.status_code == 422
    refused = api.post(
        "/v1/images", data=img, headers={"X-API-Key": issued.key}, content_type="image/png"
    )
    assert refused.status_code == 429
    assert [m.decode() for m in redis_client.zrange(BACKLOG_KEY, 0, -1)] == [first.json["id"]]


def test_charge_and_reservation_in_one_call_keep_their_order(redis_client: redis.Redis) -> None:
    """Over the rate limit: 429 and nothing reserved; backlog full: 503, and the request was
    charged (as when they were two calls); ids reserved under their names are tracked free."""
    limiter = RateLimiter(redis_client, namespace="test:rl1")
    gate = Backlog(redis_client, max_depth=2, key="test:backlog1", queue="test:queue1")
    with gate.reserve(ids=["a"], charge=Charge(limiter, "k", limit=2)):
        gate.track(["a"])
    assert [m.decode() for m in redis_client.zrange("test:backlog1", 0, -1)] == ["a"]
    with (
        pytest.raises(ServiceUnavailable),
        gate.reserve(ids=["b", "c"], charge=Charge(limiter, "k", limit=2)),
    ):
        pass
    assert redis_client.zcard("test:rl1:k") == 2  # charged all the same
    with (
        pytest.raises(TooManyRequests),
        gate.reserve(ids=["d"], charge=Charge(limiter, "k", limit=2)),
    ):
        pass
    assert gate.depth() == 1  # nothing reserved over the rate limit
    with pytest.raises(TooManyRequests, match="smaller batches"):
        gate.check(Charge(limiter, "other", limit=2, cost=3))
    gate.check(Charge(limiter, "other", limit=2))  # room for one more: not refused
    redis_client.rpush("test:queue1", b"x", b"y")
    with pytest.raises(ServiceUnavailable):
        gate.check(Charge(limiter, "other", limit=2))
    assert redis_client.zcard("test:rl1:other") == 2
