"""Celery tasks: the two batched stages, callbacks, requeues and maintenance.

Module-level tasks (``shared_task``: they attach to whichever app the process configures). The
per-process state lives on the base class, ``RuntimeTask.runtime`` (see ``cascade.runtime``);
batch sizes and flush intervals come from the app's settings when a message arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from celery import Celery, Task, shared_task
from celery.concurrency.solo import TaskPool as SoloPool
from celery.utils.time import get_exponential_backoff_interval
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from cascade import maintenance
from cascade.config import Settings
from cascade.errors import CascadeError
from cascade.runtime import WorkerRuntime, process_runtime, settings_of
from cascade.tasknames import (
    CALLBACK_TASK,
    CHECK_BROKER_TASK,
    REFRESH_GAUGES_TASK,
    REQUEUE_STALE_TASK,
    REQUEUE_TASK,
    ROLL_UP_TASK,
    STAGE1_TASK,
    STAGE2_TASK,
)

log = logging.getLogger(__name__)


class RuntimeTask(Task):  # type: ignore[misc]
    """A task with this process's ``WorkerRuntime``."""

    abstract = True

    @property
    def runtime(self) -> WorkerRuntime:
        return process_runtime(self.app)


class StageTask(Batches, RuntimeTask):  # type: ignore[misc]
    """A batched stage: messages are buffered and run as one batch of up to the stage's batch
    size, or whatever arrived within its flush interval."""

    abstract = True
    stage = 0  # set per task
    _tref: Any  # celery-batches' flush timer (set in its __init__)

    @property
    def flush_every(self) -> int:  # type: ignore[override]
        s = settings_of(self.app)
        return s.stage1_batch_size if self.stage == 1 else s.stage2_batch_size

    @property
    def flush_interval(self) -> float:  # type: ignore[override]
        s = settings_of(self.app)
        return s.stage1_flush_interval_s if self.stage == 1 else s.stage2_flush_interval_s

    def Strategy(self, task: Task, app: Celery, consumer: Any) -> Any:
        """Called each time the worker's consumer (re)connects. After a lost connection Celery
        has cleared the event loop's timers (``celery.worker.loops.asynloop``), so the flush
        timer celery-batches believes is running is gone: it would then flush only on every
        ``flush_every``-th message and a half-full batch would wait for ever. Forget the timer
        and what was buffered on the lost connection (those messages cannot be acknowledged
        any more; the broker hands them out again)."""
        self._forget_buffer()
        return super().Strategy(task, app, consumer)

    def _forget_buffer(self) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        dropped = 0
        for held in (self._buffer, self._pending):
            while not held.empty():
                held.get_nowait()
                dropped += 1
        if dropped:
            log.warning("stage %d: dropped %d messages buffered on a lost connection; the "
                        "broker delivers them again", self.stage, dropped)  # fmt: skip

    def flush(self, requests: Collection[Any]) -> Any:
        """celery-batches' flush, with the batch's acknowledgements sent in one round trip, not
        one per message (stage 1 gets a message per upload).

        Still ``acks_late``: the messages are acknowledged after the batch ran (and committed).
        Celery defers each acknowledgement to its event loop, where each one was a round trip
        of its own; a solo pool runs the batch in that loop, so the acknowledgements are made
        here, together, right after it. Other pools keep celery-batches' way."""
        if not isinstance(self._pool, SoloPool) or not all(r.task.acks_late for r in requests):
            return super().flush(requests)
        batch = ([SimpleRequest.from_request(r) for r in requests],)
        return self._pool.apply_async(
            apply_batches_task, (self, batch, 0, None), callback=lambda _: _acknowledge(requests)
        )

    def flush_now(self) -> int:
        """Run what the buffer holds now, before the worker stops (its connection is still
        open, so the batch is acknowledged); returns how many messages were held."""
        held = int(self._buffer.qsize() + self._pending.qsize())
        if held:
            log.info("stage %d: flushing %d buffered messages before stopping", self.stage, held)
            self._do_flush()
        return held

    def run_batch(self, requests: list[Any]) -> None:
        """Run the buffered ids in batches of the stage's size; each batch's follow-ups are
        sent after its commit. A message carries one id, or a list of them (stage 1 hands a
        whole batch on to stage 2 in one message: per message, the broker and Celery cost
        more than the id)."""
        ids = [str(i) for r in requests if r.args for i in _as_list(r.args[0])]
        for start in range(0, len(ids), self.flush_every):
            self._run(ids[start : start + self.flush_every])

    def _run(self, ids: list[str]) -> None:
        runtime = self.runtime
        try:
            out = runtime.runner(self.stage).run(ids)
        except Exception:
            # Infrastructure trouble (database away, blob store down): nothing was committed.
            # celery-batches acknowledges the batch whatever happens, so requeue its ids
            # ourselves, with a delay; the attempts counter stops a poison batch looping.
            log.exception("stage %d batch of %d failed; requeueing it", self.stage, len(ids))
            runtime.dispatcher.requeue(self.stage, ids, delayed=True)
            return
        runtime.dispatcher.follow_up(stage2=out.to_stage2, callbacks=out.callbacks)
        if self.stage == 1 and runtime.backlog is not None:
            runtime.backlog.release(ids)  # screened: room for new uploads (API backpressure)


