"""The stage workers' claim (``cascade.broker``): several messages in one round trip, each
recorded as unacknowledged in the same atomic step, in the very record kombu writes; and a
batch's acknowledgements in one round trip."""

from __future__ import annotations

import uuid

import pytest
import redis
from kombu.utils.json import dumps, loads

from cascade.broker import _CLAIM, Channel, QoS
from cascade.config import Settings
from cascade.dispatch import Dispatcher

pytestmark = pytest.mark.integration

UNACKED, INDEX = Channel.unacked_key, Channel.unacked_index_key


def _claim(client: redis.Redis, most: int, now: float = 1000.0) -> list:
    keys = ["stage1", "inflight-1", UNACKED, INDEX]
    return client.eval(_CLAIM, len(keys), *keys, most, now)  # type: ignore[no-any-return]


@pytest.fixture
def client(broker_url: str):  # type: ignore[no-untyped-def]
    c = redis.Redis.from_url(broker_url)
    yield c
    c.close()


def _send(broker_url: str, n: int) -> list[bytes]:
    """``n`` real stage-1 messages (Celery's own), oldest first as a consumer takes them."""
    settings = Settings(env="test", broker_url=broker_url)
    Dispatcher(settings).stage1(*[str(uuid.uuid4()) for _ in range(n)])
    return list(reversed(redis.Redis.from_url(broker_url).lrange("stage1", 0, -1)))


def test_claim_takes_several_and_records_each_as_kombu_would(broker_url, client):
    sent = _send(broker_url, 5)
    index, items, recorded = _claim(client, 3)
    assert (index, items, recorded) == (1, sent[:3], [1, 1, 1])
    assert client.llen("stage1") == 2 and client.llen("inflight-1") == 0
    for item in items:
        payload = loads(item)
        tag = payload["properties"]["delivery_tag"]
        info = payload["properties"]["delivery_info"]
        # What kombu's QoS.append writes, and its restore reads back.
        expected = loads(dumps([payload, info["exchange"], info["routing_key"]]))
        assert loads(client.hget(UNACKED, tag)) == expected
        assert client.zscore(INDEX, tag) == 1000.0
    _, rest, _ = _claim(client, 10)
    assert rest == sent[3:] and client.llen("stage1") == 0
    assert _claim(client, 10) is None


def test_a_message_without_a_delivery_tag_goes_to_the_in_flight_list(client):
    client.lpush("stage1", b"not json")
    index, items, recorded = _claim(client, 4)
    assert (index, items, recorded) == (1, [b"not json"], [0])
    assert client.lrange("inflight-1", 0, -1) == [b"not json"]  # QoS.append records it
    assert client.hlen(UNACKED) == 0


def test_batched_acks_remove_every_record_in_one_round_trip(broker_url, client):
    for item in _send(broker_url, 3):
        tag = loads(item)["properties"]["delivery_tag"]
        client.hset(UNACKED, tag, item)
        client.zadd(INDEX, {tag: 1.0})
    tags = [t.decode() for t in client.hkeys(UNACKED)]

    class _Channel:
        unacked_key, unacked_index_key = UNACKED, INDEX
        do_restore = False

        def conn_or_acquire(self, client_=None):  # type: ignore[no-untyped-def]
            from contextlib import nullcontext

            return nullcontext(client)

    qos = QoS(_Channel())
    for tag in tags:
        qos._delivered[tag] = object()
    sent: list[int] = []
    execute = redis.client.Pipeline.execute

    def counting(self, *a, **k):  # type: ignore[no-untyped-def]
        sent.append(len(self.command_stack))
        return execute(self, *a, **k)

    redis.client.Pipeline.execute = counting  # type: ignore[method-assign]
    try:
        with qos.batched_acks():
            for tag in tags:
                qos.ack(tag)
            assert client.hlen(UNACKED) == 3  # nothing sent before the block ends
    finally:
        redis.client.Pipeline.execute = execute  # type: ignore[method-assign]
    assert sent == [2 * len(tags)]  # one round trip: ZREM + HDEL per message
    assert client.hlen(UNACKED) == 0 and client.zcard(INDEX) == 0
    assert qos._dirty == set(tags)  # kombu's own bookkeeping of acknowledged messages
