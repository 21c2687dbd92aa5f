"""The API's stage-1 messages go straight to the Redis list (``cascade.dispatch.DirectSender``):
they must be the very messages Celery's ``send_task`` publishes, and a worker must run them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from cascade.config import Settings
from cascade.dispatch import Dispatcher
from cascade.tasknames import STAGE1_TASK

pytestmark = pytest.mark.integration

IDS = ("id-1", "9b1f0c3e-0000-4000-8000-000000000000")


def _messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Oldest first, the body decoded, the per-message ids blanked."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        m = json.loads(raw)
        m["body"] = json.loads(base64.b64decode(m["body"]))
        task_id = m["headers"]["id"]
        assert m["headers"]["root_id"] == m["properties"]["correlation_id"] == task_id
        for where, key in (
            ("headers", "id"),
            ("headers", "root_id"),
            ("properties", "correlation_id"),
            ("properties", "delivery_tag"),
        ):
            m[where][key] = "<id>"  # fmt: skip
        out.append(m)
    return out


def test_a_direct_message_is_the_one_celery_sends(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    dispatcher = Dispatcher(Settings(env="test", broker_url=broker_url))
    for sid in IDS:
        dispatcher.send(STAGE1_TASK, sid)  # Celery's own send_task
    celery = _messages(client, "stage1")
    client.delete("stage1")
    dispatcher.stage1(*IDS)  # one LPUSH
    assert dispatcher._direct is not None
    assert _messages(client, "stage1") == celery
    client.close()


def test_when_the_direct_send_fails_celery_sends_them(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    dispatcher = Dispatcher(Settings(env="test", broker_url=broker_url))
    direct = dispatcher._direct_sender()
    assert direct is not None

    class Refusing:
        def lpush(self, *args: Any) -> None:
            raise redis.ConnectionError("refused")

    direct.client = Refusing()
    dispatcher.stage1(*IDS)
    assert len(_messages(client, "stage1")) == len(IDS)
    client.close()
