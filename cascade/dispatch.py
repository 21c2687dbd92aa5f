"""The one way to send what follows a commit: stage hand-ons, decision callbacks, requeues.

Everything is sent by task name (``cascade.tasknames``) after the database transaction that
made it due has committed, so a worker never sees a row that is not there yet. One retry
policy rides out a broker restart of several seconds. After a send has failed for good, the
next sends try once without waiting for ``QUIET_S`` (a batch of follow-ups, or a batch
upload, does not wait the whole policy again for every message); the first success ends that.

Two ways to fail, chosen by the caller: ``send`` raises (the upload API withdraws the image and
answers 503), ``send_after_commit`` logs and leaves the message to the stale sweep (the
database says what is unfinished; a batch that committed must not fail).

Several messages at once (a batch's follow-ups, a batch upload) go out in one Redis pipeline,
one round trip (``send_many``). A pipeline is never retried half-way, so when it fails its
messages are sent again one by one under the retry policy: some may then arrive twice, which is
harmless, as every step downstream is idempotent.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Celery
from kombu.utils.json import dumps

from cascade.celery_app import REDIS_SCHEMES, create_celery
from cascade.config import Settings
from cascade.ratelimit import redis_client
from cascade.tasknames import CALLBACK_TASK, REQUEUE_TASK, STAGE1_TASK, stage_task

log = logging.getLogger(__name__)

# About ten seconds of retries: 0 + 0.5 + 1 + 1 + ... (12 attempts after the first).
RETRY_POLICY = {"max_retries": 12, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
QUIET_S = 10.0
REQUEUE_DELAY_S = 5  # a failed batch waits this long before its images are sent again
HAND_ON = 64  # stage-2 ids per hand-on message

Send = tuple[str, tuple[Any, ...]]


class Dispatcher:
    """Sends tasks by name on a producer app (built from ``settings`` on first use, or given)."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        if settings is None and app is None:
            raise ValueError("Dispatcher needs the settings to build its app from, or an app")
        self._settings = settings
        self._app = app
        self._impatient_until = 0.0
        self._local = threading.local()  # each thread's pipelining producer (not thread-safe)
        self._direct: DirectSender | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            assert self._settings is not None
            self._app = create_celery(self._settings)
        return self._app

    def send(self, task: str, *args: Any, countdown: float | None = None) -> None:
        """Publish ``task(*args)``; raises when the broker still refuses after the policy."""
        patient = time.monotonic() >= self._impatient_until
        try:
            self.app.send_task(
                task, args=list(args), countdown=countdown, retry=patient,
                retry_policy=RETRY_POLICY,
            )  # fmt: skip
        except Exception:
            self._impatient_until = time.monotonic() + QUIET_S
            raise
        self._impatient_until = 0.0

    def send_many(self, sends: Sequence[Send]) -> None:
        """Publish ``sends`` in one pipeline; raises when the broker still refuses one of them
        after the policy (they may then have been sent in part)."""
        if not self._try_pipelined(sends):
            for task, args in sends:
                self.send(task, *args)

    def _try_pipelined(self, sends: Sequence[Send]) -> bool:
        """Several messages in one pipeline; False when there are fewer than two or it failed
        (then none or some of them were sent)."""
        if len(sends) < 2:
            return False
        try:
            self._pipelined(sends)
            return True
        except Exception:
            self._drop_producer()
            log.warning("pipelined send of %d messages failed; sending one by one", len(sends))
            return False

    def _pipelined(self, sends: Sequence[Send]) -> None:
        producer = getattr(self._local, "producer", None)
        if producer is None:
            # kombu pipelines only on a connection that does not retry timed-out commands
            # (a retried pipeline could repeat some of its messages); this one is for that.
            conn = self.app.connection_for_write(transport_options={"retry_on_timeout": False})
            producer = self._local.producer = self.app.amqp.Producer(conn)
        with producer.batch():
            for task, args in sends:
                self.app.send_task(task, args=list(args), producer=producer, retry=False)

    def _drop_producer(self) -> None:
        producer = getattr(self._local, "producer", None)
        self._local.producer = None
        if producer is not None:
            try:
                producer.connection.release()
            except Exception:  # already broken: nothing left to release
                log.debug("producer connection release failed", exc_info=True)

    def send_after_commit(self, sends: Iterable[Send]) -> int:
        """Send ``sends`` (pipelined); a failure is logged and left to the stale sweep. Returns
        how many could not be sent."""
        sends = list(sends)
        if self._try_pipelined(sends):
            return 0
        failed = 0
        for task, args in sends:
            try:
                self.send(task, *args)
            except Exception:
                failed += 1
                log.exception("could not enqueue %s%s; the stale sweep will", task, args)
        return failed

    def stage1(self, *submission_ids: str) -> None:
        """Hand committed uploads to stage 1, one message each, in one round trip (raises: the
        API refuses the uploads instead). On a Redis broker the messages are written straight
        to the queue (``DirectSender``); should that fail, they go through Celery's producer
        under the retry policy (a message that did go out is then sent twice: harmless)."""
        direct = self._direct_sender()
        if direct is not None:
            try:
                direct.send(STAGE1_TASK, [[sid] for sid in submission_ids])
                return
            except Exception as exc:
                log.warning("direct send to stage 1 failed (%s); sending through Celery",
                            type(exc).__name__)  # fmt: skip
        self.send_many([(STAGE1_TASK, (sid,)) for sid in submission_ids])

    def _direct_sender(self) -> DirectSender | None:
        if self._direct is None and self._settings is not None:
            url = self._settings.broker_url or ""
            if url.startswith(REDIS_SCHEMES):
                self._direct = DirectSender(self.app, redis_client(url))
        return self._direct

    def follow_up(self, *, stage2: Iterable[str] = (), callbacks: Iterable[str] = ()) -> int:
        """After a commit: hand ``stage2`` on to stage 2 (one message per ``HAND_ON`` ids: the
        stage-2 task takes a list) and send ``callbacks``."""
        ids = list(stage2)
        sends: list[Send] = [
            (stage_task(2), (ids[i : i + HAND_ON],)) for i in range(0, len(ids), HAND_ON)
        ]
        sends += [(CALLBACK_TASK, (sid,)) for sid in callbacks]
        return self.send_after_commit(sends)

    def requeue(self, stage: int, ids: list[str], *, delayed: bool = False) -> int:
        """Send ``ids`` to ``stage`` again: one by one, or (``delayed``) as one requeue task
        that waits ``REQUEUE_DELAY_S`` first (a batch that failed on infrastructure)."""
        if delayed:
            try:
                self.send(REQUEUE_TASK, stage, ids, countdown=REQUEUE_DELAY_S)
                return 0
            except Exception:
                log.exception("could not requeue %d ids of stage %d; the stale sweep will",
                              len(ids), stage)  # fmt: skip
                return len(ids)
        return self.send_after_commit((stage_task(stage), (sid,)) for sid in ids)