def _acknowledge(requests: Collection[Any]) -> None:
    """Acknowledge ``requests`` (Celery's, of one batch) in one round trip where the transport
    can batch them (``cascade.broker``); a failed acknowledgement is logged, as Celery's are."""
    with _batched_acks(requests):
        for request in requests:
            if not request.acknowledged:
                request.message.ack_log_error(log, request.connection_errors)
                request.acknowledged = True


def _batched_acks(requests: Collection[Any]) -> AbstractContextManager[None]:
    """``cascade.broker.QoS.batched_acks`` of the channel ``requests`` came on, where there is
    one (other transports acknowledge one by one, as before)."""
    for request in requests:
        qos = getattr(getattr(getattr(request, "message", None), "channel", None), "qos", None)
        batched = getattr(qos, "batched_acks", None)
        return batched() if batched is not None else nullcontext()
    return nullcontext()


def _as_list(arg: Any) -> list[Any]:
    return arg if isinstance(arg, list) else [arg]


class CallbackTask(RuntimeTask):  # type: ignore[misc]
    """Retried with backoff up to ``callback_max_retries`` times (from the settings)."""

    abstract = True

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return settings_of(self.app).callback_max_retries


@shared_task(name=STAGE1_TASK, base=StageTask, stage=1)
def stage1(requests: list[Any]) -> None:
    """Score a batch with the screener and route it."""
    stage1.run_batch(requests)


@shared_task(name=STAGE2_TASK, base=StageTask, stage=2)
def stage2(requests: list[Any]) -> None:
    """Score a batch with the second stage and route it."""
    stage2.run_batch(requests)


@shared_task(name=REQUEUE_TASK, base=RuntimeTask)
def requeue(stage: int, ids: list[str]) -> None:
    """Send the ids of a failed batch to their stage again, one message each."""
    requeue.runtime.dispatcher.requeue(stage, ids)


def retry_countdown(settings: Settings, retries: int) -> float:
    """Exponential backoff with full jitter (up to 2, 4, 8 ... s), never past half the broker's
    visibility timeout: Redis hands a message out again once it is held unacknowledged that
    long, so a retry waiting out a longer countdown in the worker ran twice at the same moment
    (a duplicated callback in the soak's PostgreSQL restart: 15 s against 10 s)."""
    cap = max(1, min(600, settings.broker_visibility_timeout_s // 2))
    return float(
        get_exponential_backoff_interval(factor=2, retries=retries, maximum=cap, full_jitter=True)
    )


@shared_task(name=CALLBACK_TASK, base=CallbackTask)
def callback(submission_id: str, delivered: str | None = None) -> None:
    """POST one decision to the upload service's callback URL, retried with backoff
    (``retry_countdown``). ``delivered``: that decision was POSTed already and only its record
    is owed (retried without calling again)."""
    from cascade.callbacks import DeliveredNotRecorded, deliver, record_delivery

    runtime = callback.runtime
    countdown = retry_countdown(runtime.settings, callback.request.retries)
    try:
        if delivered is not None:
            record_delivery(runtime.ctx, submission_id, delivered)
        else:
            deliver(runtime.ctx, submission_id)
    except CascadeError as exc:  # refused for good (e.g. the URL now resolves privately)
        log.warning("callback for %s not sent: %s", submission_id, exc.message)
    except DeliveredNotRecorded as exc:
        raise callback.retry(
            args=(submission_id,), kwargs={"delivered": exc.decision}, exc=exc,
            countdown=countdown,
        ) from exc  # fmt: skip
    except Exception as exc:  # the receiver or the database failed: the whole delivery again
        raise callback.retry(exc=exc, countdown=countdown) from exc


@shared_task(name=REQUEUE_STALE_TASK, base=RuntimeTask)
def requeue_stale(older_than_s: int = 600) -> int:
    """Re-enqueue submissions stuck before a decision (e.g. a broker lost a message)."""
    runtime = requeue_stale.runtime
    return maintenance.requeue_stale(runtime.ctx, runtime.dispatcher, older_than_s)


@shared_task(name=REFRESH_GAUGES_TASK, base=RuntimeTask)
def refresh_gauges() -> None:
    """Queue depths, review backlog and the active version, for Prometheus."""
    runtime = refresh_gauges.runtime
    maintenance.refresh_gauges(runtime.ctx, maintenance.broker_lists(runtime.settings.broker_url))


@shared_task(name=ROLL_UP_TASK, base=RuntimeTask)
def roll_up() -> int:
    """Roll up decisions made outside the stage workers (``cascade.maintenance.roll_up``)."""
    return maintenance.roll_up(roll_up.runtime.ctx)


@shared_task(name=CHECK_BROKER_TASK, base=RuntimeTask)
def check_broker() -> int:
    """Send unfinished work again at once if the broker lost its data (see ``maintenance``)."""
    runtime = check_broker.runtime
    client = maintenance.broker_lists(runtime.settings.broker_url)
    return maintenance.requeue_after_broker_loss(runtime.ctx, runtime.dispatcher, client)