class DirectSender:
    """Task messages written straight to a Redis broker's queue list: the message Celery's
    ``send_task`` would publish (its own protocol-2 headers, ``app.amqp.as_task_v2``; the
    envelope kombu's Redis transport writes around it), several in one ``LPUSH``.

    Why: an upload's one stage-1 message cost ~0.5 ms of the API's CPU through ``send_task``
    (routing, kombu's producer, retry wrapper and entity copies) against ~0.1 ms for the
    ``LPUSH`` itself. For plain tasks only: positional arguments, no options (no countdown,
    expiry, links or result). A test holds the message equal to Celery's own."""

    def __init__(self, app: Celery, client: Any) -> None:
        self.app = app
        self.client = client
        self._routes: dict[str, tuple[str, str, str]] = {}

    def route(self, task: str) -> tuple[str, str, str]:
        """(queue list, exchange, routing key) of ``task``, from the app's routes: a queue on a
        direct exchange is published to through the anonymous exchange, under its own name, as
        Celery does (``AMQP.send_task_message``); other exchanges are not for this sender."""
        found = self._routes.get(task)
        if found is None:
            queue = self.app.amqp.router.route({}, task)["queue"]
            if queue.exchange.type != "direct":
                raise ValueError(f"{task} is routed through a {queue.exchange.type} exchange")
            found = self._routes[task] = (queue.name, "", queue.name)
        return found

    def message(self, task: str, args: list[Any]) -> str:
        """The JSON that kombu's Redis transport would store for ``task(*args)``."""
        _, exchange, routing_key = self.route(task)
        task_id = str(uuid.uuid4())
        made = self.app.amqp.as_task_v2(
            task_id, task, args, {}, reply_to=self.app.thread_oid,
            argsrepr=repr(args), kwargsrepr="{}",
        )  # fmt: skip
        body = base64.b64encode(dumps(made.body).encode()).decode()
        return dumps({
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": made.headers,
            "properties": {
                **made.properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": exchange, "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        })  # fmt: skip

    def send(self, task: str, calls: Sequence[list[Any]]) -> None:
        """``task(*args)`` for each ``args`` of ``calls``, in one round trip."""
        if calls:
            queue = self.route(task)[0]
            self.client.lpush(queue, *[self.message(task, args) for args in calls])
